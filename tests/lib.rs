//! Shared helpers of the end-to-end tests: deterministic synthetic weights and fixture files.

use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// A small deterministic generator (64-bit LCG), so fixtures are the same on every machine.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Lcg(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407))
    }

    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// `n` values uniform in [-scale, scale).
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32() * scale).collect()
    }
}

/// A tensor to write: name, dtype, shape, raw little-endian bytes.
pub struct RawTensor {
    /// Name in the file.
    pub name: String,
    /// Stored dtype.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub bytes: Vec<u8>,
}

impl RawTensor {
    /// An f32 tensor.
    pub fn f32(name: &str, shape: &[usize], data: &[f32]) -> Self {
        RawTensor {
            name: name.into(),
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// Writes a safetensors file.
pub fn write_safetensors(path: &Path, tensors: &[RawTensor]) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            let view = TensorView::new(t.dtype, t.shape.clone(), &t.bytes).expect("valid tensor");
            (t.name.clone(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).expect("serialize");
    std::fs::write(path, bytes).expect("write safetensors");
}

/// Random MLP weights for the given widths (`widths[0]` is the input), named `net.{2i}`.
pub fn mlp_tensors(seed: u64, widths: &[usize]) -> Vec<RawTensor> {
    let mut rng = Lcg::new(seed);
    let mut out = Vec::new();
    for (i, w) in widths.windows(2).enumerate() {
        let (k, n) = (w[0], w[1]);
        let bound = 1.0 / (k as f32).sqrt();
        out.push(RawTensor::f32(
            &format!("net.{}.weight", 2 * i),
            &[n, k],
            &rng.vec(n * k, bound),
        ));
        out.push(RawTensor::f32(
            &format!("net.{}.bias", 2 * i),
            &[n],
            &rng.vec(n, bound),
        ));
    }
    out
}

/// Writes `<dir>/<name>.toml` with the given text and returns its path.
pub fn write_toml(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).expect("write toml");
    p
}

/// Relative L2 distance `||a - b|| / ||b||` (0 when both are zero).
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Relative L2 error per row of `width` values, and of all rows together.
pub fn rel_l2_rows(test: &[f32], reference: &[f32], width: usize) -> (Vec<f64>, f64) {
    let per = test
        .chunks_exact(width)
        .zip(reference.chunks_exact(width))
        .map(|(t, r)| rel_l2(t, r))
        .collect();
    (per, rel_l2(test, reference))
}

/// The mean of per-row errors.
pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The worst of per-row errors.
pub fn worst(v: &[f64]) -> f64 {
    v.iter().cloned().fold(0.0, f64::max)
}

/// Reads an f32 tensor from a safetensors file.
pub fn read_f32(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).expect("read safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let t = st.tensor(name).expect("tensor present");
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let data = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), data)
}

/// Reads an i64 tensor from a safetensors file as u32 (token ids, masks).
pub fn read_ids(path: &Path, name: &str) -> (Vec<usize>, Vec<u32>) {
    let bytes = std::fs::read(path).expect("read safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let t = st.tensor(name).expect("tensor present");
    assert_eq!(t.dtype(), Dtype::I64, "{name}");
    let data = t
        .data()
        .chunks_exact(8)
        .map(|b| {
            u32::try_from(i64::from_le_bytes(b.try_into().expect("8 bytes"))).expect("id fits u32")
        })
        .collect();
    (t.shape().to_vec(), data)
}

/// Asserts that two builds of one encoder (the inlined forward, with its sizes as constants,
/// and the runtime's shared forward, with them as values) give the same bits: each input
/// alone, and all of them as one batch.
pub fn assert_same_bits<A, B>(label: &str, a: &A, b: &B, inputs: &[dynq_runtime::BertInput<'_>])
where
    A: dynq_runtime::EncoderModel,
    B: dynq_runtime::EncoderModel,
{
    let w = A::OUTPUT_SIZE;
    assert_eq!(w, B::OUTPUT_SIZE, "{label}: output sizes");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (i, input) in inputs.iter().enumerate() {
        let (mut x, mut y) = (vec![0.0; w], vec![0.0; w]);
        a.forward(input, &mut x).unwrap();
        b.forward(input, &mut y).unwrap();
        assert_eq!(bits(&x), bits(&y), "{label}: input {i}");
    }
    let (mut x, mut y) = (vec![0.0; inputs.len() * w], vec![0.0; inputs.len() * w]);
    a.forward_batch(inputs, &mut x).unwrap();
    b.forward_batch(inputs, &mut y).unwrap();
    assert_eq!(bits(&x), bits(&y), "{label}: the batch");
}
