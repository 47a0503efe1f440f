//! The embedded weight blob.
//!
//! Layout (little-endian), written by `dynq-build`:
//!
//! ```text
//! 0   8  magic "DYNQBLOB"
//! 8   4  format version (u32) = 1
//! 12  4  manifest length in bytes (u32)
//! 16  8  total length in bytes (u64)
//! 24 32  blob id: SHA-256 of everything from offset 64 on
//! 56  8  zero
//! 64  .. manifest (UTF-8 text, one line per section), zero-padded to 64 bytes
//! ..  .. sections, each starting at a multiple of 64
//! ```
//!
//! Generated code embeds the blob with `include_bytes!` inside [`Aligned`], checks the header
//! once against the id and length it was generated with ([`Blob::open`]), then reads sections at
//! constant offsets. Casting the bytes to `f32`/`i32`/`i8` slices is done by `bytemuck`, which
//! checks alignment and length, so this module needs no `unsafe`.

use crate::Error;

/// Magic bytes at the start of every blob.
pub const MAGIC: &[u8; 8] = b"DYNQBLOB";
/// The blob format this runtime reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the fixed header; the manifest starts here.
pub const HEADER_LEN: usize = 64;
/// Alignment of every section.
pub const ALIGN: usize = 64;

/// A 64-byte aligned wrapper for `include_bytes!`.
///
/// ```
/// use dynq_runtime::blob::Aligned;
/// static BYTES: &Aligned<[u8]> = &Aligned { bytes: *b"0123" };
/// assert_eq!(BYTES.bytes.as_ptr() as usize % 64, 0);
/// ```
#[repr(C, align(64))]
pub struct Aligned<B: ?Sized> {
    /// The bytes, starting on a 64-byte boundary.
    pub bytes: B,
}

/// A checked view of a weight blob.
///
/// ```
/// use dynq_runtime::blob::Blob;
/// let err = Blob::open(b"not a blob", "00", 10).unwrap_err();
/// assert!(err.to_string().contains("magic"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Blob<'a> {
    bytes: &'a [u8],
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl<'a> Blob<'a> {
    /// Checks the header against the id (hex) and length the code was generated with.
    pub fn open(bytes: &'a [u8], expected_id: &str, expected_len: usize) -> Result<Self, Error> {
        let err = |m: String| Err(Error::Blob(m));
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return err("bad magic: this is not a dynq weight blob".into());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return err(format!(
                "format version: expected {FORMAT_VERSION}, found {version}"
            ));
        }
        let total = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        if total != bytes.len() as u64 || bytes.len() != expected_len {
            return err(format!(
                "length: expected {expected_len} bytes, header says {total}, found {}",
                bytes.len()
            ));
        }
        let id = hex(&bytes[24..56]);
        if id != expected_id {
            return err(format!(
                "id: expected {expected_id}, found {id}: the blob does not belong to this generated code; regenerate both"
            ));
        }
        if !(bytes.as_ptr() as usize).is_multiple_of(ALIGN) {
            return err("not 64-byte aligned: embed it with dynq_runtime::blob::Aligned".into());
        }
        Ok(Blob { bytes })
    }

    /// The manifest text: one line per section, `offset length dtype shape name`.
    pub fn manifest(&self) -> &'a str {
        let len = u32::from_le_bytes(self.bytes[12..16].try_into().expect("4 bytes")) as usize;
        std::str::from_utf8(&self.bytes[HEADER_LEN..HEADER_LEN + len]).unwrap_or("")
    }

    fn section<T: bytemuck::AnyBitPattern>(
        &self,
        offset: usize,
        count: usize,
    ) -> Result<&'a [T], Error> {
        let len = count * std::mem::size_of::<T>();
        let bytes = offset
            .checked_add(len)
            .and_then(|end| self.bytes.get(offset..end))
            .ok_or_else(|| {
                Error::Blob(format!(
                    "section at {offset} of {len} bytes lies outside the {}-byte blob",
                    self.bytes.len()
                ))
            })?;
        bytemuck::try_cast_slice(bytes)
            .map_err(|e| Error::Blob(format!("section at {offset}: {e:?}")))
    }

    /// `count` f32 values at byte `offset`.
    pub fn f32s(&self, offset: usize, count: usize) -> Result<&'a [f32], Error> {
        self.section(offset, count)
    }

    /// `count` i32 values at byte `offset`.
    pub fn i32s(&self, offset: usize, count: usize) -> Result<&'a [i32], Error> {
        self.section(offset, count)
    }

    /// `count` f16 values (raw bits) at byte `offset`.
    pub fn f16s(&self, offset: usize, count: usize) -> Result<&'a [u16], Error> {
        self.section(offset, count)
    }

    /// `count` f16 values at byte `offset`, widened once to f32 and kept for the life of the
    /// process (generated models call it once, from their weight initialization).
    pub fn f16s_as_f32(&self, offset: usize, count: usize) -> Result<&'static [f32], Error> {
        let bits = self.f16s(offset, count)?;
        Ok(Box::leak(
            bits.iter()
                .map(|&b| half::f16::from_bits(b).to_f32())
                .collect(),
        ))
    }

    /// `count` i8 values at byte `offset`.
    pub fn i8s(&self, offset: usize, count: usize) -> Result<&'a [i8], Error> {
        self.section(offset, count)
    }
}
