//! The AArch64 dot-product kernel (`sdot`): a register tile of up to 4 rows x 16 channels.
//!
//! Per 4-value K block and row, the row's 4 activation bytes are broadcast to all four 32-bit
//! lanes and `sdot` against the four 16-byte weight chunks of the packed tile (4 channels x 4
//! values each) adds `sum_t a[t] * w[c][t]` into lane `c`. Signed x signed, exact in i32: no
//! saturation at any operand value. `vdotq_s32` is unstable in Rust 1.95, so `sdot` is one
//! `asm!` instruction inside `#[target_feature(enable = "dotprod")]` functions. The epilogue
//! is the scalar one, so outputs match [`super::Scalar`] bit for bit.

use std::arch::aarch64::*;
use std::arch::asm;

use super::scalar::epilogue;
use super::{Kernel, KernelId, QuantizedRows, TILE_N};
use crate::math::apply_activation;
use crate::types::{Activation, F32Linear, QLinear};

/// Proof that this CPU has the dot-product extension; only [`NeonDot::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub struct NeonDot(());

impl NeonDot {
    /// `Some` when the CPU supports `sdot`.
    ///
    /// ```
    /// if let Some(k) = dynq_runtime::kernels::NeonDot::detect() {
    ///     println!("dotprod available: {k:?}");
    /// }
    /// ```
    pub fn detect() -> Option<Self> {
        std::arch::is_aarch64_feature_detected!("dotprod").then_some(NeonDot(()))
    }
}

entry!(NeonDot, "dotprod");

/// `acc[i] += sum_t a[4i + t] * b[4i + t]` (signed bytes), one `sdot`.
#[target_feature(enable = "dotprod")]
#[inline]
fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction the enclosing target feature guarantees.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

impl Kernel for NeonDot {
    const ID: KernelId = KernelId::NeonDot;
    const FMA: bool = true;

    #[inline(always)]
    fn qgemm(
        self,
        a: QuantizedRows<'_>,
        m: usize,
        w: &QLinear<'_>,
        act: Activation,
        out: &mut [f32],
    ) {
        super::check_qgemm(&a, m, w, out);
        // SAFETY: `self` proves dotprod; the slices were checked above.
        unsafe { qgemm(a, m, w, out) };
        apply_activation(act, &mut out[..m * w.n]);
    }

    #[inline(always)]
    fn gemm_f32(self, x: &[f32], m: usize, w: &F32Linear<'_>, act: Activation, out: &mut [f32]) {
        super::Scalar::new().gemm_f32(x, m, w, act, out)
    }

    run_block!("dotprod");
}

/// # Safety
/// The CPU must support dotprod; the slices must be long enough (checked by the caller).
#[target_feature(enable = "dotprod")]
unsafe fn qgemm(a: QuantizedRows<'_>, m: usize, w: &QLinear<'_>, out: &mut [f32]) {
    let tile_len = TILE_N * a.stride;
    for t in 0..w.n.div_ceil(TILE_N) {
        let tile = &w.weight[t * tile_len..(t + 1) * tile_len];
        let mut i = 0;
        while i + 4 <= m {
            row_tile::<4>(&a, i, tile, t, w, out);
            i += 4;
        }
        match m - i {
            3 => row_tile::<3>(&a, i, tile, t, w, out),
            2 => row_tile::<2>(&a, i, tile, t, w, out),
            1 => row_tile::<1>(&a, i, tile, t, w, out),
            _ => {}
        }
    }
}

/// Rows `i..i + MR` against channel tile `t`: sums in registers, then the scalar epilogue.
#[target_feature(enable = "dotprod")]
#[inline]
fn row_tile<const MR: usize>(
    a: &QuantizedRows<'_>,
    i: usize,
    tile: &[i8],
    t: usize,
    w: &QLinear<'_>,
    out: &mut [f32],
) {
    let rows = &a.data[i * a.stride..(i + MR) * a.stride];
    let mut acc = [[vdupq_n_s32(0); 4]; MR];
    for kb in 0..a.stride / 4 {
        let block = &tile[kb * 64..kb * 64 + 64];
        // SAFETY: `block` holds 64 bytes: four 16-byte loads.
        let wv = unsafe {
            [
                vld1q_s8(block.as_ptr()),
                vld1q_s8(block.as_ptr().add(16)),
                vld1q_s8(block.as_ptr().add(32)),
                vld1q_s8(block.as_ptr().add(48)),
            ]
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            let b = &rows[r * a.stride + kb * 4..][..4];
            let a4 = i32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8]);
            let av = vreinterpretq_s8_s32(vdupq_n_s32(a4));
            for c in 0..4 {
                acc[c] = sdot(acc[c], wv[c], av);
            }
        }
    }
    let j0 = t * TILE_N;
    let valid = (w.n - j0).min(TILE_N);
    for (r, acc) in acc.iter().enumerate() {
        let row = i + r;
        let mut sums = [0i32; TILE_N];
        for (c, v) in acc.iter().enumerate() {
            // SAFETY: `sums` holds 16 i32; chunk c covers 4 of them.
            unsafe { vst1q_s32(sums.as_mut_ptr().add(4 * c), *v) };
        }
        let o = &mut out[row * w.n + j0..row * w.n + j0 + valid];
        epilogue(&sums, a, row, w, j0, o);
    }
}
