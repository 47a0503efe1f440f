//! The portable reference kernel.

use super::{Kernel, KernelId, QuantizedRows, TILE_N};
use crate::math::apply_activation;
use crate::types::{Activation, F32Linear, QLinear};

/// Portable Rust kernel: the reference every SIMD kernel must match bit for bit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scalar(());

impl Scalar {
    /// The scalar kernel needs no CPU feature, so anyone may hold one.
    pub const fn new() -> Self {
        Scalar(())
    }
}

/// Runs `job` with the scalar kernel: one out-of-line instantiation per job, in this module's
/// codegen unit, shared by every way [`super::run_selected`] falls back to it.
#[inline(never)]
pub(super) fn enter<J: super::Job>(job: J) -> J::Output {
    job.run(Scalar::new())
}

/// The dequantizing epilogue shared by every kernel: `acc as f32 * (row_scale * w_scale) + b`,
/// two roundings in this order (no FMA) so SIMD kernels can reproduce it bit for bit.
#[inline(always)]
pub(crate) fn dequantize(acc: i32, row_scale: f32, w_scale: f32, bias: f32) -> f32 {
    acc as f32 * (row_scale * w_scale) + bias
}

/// Dequantizes the sums of row `row` against channels `j0..j0 + o.len()` into `o`, with the
/// row's zero-point correction: the epilogue of the SIMD kernels' partial tiles and of the Arm
/// kernels, the scalar kernel's arithmetic by construction.
#[inline(always)]
pub(crate) fn epilogue(
    sums: &[i32],
    a: &QuantizedRows<'_>,
    row: usize,
    w: &QLinear<'_>,
    j0: usize,
    o: &mut [f32],
) {
    let zp = a.zero_points.map_or(0, |z| z[row]);
    for (c, o) in o.iter_mut().enumerate() {
        let j = j0 + c;
        let bias = w.bias.map_or(0.0, |b| b[j]);
        *o = dequantize(
            sums[c] - zp * w.col_sums[j],
            a.scales[row],
            w.scales[j],
            bias,
        );
    }
}

/// The i32 sums of one row against one 16-channel tile. |a| <= 128 and |w| <= 127, so each
/// product is below 2^14 and the build's limit K <= 66_313 keeps every sum inside i32.
#[inline(always)]
fn tile_sums(row: &[i8], tile: &[i8]) -> [i32; TILE_N] {
    let mut acc = [0i32; TILE_N];
    for (a4, w64) in row.chunks_exact(4).zip(tile.chunks_exact(4 * TILE_N)) {
        for (acc, w4) in acc.iter_mut().zip(w64.chunks_exact(4)) {
            *acc += a4
                .iter()
                .zip(w4)
                .map(|(&a, &w)| i32::from(a) * i32::from(w))
                .sum::<i32>();
        }
    }
    acc
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
        let (n, stride) = (w.n, a.stride);
        if n == 0 {
            return;
        }
        let tile_len = TILE_N * stride;
        let out = &mut out[..m * n];
        for (i, o) in out.chunks_exact_mut(n).enumerate() {
            let row = &a.data[i * stride..(i + 1) * stride];
            let zp = a.zero_points.map_or(0, |z| z[i]);
            for (t, o) in o.chunks_mut(TILE_N).enumerate() {
                let acc = tile_sums(row, &w.weight[t * tile_len..(t + 1) * tile_len]);
                for (c, o) in o.iter_mut().enumerate() {
                    let j = t * TILE_N + c;
                    let bias = w.bias.map_or(0.0, |b| b[j]);
                    *o = dequantize(acc[c] - zp * w.col_sums[j], a.scales[i], w.scales[j], bias);
                }
            }
        }
        apply_activation(act, out);
    }

    fn gemm_f32(self, x: &[f32], m: usize, w: &F32Linear<'_>, act: Activation, out: &mut [f32]) {
        let (n, k) = (w.n, w.k);
        if n == 0 {
            return;
        }
        let out = &mut out[..m * n];
        // Rows and weight rows by index, not `chunks_exact(k)`: K = 0 (no inputs) then simply
        // gives the bias.
        for (i, o) in out.chunks_exact_mut(n).enumerate() {
            let row = &x[i * k..(i + 1) * k];
            for (j, o) in o.iter_mut().enumerate() {
                let wr = &w.weight[j * k..(j + 1) * k];
                let dot: f32 = row.iter().zip(wr).map(|(a, b)| a * b).sum();
                *o = dot + w.bias.map_or(0.0, |b| b[j]);
            }
        }
        apply_activation(act, out);
    }
}
