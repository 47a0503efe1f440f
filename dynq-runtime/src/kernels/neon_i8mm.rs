//! The AArch64 int8 matrix-multiply kernel (`smmla`): a register tile of up to 4 rows x 16
//! channels, worked as 2 x 2 blocks over 8 K values.
//!
//! `smmla vd.4s, vn.16b, vm.16b` adds the 2 x 2 product of two 2 x 8 signed byte matrices
//! (`vn`: two activation rows, `vm`: two channels) into `vd`. The packed 16 x 4 weight tile is
//! turned into 2-channel x 8-value operands in registers: zipping the 32-bit lanes of the
//! chunks of two consecutive K blocks gives `[c0 k0..3, c0 k4..7, c1 k0..3, c1 k4..7]`. An
//! odd last K block is paired with zeros, an odd last row with a zero row. Signed x signed,
//! exact in i32; `vmmlaq_s32` is unstable in Rust 1.95, so `smmla` is one `asm!` instruction
//! inside `#[target_feature(enable = "neon,i8mm")]` functions. The epilogue is the scalar one, so
//! outputs match [`super::Scalar`] bit for bit.

use std::arch::aarch64::*;
use std::arch::asm;

use super::scalar::epilogue;
use super::{Kernel, KernelId, QuantizedRows, TILE_N};
use crate::math::apply_activation;
use crate::types::{Activation, F32Linear, QLinear};

/// Proof that this CPU has the int8 matrix-multiply extension; only [`NeonI8mm::detect`]
/// makes one.
#[derive(Debug, Clone, Copy)]
pub struct NeonI8mm(());

impl NeonI8mm {
    /// `Some` when the CPU supports `smmla`.
    ///
    /// ```
    /// if let Some(k) = dynq_runtime::kernels::NeonI8mm::detect() {
    ///     println!("i8mm available: {k:?}");
    /// }
    /// ```
    pub fn detect() -> Option<Self> {
        std::arch::is_aarch64_feature_detected!("i8mm").then_some(NeonI8mm(()))
    }
}

entry!(NeonI8mm, "neon,i8mm");

/// `acc += a (2 x 8) * b (2 x 8)^T`, one `smmla`.
#[target_feature(enable = "neon,i8mm")]
#[inline]
fn smmla(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction the enclosing target feature guarantees.
    unsafe {
        asm!(
            "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

impl Kernel for NeonI8mm {
    const ID: KernelId = KernelId::NeonI8mm;
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
        // SAFETY: `self` proves i8mm; the slices were checked above.
        unsafe { qgemm(a, m, w, out) };
        apply_activation(act, &mut out[..m * w.n]);
    }

    #[inline(always)]
    fn gemm_f32(self, x: &[f32], m: usize, w: &F32Linear<'_>, act: Activation, out: &mut [f32]) {
        super::Scalar::new().gemm_f32(x, m, w, act, out)
    }

    run_block!("neon,i8mm");
}

/// # Safety
/// The CPU must support i8mm; the slices must be long enough (checked by the caller).
#[target_feature(enable = "neon,i8mm")]
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

/// 8 activation bytes of row `r` from K offset `k` (4 real bytes and 4 zeros past the end).
#[inline(always)]
fn act8(rows: &[i8], stride: usize, r: usize, k: usize) -> [i8; 8] {
    let row = &rows[r * stride..(r + 1) * stride];
    let mut v = [0i8; 8];
    let n = (stride - k).min(8);
    v[..n].copy_from_slice(&row[k..k + n]);
    v
}

/// Rows `i..i + MR` against channel tile `t`.
#[target_feature(enable = "neon,i8mm")]
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
    let blocks = a.stride / 4;
    // acc[p][q]: rows 2p, 2p+1 x channels 2q, 2q+1 of the tile.
    let mut acc = [[vdupq_n_s32(0); 8]; 2];
    let pairs = MR.div_ceil(2);
    let zero = [0i8; 16];
    let mut kb = 0;
    while kb < blocks {
        let lo = &tile[kb * 64..kb * 64 + 64];
        let hi = if kb + 1 < blocks {
            &tile[(kb + 1) * 64..(kb + 2) * 64]
        } else {
            &tile[..0]
        };
        let mut wv = [vdupq_n_s8(0); 8];
        for c in 0..4 {
            // SAFETY: `lo` holds 64 bytes, `hi` 64 or none (then zeros are used).
            let (x, y) = unsafe {
                (
                    vreinterpretq_s32_s8(vld1q_s8(lo.as_ptr().add(16 * c))),
                    vreinterpretq_s32_s8(vld1q_s8(if hi.is_empty() {
                        zero.as_ptr()
                    } else {
                        hi.as_ptr().add(16 * c)
                    })),
                )
            };
            wv[2 * c] = vreinterpretq_s8_s32(vzip1q_s32(x, y));
            wv[2 * c + 1] = vreinterpretq_s8_s32(vzip2q_s32(x, y));
        }
        for (p, acc) in acc.iter_mut().enumerate().take(pairs) {
            let r0 = act8(rows, a.stride, 2 * p, kb * 4);
            let r1 = if 2 * p + 1 < MR {
                act8(rows, a.stride, 2 * p + 1, kb * 4)
            } else {
                [0; 8]
            };
            // SAFETY: two 8-byte arrays.
            let av = unsafe { vcombine_s8(vld1_s8(r0.as_ptr()), vld1_s8(r1.as_ptr())) };
            for q in 0..8 {
                acc[q] = smmla(acc[q], av, wv[q]);
            }
        }
        kb += 2;
    }
    let j0 = t * TILE_N;
    let valid = (w.n - j0).min(TILE_N);
    for (p, acc) in acc.iter().enumerate().take(pairs) {
        let mut s = [[0i32; 4]; 8];
        for (q, v) in acc.iter().enumerate() {
            // SAFETY: `s[q]` holds 4 i32.
            unsafe { vst1q_s32(s[q].as_mut_ptr(), *v) };
        }
        for h in 0..2 {
            let r = 2 * p + h;
            if r >= MR {
                break;
            }
            let row = i + r;
            let o = &mut out[row * w.n + j0..row * w.n + j0 + valid];
            let sums: [i32; TILE_N] = std::array::from_fn(|c| s[c / 2][2 * h + c % 2]);
            epilogue(&sums, a, row, w, j0, o);
        }
    }
}
