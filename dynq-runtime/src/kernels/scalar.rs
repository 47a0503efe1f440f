//! The portable reference kernel.

use super::{Kernel, KernelId, QuantizedRows};
use crate::ops::{apply_activation, Activation, F32Linear, QLinear};

/// Portable Rust kernel: the reference every SIMD kernel must match bit for bit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scalar(());

impl Scalar {
    /// The scalar kernel needs no CPU feature, so anyone may hold one.
    pub const fn new() -> Self {
        Scalar(())
    }
}

/// `sum_k a[k] * w[k]` in i32. |a| <= 255 and |w| <= 127, so each product is below 2^15 and
/// the build rejects K > 66_000, keeping the sum below 2^31.
#[inline(always)]
fn dot_i32<A: Copy + Into<i32>>(a: &[A], w: &[i8]) -> i32 {
    a.iter()
        .zip(w)
        .map(|(&a, &w)| a.into() * i32::from(w))
        .sum()
}

#[inline(always)]
fn epilogue_row(acc: impl Iterator<Item = i32>, row_scale: f32, w: &QLinear<'_>, out: &mut [f32]) {
    for ((o, acc), &ws) in out.iter_mut().zip(acc).zip(w.scales) {
        *o = acc as f32 * (row_scale * ws);
    }
    if let Some(bias) = w.bias {
        for (o, b) in out.iter_mut().zip(bias) {
            *o += b;
        }
    }
}

impl Kernel for Scalar {
    const ID: KernelId = KernelId::Scalar;

    fn qgemm(
        self,
        a: QuantizedRows<'_>,
        m: usize,
        w: &QLinear<'_>,
        act: Activation,
        out: &mut [f32],
    ) {
        let (n, k) = (w.n, w.k);
        let out = &mut out[..m * n];
        match a {
            QuantizedRows::S8 { data, scales } => {
                for ((row, o), &s) in data
                    .chunks_exact(k)
                    .zip(out.chunks_exact_mut(n))
                    .zip(scales)
                {
                    let acc = w.weight.chunks_exact(k).map(|wr| dot_i32(row, wr));
                    epilogue_row(acc, s, w, o);
                }
            }
            QuantizedRows::U8 {
                data,
                scales,
                zero_points,
            } => {
                let rows = data.chunks_exact(k).zip(out.chunks_exact_mut(n));
                for ((row, o), (&s, &zp)) in rows.zip(scales.iter().zip(zero_points)) {
                    let acc = w
                        .weight
                        .chunks_exact(k)
                        .zip(w.col_sums)
                        .map(|(wr, &cs)| dot_i32(row, wr) - zp * cs);
                    epilogue_row(acc, s, w, o);
                }
            }
        }
        apply_activation(act, out);
    }

    fn gemm_f32(self, x: &[f32], m: usize, w: &F32Linear<'_>, act: Activation, out: &mut [f32]) {
        let (n, k) = (w.n, w.k);
        let out = &mut out[..m * n];
        for (row, o) in x[..m * k].chunks_exact(k).zip(out.chunks_exact_mut(n)) {
            for (j, (o, wr)) in o.iter_mut().zip(w.weight.chunks_exact(k)).enumerate() {
                let dot: f32 = row.iter().zip(wr).map(|(a, b)| a * b).sum();
                *o = dot + w.bias.map_or(0.0, |b| b[j]);
            }
        }
        apply_activation(act, out);
    }
}
