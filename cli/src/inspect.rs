//! `dynq inspect`: what a safetensors file holds (names, dtypes, shapes, value ranges,
//! NaN/Inf counts), before any model description exists.

use std::fmt;
use std::path::Path;

use dynq_build::weights::{decode_float, Dtype, Weights};
use dynq_build::Result;

/// One tensor of an [`Inspection`].
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Its name in the file.
    pub name: String,
    /// Its dtype (`F32`, `F16`, `I64`, ...).
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Smallest and largest finite value (`None` when it holds none, or for non-numeric
    /// dtypes).
    pub range: Option<(f64, f64)>,
    /// NaN values.
    pub nan: usize,
    /// Infinite values.
    pub inf: usize,
}

impl TensorInfo {
    /// Element count.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every tensor of a safetensors file, sorted by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// The tensors.
    pub tensors: Vec<TensorInfo>,
    /// Bytes of tensor data.
    pub bytes: usize,
}

/// Reads every tensor of `path` once.
///
/// ```no_run
/// let i = dynq_cli::inspect::inspect("model.safetensors".as_ref()).unwrap();
/// assert!(i.tensors.iter().all(|t| t.nan == 0 && t.inf == 0));
/// print!("{i}");
/// ```
pub fn inspect(path: &Path) -> Result<Inspection> {
    let weights = Weights::open(path)?;
    let names = weights.names();
    let bar = crate::progress::bar(names.len(), "reading");
    let mut tensors = Vec::with_capacity(names.len());
    let mut bytes = 0;
    for name in names {
        bar.inc(1);
        let (dtype, shape, data) = weights.raw(&name).expect("listed by names()");
        bytes += data.len();
        let mut info = TensorInfo {
            name,
            dtype: format!("{dtype:?}"),
            shape,
            range: None,
            nan: 0,
            inf: 0,
        };
        let mut add = |v: f64| {
            if v.is_nan() {
                info.nan += 1;
            } else if v.is_infinite() {
                info.inf += 1;
            } else {
                info.range = Some(info.range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
            }
        };
        match decode_float(dtype, data) {
            Some(values) => values.into_iter().for_each(|v| add(f64::from(v))),
            None => for_each_other(dtype, data, add),
        }
        tensors.push(info);
    }
    bar.finish_and_clear();
    Ok(Inspection { tensors, bytes })
}

/// Calls `f` with each value of a non-16/32-bit-float tensor; nothing for non-numeric dtypes.
fn for_each_other(dtype: Dtype, data: &[u8], mut f: impl FnMut(f64)) {
    macro_rules! each {
        ($t:ty) => {
            data.chunks_exact(std::mem::size_of::<$t>())
                .for_each(|b| f(<$t>::from_le_bytes(b.try_into().expect("element size")) as f64))
        };
    }
    match dtype {
        Dtype::F64 => each!(f64),
        Dtype::I64 => each!(i64),
        Dtype::I32 => each!(i32),
        Dtype::I16 => each!(i16),
        Dtype::I8 => each!(i8),
        Dtype::U64 => each!(u64),
        Dtype::U32 => each!(u32),
        Dtype::U16 => each!(u16),
        Dtype::U8 => each!(u8),
        Dtype::BOOL => data.iter().for_each(|&b| f(f64::from(b))),
        _ => {}
    }
}

fn number(v: f64) -> String {
    if v == 0.0 || (1e-3..1e5).contains(&v.abs()) {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.tensors.iter().map(|t| t.name.as_str());
        let width = crate::summary::column_width(names, 6, 46);
        writeln!(
            f,
            "{:<width$} {:<5} {:<12} {:>10} {:>10} {:>5} {:>5}",
            "tensor", "dtype", "shape", "min", "max", "NaN", "Inf"
        )?;
        for t in &self.tensors {
            let (lo, hi) = t.range.map_or(("-".into(), "-".into()), |(lo, hi)| {
                (number(lo), number(hi))
            });
            writeln!(
                f,
                "{:<width$} {:<5} {:<12} {:>10} {:>10} {:>5} {:>5}",
                t.name,
                t.dtype,
                format!("{:?}", t.shape),
                lo,
                hi,
                t.nan,
                t.inf
            )?;
        }
        let params: usize = self.tensors.iter().map(TensorInfo::len).sum();
        let bad: Vec<&str> = self
            .tensors
            .iter()
            .filter(|t| t.nan + t.inf > 0)
            .map(|t| t.name.as_str())
            .collect();
        write!(
            f,
            "{} tensors, {} values, {}; ",
            self.tensors.len(),
            params,
            crate::summary::mib(self.bytes)
        )?;
        if bad.is_empty() {
            writeln!(f, "no NaN or Inf")
        } else {
            writeln!(f, "NaN or Inf in {}: {}", bad.len(), bad.join(", "))
        }
    }
}
