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
//! Generated code embeds the blob with [`embedded_blob!`](crate::embedded_blob), checks the
//! header once against the id and length it was generated with ([`Blob::open`]), then reads
//! sections at constant offsets. Casting the bytes to `f32`/`i32`/`i8` slices is done by `bytemuck`, which
//! checks alignment and length.
//!
//! A model built with `[target] weights = "file"` does not embed the blob: it memory-maps
//! `<model>.blob` at first use ([`WeightsFile`]), checks its length and id, and hashes its
//! content again, so a file from another build, a truncated copy or a file edited in place is
//! refused with an error that names it. Mapping the file, and the extern static of
//! [`embedded_blob!`](crate::embedded_blob), are this module's `unsafe` code.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::Error;

/// Magic bytes at the start of every blob.
pub const MAGIC: &[u8; 8] = b"DYNQBLOB";
/// The blob format this runtime reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the fixed header; the manifest starts here.
pub const HEADER_LEN: usize = 64;
/// Alignment of every section.
pub const ALIGN: usize = 64;

/// A 64-byte aligned wrapper for `include_bytes!` ([`embedded_blob!`](crate::embedded_blob)'s
/// fallback).
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

/// A `static NAME: &[u8]` holding the file at `PATH` (an absolute path: a string literal or a
/// `concat!`), 64-byte aligned: how generated code embeds its weight blob.
///
/// On Linux (x86-64 and AArch64) the bytes go into the object file through the assembler's
/// `.incbin`, so rustc never holds them: `include_bytes!` of a 134 MB blob (a base-size model)
/// made rustc peak at 1.65 GB, about twelve times the blob. The symbol is `SYMBOL` (hidden,
/// weak: two crates embedding the same blob share one copy). Exactly `LEN` bytes are embedded;
/// a file of another length is cut or zero-padded, which [`Blob::open`] then refuses by its
/// header. Elsewhere the macro falls back to `include_bytes!` inside [`Aligned`].
///
/// The expansion declares an `extern` static and uses `global_asm!`, which the `unsafe_code`
/// lint reports: it allows the lint for those items, which works under `deny(unsafe_code)` but
/// not `forbid(unsafe_code)` (use `[target] weights = "file"` there).
///
/// ```
/// dynq_runtime::embedded_blob!(
///     /// The first 16 bytes of this crate's manifest.
///     static MANIFEST = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"), 16, "dynq_doc_example"
/// );
/// assert!(MANIFEST.starts_with(b"[package]"));
/// assert_eq!(MANIFEST.as_ptr() as usize % 64, 0);
/// ```
#[macro_export]
macro_rules! embedded_blob {
    ($(#[$attr:meta])* $vis:vis static $name:ident = $path:expr, $len:literal, $symbol:literal) => {
        $(#[$attr])*
        #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
        $vis static $name: &[u8] = {
            #[allow(unsafe_code)]
            mod incbin {
                // `.ifndef`: one definition per assembly unit; `.org`: exactly `$len` bytes.
                ::core::arch::global_asm!(
                    concat!(".ifndef ", $symbol),
                    concat!(".pushsection .rodata.", $symbol, ",\"a\",%progbits"),
                    ".balign 64",
                    concat!(".weak ", $symbol),
                    concat!(".hidden ", $symbol),
                    concat!(".type ", $symbol, ",%object"),
                    concat!($symbol, ":"),
                    concat!(".incbin \"", $path, "\", 0, ", $len),
                    concat!(".org ", $symbol, " + ", $len, ", 0"),
                    concat!(".size ", $symbol, ", ", $len),
                    ".popsection",
                    ".endif",
                );
                // SAFETY: the assembly above defines `$symbol` as `$len` immutable bytes in a
                // read-only section, live for the whole program: a `[u8; $len]` static.
                unsafe extern "C" {
                    #[link_name = $symbol]
                    pub(super) safe static BYTES: [u8; $len];
                }
            }
            &incbin::BYTES
        };
        $(#[$attr])*
        #[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
        $vis static $name: &[u8] = &$crate::blob::Aligned {
            bytes: *::core::include_bytes!($path),
        }
        .bytes;
    };
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
            return err("not 64-byte aligned: embed it with dynq_runtime::embedded_blob!".into());
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

/// A value built once, on first use, by a fallible initializer: a failure is returned and not
/// kept, so a later call (after the weights file was put in place, or after
/// [`WeightsFile::load`]) tries again. Concurrent first calls run the initializer once.
///
/// ```
/// use dynq_runtime::blob::LoadOnce;
/// static CELL: LoadOnce<u32> = LoadOnce::new();
/// assert!(CELL.get_or_try_init(|| Err(dynq_runtime::Error::NoRows)).is_err());
/// assert_eq!(*CELL.get_or_try_init(|| Ok(7)).unwrap(), 7);
/// assert_eq!(*CELL.get_or_try_init(|| Ok(8)).unwrap(), 7);
/// ```
#[derive(Debug)]
pub struct LoadOnce<T> {
    value: OnceLock<T>,
    init: Mutex<()>,
}

impl<T> Default for LoadOnce<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> LoadOnce<T> {
    /// An empty cell (usable in a `static`).
    pub const fn new() -> Self {
        LoadOnce {
            value: OnceLock::new(),
            init: Mutex::new(()),
        }
    }

    /// The value, if it was built.
    pub fn get(&self) -> Option<&T> {
        self.value.get()
    }

    /// The value, built by `init` if this is the first successful call.
    pub fn get_or_try_init(&self, init: impl FnOnce() -> Result<T, Error>) -> Result<&T, Error> {
        if let Some(v) = self.value.get() {
            return Ok(v);
        }
        // A poisoned lock only means an initializer panicked; the cell is still empty or set.
        let _guard = self.init.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = self.value.get() {
            return Ok(v);
        }
        let v = init()?;
        Ok(self.value.get_or_init(|| v))
    }
}

/// The environment variable that names the directory holding the weights files of models built
/// with `[target] weights = "file"`. When it is set, only that directory is searched.
pub const WEIGHTS_DIR_ENV: &str = "DYNQ_WEIGHTS_DIR";

/// The weights of a model built with `[target] weights = "file"`: `<model>.blob`, memory-mapped
/// at first use and checked against the build ([`open_file`]).
///
/// The file is looked for, in order:
/// 1. where [`WeightsFile::load`] was told (the generated `load_weights`), if it was called;
/// 2. in `$DYNQ_WEIGHTS_DIR`, if that is set (and nowhere else then);
/// 3. next to the running executable;
/// 4. where the build wrote it (a build script's `OUT_DIR` or `dynq_model!`'s cache), so that
///    `cargo run` and `cargo test` find it without copying.
///
/// The first of 2-4 that exists is opened; if it does not match the build, that is the error
/// (a stale copy next to the executable is not skipped in silence).
#[derive(Debug)]
pub struct WeightsFile {
    file: &'static str,
    built_at: Option<&'static str>,
    id: &'static str,
    len: usize,
    loaded: LoadOnce<(Blob<'static>, PathBuf)>,
}

impl WeightsFile {
    /// The weights file `file` (a file name, `<model>.blob`) of the build with blob `id` (hex)
    /// and length `len`; `built_at` is the path the build wrote it to, if the generated code
    /// knows it.
    pub const fn new(
        file: &'static str,
        built_at: Option<&'static str>,
        id: &'static str,
        len: usize,
    ) -> Self {
        WeightsFile {
            file,
            built_at,
            id,
            len,
            loaded: LoadOnce::new(),
        }
    }

    /// The file name looked for: `<model>.blob`.
    pub fn file_name(&self) -> &'static str {
        self.file
    }

    /// The path the weights were loaded from, once they were.
    pub fn path(&self) -> Option<&Path> {
        self.loaded.get().map(|(_, p)| p.as_path())
    }

    /// The paths searched when [`WeightsFile::load`] was not called, in order.
    pub fn candidates(&self) -> Vec<PathBuf> {
        if let Some(dir) = std::env::var_os(WEIGHTS_DIR_ENV) {
            return vec![PathBuf::from(dir).join(self.file)];
        }
        let mut c = Vec::new();
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            c.push(dir.join(self.file));
        }
        if let Some(p) = self.built_at {
            let p = PathBuf::from(p);
            if !c.contains(&p) {
                c.push(p);
            }
        }
        c
    }

    /// The checked blob: loaded from the first candidate that exists on the first call.
    pub fn blob(&self) -> Result<Blob<'static>, Error> {
        self.loaded
            .get_or_try_init(|| {
                let candidates = self.candidates();
                match candidates.iter().find(|p| p.exists()) {
                    Some(p) => Ok((open_file(p, self.id, self.len)?, p.clone())),
                    None => Err(self.not_found(&candidates)),
                }
            })
            .map(|(b, _)| *b)
    }

    /// Loads the weights from `path` now, instead of searching. Call it before the model's
    /// first use; once the weights are loaded, another path is refused (the same path is not an
    /// error).
    pub fn load(&self, path: &Path) -> Result<(), Error> {
        let (_, at) = self
            .loaded
            .get_or_try_init(|| Ok((open_file(path, self.id, self.len)?, path.to_path_buf())))?;
        if at != path {
            return Err(Error::WeightsFile {
                path: path.to_path_buf(),
                reason: format!(
                    "not loaded: the weights were already loaded from {}; load_weights must be called before the model's first use",
                    at.display()
                ),
            });
        }
        Ok(())
    }

    fn not_found(&self, candidates: &[PathBuf]) -> Error {
        let looked = candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Error::WeightsFile {
            path: candidates
                .first()
                .cloned()
                .unwrap_or_else(|| PathBuf::from(self.file)),
            reason: format!(
                "not found (looked in: {looked}). This model was built with its weights in a file \
                 (`[target] weights = \"file\"`): copy {} next to the executable, set \
                 {WEIGHTS_DIR_ENV} to the directory that holds it, or call load_weights(path)",
                self.file
            ),
        }
    }
}

/// Memory-maps the weights file at `path` and checks it: length, header and id, and the
/// SHA-256 of its content against the id (so a file edited in place is refused too). The map
/// lives for the rest of the process.
pub fn open_file(
    path: &Path,
    expected_id: &str,
    expected_len: usize,
) -> Result<Blob<'static>, Error> {
    let err = |reason: String| Error::WeightsFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let found = file
        .metadata()
        .map_err(|e| err(format!("cannot read its size: {e}")))?
        .len();
    if found != expected_len as u64 {
        return Err(err(format!(
            "length: expected {expected_len} bytes, found {found}: the file belongs to another build of the model, or is incomplete; copy the {expected_len}-byte file written by the build of this executable"
        )));
    }
    // SAFETY: the map is read-only and is never unmapped (it is leaked below), so the slice
    // stays valid for the process. memmap2 cannot stop another process from truncating or
    // rewriting the file while it is mapped; the content is hashed once below, and a weights
    // file must not be modified while a process uses it (as with a shared library).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| err(format!("cannot map: {e}")))?;
    let map: &'static memmap2::Mmap = Box::leak(Box::new(map));
    let bytes: &'static [u8] = map;
    let blob = Blob::open(bytes, expected_id, expected_len).map_err(|e| {
        err(match e {
            Error::Blob(m) if m.starts_with("id:") => format!(
                "id: expected {expected_id}, found {}: the file belongs to another build of the model; copy the weights file written by the build of this executable",
                hex(&bytes[24..56])
            ),
            Error::Blob(m) => m,
            e => e.to_string(),
        })
    })?;
    let digest = hex(&Sha256::digest(&bytes[HEADER_LEN..]));
    if digest != expected_id {
        return Err(err(format!(
            "content hash: expected {expected_id}, found {digest}: the file was modified after the build; copy it again from the build"
        )));
    }
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob of one f32 section (`values`), as dynq-build writes it; returns (bytes, id).
    fn blob_bytes(values: &[f32]) -> (Vec<u8>, String) {
        let manifest = format!("128 {} f32 [{}] v\n", values.len() * 4, values.len());
        let mut bytes = vec![0u8; 128];
        bytes[HEADER_LEN..HEADER_LEN + manifest.len()].copy_from_slice(manifest.as_bytes());
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        bytes.resize(bytes.len().next_multiple_of(ALIGN), 0);
        let digest = Sha256::digest(&bytes[HEADER_LEN..]);
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[12..16].copy_from_slice(&(manifest.len() as u32).to_le_bytes());
        let len = bytes.len() as u64;
        bytes[16..24].copy_from_slice(&len.to_le_bytes());
        bytes[24..56].copy_from_slice(&digest);
        (bytes, hex(&digest))
    }

    /// A fresh directory, removed when the returned guard drops.
    fn dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("dynq-blob-")
            .tempdir()
            .unwrap()
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    #[test]
    fn a_weights_file_is_mapped_checked_and_read() {
        let (bytes, id) = blob_bytes(&[1.0, -2.5, 3.0]);
        let tmp = dir();
        let d = tmp.path();
        let path = d.join("m.blob");
        std::fs::write(&path, &bytes).unwrap();
        let b = open_file(&path, &id, bytes.len()).unwrap();
        assert_eq!(b.f32s(128, 3).unwrap(), &[1.0, -2.5, 3.0]);
        assert!(b.manifest().contains("f32 [3] v"));

        // Found where the build wrote it, and remembered.
        let file = WeightsFile::new(
            "m.blob",
            Some(leak(path.display().to_string())),
            leak(id),
            bytes.len(),
        );
        assert_eq!(file.blob().unwrap().f32s(128, 3).unwrap()[1], -2.5);
        assert_eq!(file.path(), Some(path.as_path()));
        file.load(&path).unwrap();
        let other = d.join("other.blob");
        std::fs::write(&other, &bytes).unwrap();
        let e = file.load(&other).unwrap_err().to_string();
        assert!(
            e.contains("already loaded from") && e.contains("m.blob"),
            "{e}"
        );
    }

    #[test]
    fn a_weights_file_of_another_build_is_refused_and_named() {
        let (bytes, id) = blob_bytes(&[1.0, 2.0]);
        let tmp = dir();
        let d = tmp.path();
        // Another build of the same size: the header's id differs.
        let (other, _) = blob_bytes(&[1.0, 3.0]);
        let path = d.join("other.blob");
        std::fs::write(&path, &other).unwrap();
        let e = open_file(&path, &id, bytes.len()).unwrap_err().to_string();
        assert!(
            e.contains("other.blob") && e.contains("id: expected") && e.contains("another"),
            "{e}"
        );

        // Edited in place after the build: the header is right, the content is not.
        let mut edited = bytes.clone();
        edited[130] ^= 1;
        std::fs::write(&path, &edited).unwrap();
        let e = open_file(&path, &id, bytes.len()).unwrap_err().to_string();
        assert!(e.contains("content hash") && e.contains(&id), "{e}");

        // Truncated.
        std::fs::write(&path, &bytes[..100]).unwrap();
        let e = open_file(&path, &id, bytes.len()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("expected {} bytes, found 100", bytes.len())),
            "{e}"
        );

        // Not a blob at all, of the right length.
        std::fs::write(&path, vec![7u8; bytes.len()]).unwrap();
        let e = open_file(&path, &id, bytes.len()).unwrap_err().to_string();
        assert!(e.contains("magic"), "{e}");
    }

    #[test]
    fn a_missing_weights_file_lists_where_it_was_looked_for_and_is_retried() {
        let (bytes, id) = blob_bytes(&[4.0]);
        let tmp = dir();
        let d = tmp.path();
        let path = d.join("late.blob");
        let file = WeightsFile::new(
            "late.blob",
            Some(leak(path.display().to_string())),
            leak(id),
            bytes.len(),
        );
        let e = file.blob().unwrap_err().to_string();
        assert!(
            e.contains("not found") && e.contains(&path.display().to_string()),
            "{e}"
        );
        assert!(
            e.contains(WEIGHTS_DIR_ENV) && e.contains("load_weights"),
            "{e}"
        );
        // A failure is not kept: once the file is there, the next call loads it.
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(file.blob().unwrap().f32s(128, 1).unwrap(), &[4.0]);
    }
}
