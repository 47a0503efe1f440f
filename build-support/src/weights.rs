//! Safetensors weights: memory-mapped, validated, read as f32 whatever their stored dtype.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{SafeTensorError, SafeTensors};

/// The dtypes of safetensors files.
pub use safetensors::Dtype;

use crate::error::{Error, Result};

/// An open, validated safetensors file.
///
/// ```no_run
/// let w = dynq_build::weights::Weights::open("model.safetensors".as_ref()).unwrap();
/// let t = w.get("net.0.weight", &[32, 64]).unwrap();
/// assert_eq!(t.data.len(), 32 * 64);
/// ```
#[derive(Debug)]
pub struct Weights {
    path: PathBuf,
    map: Mmap,
}

/// The dtype a tensor is stored in, in the weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceDtype {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
}

/// A tensor read as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Its name in the file.
    pub name: String,
    /// How the file stores it (f16 sources can be stored as f16 again without loss).
    pub source: SourceDtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub data: Vec<f32>,
}

fn describe(e: &SafeTensorError) -> String {
    match e {
        SafeTensorError::HeaderTooSmall => {
            "the header is too small to be a safetensors file".into()
        }
        SafeTensorError::HeaderTooLarge => {
            "the header length is larger than safetensors allows".into()
        }
        SafeTensorError::InvalidHeaderLength => "the header length exceeds the file size".into(),
        SafeTensorError::InvalidHeader(_) => "the header is not valid UTF-8".into(),
        SafeTensorError::InvalidHeaderDeserialization(m) => {
            format!("the header is not valid safetensors JSON: {m}")
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "the tensor data in the header does not cover the file exactly (truncated file?)".into()
        }
        SafeTensorError::InvalidOffset(name) => {
            format!("tensor `{name}`: its data offsets overlap another tensor or leave a gap")
        }
        SafeTensorError::ValidationOverflow => "a tensor's shape or offsets overflow".into(),
        SafeTensorError::TensorInvalidInfo => {
            "a tensor's byte length does not match its shape and dtype".into()
        }
        other => other.to_string(),
    }
}

/// One header entry, as safetensors stores it.
#[derive(serde::Deserialize)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// The first fault in the data layout a header describes: offsets that end before they start,
/// overlap or leave gaps, byte lengths that do not match shape and dtype, data that runs past
/// the end of the file or stops short of it. `None` if the header cannot be read this way.
fn explain_layout(header: &[u8], data_len: usize) -> Option<String> {
    let map: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).ok()?;
    let mut entries: Vec<(String, Entry)> = map
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, v)| Some((name, serde_json::from_value(v).ok()?)))
        .collect::<Option<_>>()?;
    entries.sort_by_key(|(_, e)| e.data_offsets);
    let mut prev: Option<(&str, usize)> = None;
    for (name, e) in &entries {
        let (start, end) = e.data_offsets;
        let at = format!("tensor `{name}`: data offsets [{start}, {end}]");
        let prev_end = prev.map_or(0, |(_, end)| end);
        let after = match prev {
            Some((p, end)) => format!("the previous tensor `{p}`, which ends at {end}"),
            None => "the start of the data".into(),
        };
        if end < start {
            return Some(format!("{at} end before they start"));
        }
        if start < prev_end {
            return Some(format!("{at} overlap {after}"));
        }
        if start > prev_end {
            return Some(format!(
                "{at} leave a gap of {} bytes after {after}",
                start - prev_end
            ));
        }
        let bits = e
            .shape
            .iter()
            .try_fold(e.dtype.bitsize(), |n, &d| n.checked_mul(d));
        let Some(bits) = bits else {
            return Some(format!("tensor `{name}`: shape {:?} overflows", e.shape));
        };
        if bits % 8 != 0 || end - start != bits / 8 {
            let size = if bits % 8 == 0 {
                format!("{} bytes", bits / 8)
            } else {
                format!("{bits} bits, not a whole number of bytes")
            };
            return Some(format!(
                "{at} do not match its shape {:?} and dtype {:?} ({size})",
                e.shape, e.dtype
            ));
        }
        prev = Some((name, end));
    }
    if let Some((name, e)) = entries.iter().find(|(_, e)| e.data_offsets.1 > data_len) {
        let (start, end) = e.data_offsets;
        return Some(format!(
            "tensor `{name}`: data offsets [{start}, {end}] run past the end of the data ({data_len} bytes after the header): truncated file?"
        ));
    }
    match prev {
        Some((name, end)) if end < data_len => Some(format!(
            "{} bytes follow the last tensor's data (`{name}` ends at {end} of {data_len}): trailing garbage or a wrong offset",
            data_len - end
        )),
        None if data_len > 0 => Some(format!(
            "the header lists no tensors, but {data_len} bytes of data follow it"
        )),
        _ => None,
    }
}

