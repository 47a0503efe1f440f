//! The deterministic weight-blob writer (the reader is `dynq_runtime::blob`).

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"DYNQBLOB";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
const ALIGN: usize = 64;

/// Where a section landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Byte offset from the start of the blob (a multiple of 64).
    pub offset: usize,
    /// Number of elements.
    pub count: usize,
}

/// Collects sections, then lays them out: header, manifest, 64-byte aligned data.
///
/// ```
/// let mut w = dynq_build::blob::BlobWriter::default();
/// w.f32s("bias", &[2], &[1.0, 2.0]);
/// let blob = w.finish();
/// assert_eq!(&blob.bytes[..8], b"DYNQBLOB");
/// assert_eq!(blob.bytes.len() % 64, 0);
/// ```
#[derive(Debug, Default)]
pub struct BlobWriter {
    entries: Vec<(String, &'static str, Vec<usize>, Vec<u8>)>,
}

/// A finished blob.
#[derive(Debug, Clone)]
pub struct FinishedBlob {
    /// The whole file.
    pub bytes: Vec<u8>,
    /// The manifest text (also inside `bytes`).
    pub manifest: String,
    /// SHA-256 of everything after the header, hex.
    pub id: String,
    /// Where each section landed, in insertion order.
    pub sections: Vec<Section>,
}

impl BlobWriter {
    fn push(&mut self, name: &str, dtype: &'static str, shape: &[usize], bytes: Vec<u8>) -> usize {
        self.entries
            .push((name.to_string(), dtype, shape.to_vec(), bytes));
        self.entries.len() - 1
    }

    /// Adds f32 values; returns the section index.
    pub fn f32s(&mut self, name: &str, shape: &[usize], v: &[f32]) -> usize {
        self.push(
            name,
            "f32",
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    /// Adds f32 values stored as f16 (round to nearest even); returns the section index.
    pub fn f16s(&mut self, name: &str, shape: &[usize], v: &[f32]) -> usize {
        self.push(
            name,
            "f16",
            shape,
            v.iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect(),
        )
    }

    /// Adds i32 values; returns the section index.
    pub fn i32s(&mut self, name: &str, shape: &[usize], v: &[i32]) -> usize {
        self.push(
            name,
            "i32",
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    /// Adds i8 values; returns the section index.
    pub fn i8s(&mut self, name: &str, shape: &[usize], v: &[i8]) -> usize {
        self.push(name, "i8", shape, v.iter().map(|&x| x as u8).collect())
    }

    /// Lays the sections out and computes the id.
    pub fn finish(self) -> FinishedBlob {
        let align = |n: usize| n.div_ceil(ALIGN) * ALIGN;
        // The manifest states offsets, which depend on the manifest's own length: lay out with
        // a provisional length until it is stable (offsets only grow, so this terminates).
        let mut manifest_len = 0;
        let (manifest, offsets) = loop {
            let mut offset = align(HEADER_LEN + manifest_len);
            let mut text = String::new();
            let mut offsets = Vec::new();
            for (name, dtype, shape, bytes) in &self.entries {
                offsets.push(offset);
                let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
                text.push_str(&format!(
                    "{offset} {} {dtype} [{}] {name}\n",
                    bytes.len(),
                    dims.join(",")
                ));
                offset = align(offset + bytes.len());
            }
            if align(HEADER_LEN + text.len()) == align(HEADER_LEN + manifest_len) {
                break (text, offsets);
            }
            manifest_len = text.len();
        };
        let data_start = align(HEADER_LEN + manifest.len());
        let end = self
            .entries
            .iter()
            .zip(&offsets)
            .map(|((_, _, _, b), &o)| align(o + b.len()))
            .max()
            .unwrap_or(data_start)
            .max(data_start);
        let mut bytes = vec![0u8; end];
        bytes[HEADER_LEN..HEADER_LEN + manifest.len()].copy_from_slice(manifest.as_bytes());
        let mut sections = Vec::new();
        for ((_, dtype, _, b), &o) in self.entries.iter().zip(&offsets) {
            bytes[o..o + b.len()].copy_from_slice(b);
            let width = match *dtype {
                "f32" | "i32" => 4,
                "f16" => 2,
                _ => 1,
            };
            sections.push(Section {
                offset: o,
                count: b.len() / width,
            });
        }
        let digest = Sha256::digest(&bytes[HEADER_LEN..]);
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[12..16].copy_from_slice(&(manifest.len() as u32).to_le_bytes());
        bytes[16..24].copy_from_slice(&(end as u64).to_le_bytes());
        bytes[24..56].copy_from_slice(&digest);
        let id = digest.iter().map(|b| format!("{b:02x}")).collect();
        FinishedBlob {
            bytes,
            manifest,
            id,
            sections,
        }
    }
}
