//! Shared by the runtime's integration tests: a deterministic generator, and weight matrices
//! kept in f32 and quantized (symmetric per channel) in the kernels' packed layout.

use dynq_runtime::kernels::{packed_index, packed_len};
use dynq_runtime::{F32Linear, Linear, QLinear};

/// A small deterministic generator: values in [-1, 1).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// `n` values in `[-scale, scale)`.
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// An `n x k` weight matrix (row `j` is output channel `j`) and its bias, f32 and quantized.
pub struct Matrix {
    pub n: usize,
    pub k: usize,
    pub w: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    packed: Vec<i8>,
    scales: Vec<f32>,
    col_sums: Vec<i32>,
}

impl Matrix {
    /// Quantizes `w` (`n * k` values) per channel with scale `absmax / 127`, as the build does.
    pub fn new(n: usize, k: usize, w: Vec<f32>, bias: Option<Vec<f32>>) -> Self {
        assert_eq!(w.len(), n * k);
        let mut packed = vec![0i8; packed_len(n, k)];
        let (mut scales, mut col_sums) = (vec![0.0; n], vec![0; n]);
        for j in 0..n {
            let row = &w[j * k..(j + 1) * k];
            let absmax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if absmax > 0.0 { absmax / 127.0 } else { 1.0 };
            scales[j] = s;
            for (kk, v) in row.iter().enumerate() {
                let q = (v / s).round().clamp(-127.0, 127.0) as i8;
                packed[packed_index(j, kk, k)] = q;
                col_sums[j] += i32::from(q);
            }
        }
        Matrix {
            n,
            k,
            w,
            bias,
            packed,
            scales,
            col_sums,
        }
    }

    /// The layer as the ops take it: INT8 (packed) or f32.
    pub fn view(&self, int8: bool) -> Linear<'_> {
        if int8 {
            Linear::Int8(QLinear {
                n: self.n,
                k: self.k,
                weight: &self.packed,
                scales: &self.scales,
                col_sums: &self.col_sums,
                bias: self.bias.as_deref(),
            })
        } else {
            Linear::F32(F32Linear {
                n: self.n,
                k: self.k,
                weight: &self.w,
                bias: self.bias.as_deref(),
            })
        }
    }
}