impl Weights {
    /// Opens and validates a safetensors file (header, offsets, sizes); reads no tensor yet.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, "cannot open weights", e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(path, "cannot read metadata of weights", e))?
            .len();
        let bad = |message: String| Error::Weights {
            file: path.to_path_buf(),
            message,
        };
        if len < 8 {
            return Err(bad(format!(
                "not a safetensors file: expected at least 8 bytes (the header length), found {len}"
            )));
        }
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            let e = std::io::Error::from(std::io::ErrorKind::IsADirectory);
            return Err(Error::io(path, "cannot open weights", e));
        }
        let map = map_file(&file).map_err(|e| Error::io(path, "cannot map weights", e))?;
        let header_len = u64::from_le_bytes(map[..8].try_into().expect("8 bytes"));
        if header_len > len - 8 {
            return Err(bad(format!(
                "truncated safetensors file: the header claims {header_len} bytes but only {} follow the length prefix",
                len - 8
            )));
        }
        SafeTensors::deserialize(&map).map_err(|e| {
            // The crate's layout errors do not say which tensor or which offsets: find them.
            let header = &map[8..8 + header_len as usize];
            let data_len = (len - 8 - header_len) as usize;
            bad(explain_layout(header, data_len).unwrap_or_else(|| describe(&e)))
        })?;
        Ok(Weights {
            path: path.to_path_buf(),
            map,
        })
    }

    /// The file these weights came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw file bytes (for content hashing).
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.map).expect("validated in Weights::open")
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tensors()
            .names()
            .into_iter()
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }

    /// Whether the file holds a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors().tensor(name).is_ok()
    }

    fn tensor_error(&self, tensor: &str, message: String) -> Error {
        Error::Tensor {
            file: self.path.clone(),
            tensor: tensor.to_string(),
            message,
        }
    }

    /// Reads tensor `name` as f32, checking its shape and that every value is finite.
    pub fn get(&self, name: &str, expected_shape: &[usize]) -> Result<Tensor> {
        let tensors = self.tensors();
        let view = tensors.tensor(name).map_err(|_| {
            let names = self.names();
            let prefix = name.rsplit_once('.').map_or("", |(p, _)| p);
            let near: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| !prefix.is_empty() && n.starts_with(prefix))
                .take(8)
                .collect();
            let hint = if near.is_empty() {
                format!(
                    "the file has {} tensors: {}{}",
                    names.len(),
                    names.iter().take(8).cloned().collect::<Vec<_>>().join(", "),
                    if names.len() > 8 { ", ..." } else { "" }
                )
            } else {
                format!("tensors with prefix `{prefix}`: {}", near.join(", "))
            };
            self.tensor_error(name, format!("not found; {hint}"))
        })?;
        if view.shape() != expected_shape {
            return Err(self.tensor_error(
                name,
                format!(
                    "expected shape {expected_shape:?}, found {:?}",
                    view.shape()
                ),
            ));
        }
        let bytes = view.data();
        let source = match view.dtype() {
            Dtype::F16 => SourceDtype::F16,
            Dtype::BF16 => SourceDtype::Bf16,
            _ => SourceDtype::F32,
        };
        let Some(data) = decode_float(view.dtype(), bytes) else {
            return Err(self.tensor_error(
                name,
                format!(
                    "unsupported dtype {:?}, expected F32, F16 or BF16",
                    view.dtype()
                ),
            ));
        };
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            let mut index = Vec::with_capacity(expected_shape.len());
            let mut rest = i;
            for &d in expected_shape.iter().rev() {
                index.push(rest % d.max(1));
                rest /= d.max(1);
            }
            index.reverse();
            return Err(self.tensor_error(
                name,
                format!("non-finite value {} at index {index:?}", data[i]),
            ));
        }
        Ok(Tensor {
            name: name.to_string(),
            source,
            shape: expected_shape.to_vec(),
            data,
        })
    }

    /// Tensor `name` as stored: dtype, shape and little-endian bytes, if present.
    pub fn raw(&self, name: &str) -> Option<(Dtype, Vec<usize>, &[u8])> {
        let tensors = self.tensors();
        let view = tensors.tensor(name).ok()?;
        Some((view.dtype(), view.shape().to_vec(), view.data()))
    }

    /// The shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors().tensor(name).ok().map(|v| v.shape().to_vec())
    }
}

/// Little-endian F32, F16 or BF16 bytes as f32 values; `None` for other dtypes.
///
/// ```
/// use dynq_build::weights::Dtype;
/// let v = dynq_build::weights::decode_float(Dtype::F16, &[0x00, 0x3c]).unwrap();
/// assert_eq!(v, [1.0]);
/// assert!(dynq_build::weights::decode_float(Dtype::I64, &[0; 8]).is_none());
/// ```
pub fn decode_float(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

fn map_file(file: &File) -> std::io::Result<Mmap> {
    // The one `unsafe` of dynq-build: memmap2 cannot promise that no other process truncates
    // or rewrites the file while it is mapped.
    // SAFETY: the map is read-only and lives as long as `Weights`; the build reads a weights
    // file that no one is expected to modify while it is being compiled.
    unsafe { Mmap::map(file) }
}
