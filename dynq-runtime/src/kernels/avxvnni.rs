//! The AVX-VNNI kernel: the VEX form of `vpdpbusd` on ymm, a register tile of up to 6 rows x
//! 16 channels (two ymm per 64-byte block of the packed layout; 12 accumulators of the 16 ymm).
//!
//! As in the AVX-512 VNNI kernel, the activations are flipped to `a + 128` once per call
//! (unsigned, as `vpdpbusd` wants) and `128 * sum(w)` is taken off in the epilogue; the four
//! products of a lane are summed exactly into i32, nothing saturates. The epilogue is the scalar
//! one, so outputs match [`super::Scalar`] bit for bit.

use std::arch::x86_64::*;

use super::scalar::epilogue;
use super::{Kernel, KernelId, QuantizedRows, TILE_N};
use crate::math::apply_activation;
use crate::types::{Activation, F32Linear, QLinear};

/// Proof that this CPU has AVX-VNNI, AVX2 and FMA; only [`AvxVnni::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub struct AvxVnni(());

impl AvxVnni {
    /// `Some` when the CPU supports AVX-VNNI, AVX2 and FMA.
    ///
    /// ```
    /// if let Some(k) = dynq_runtime::kernels::AvxVnni::detect() {
    ///     println!("AVX-VNNI available: {k:?}");
    /// }
    /// ```
    pub fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avxvnni")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma"))
        .then_some(AvxVnni(()))
    }
}

entry!(AvxVnni, "avxvnni,avx2,fma");

impl Kernel for AvxVnni {
    const ID: KernelId = KernelId::AvxVnni;
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
        // SAFETY: `self` proves the features; `check_qgemm` proved every slice long enough.
        unsafe { qgemm(a, m, w, act, out) };
    }

    #[inline(always)]
    fn gemm_f32(self, x: &[f32], m: usize, w: &F32Linear<'_>, act: Activation, out: &mut [f32]) {
        // SAFETY: `self` proves AVX2 and FMA.
        unsafe { super::avx2::gemm_f32_checked(x, m, w, act, out) }
    }

    run_block!("avxvnni,avx2,fma");
}

/// # Safety
/// The CPU must support AVX-VNNI and AVX2; the slices must pass `check_qgemm`.
#[target_feature(enable = "avxvnni,avx2,fma")]
unsafe fn qgemm(a: QuantizedRows<'_>, m: usize, w: &QLinear<'_>, act: Activation, out: &mut [f32]) {
    super::with_unsigned(&a, m, |a| tiles(a, m, w, out));
    // Inside the target-feature function, so the activation loop vectorizes for it too.
    apply_activation(act, &mut out[..m * w.n]);
}

/// Every row block against every channel tile; `a` holds flipped (`a + 128`) bytes.
#[target_feature(enable = "avxvnni,avx2,fma")]
#[inline]
fn tiles(a: &QuantizedRows<'_>, m: usize, w: &QLinear<'_>, out: &mut [f32]) {
    for t in 0..w.n.div_ceil(TILE_N) {
        let mut i = 0;
        while i + 6 <= m {
            row_tile::<6>(a, i, t, w, out);
            i += 6;
        }
        match m - i {
            5 => row_tile::<5>(a, i, t, w, out),
            4 => row_tile::<4>(a, i, t, w, out),
            3 => row_tile::<3>(a, i, t, w, out),
            2 => row_tile::<2>(a, i, t, w, out),
            1 => row_tile::<1>(a, i, t, w, out),
            _ => {}
        }
    }
}

/// Rows `i..i + MR` against channel tile `t`.
#[target_feature(enable = "avxvnni,avx2,fma")]
#[inline]
fn row_tile<const MR: usize>(
    a: &QuantizedRows<'_>,
    i: usize,
    t: usize,
    w: &QLinear<'_>,
    out: &mut [f32],
) {
    let tile_len = TILE_N * a.stride;
    let tile = &w.weight[t * tile_len..(t + 1) * tile_len];
    let rows = &a.data[i * a.stride..(i + MR) * a.stride];
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    let (rp, wp) = (rows.as_ptr(), tile.as_ptr());
    for kb in 0..a.stride / 4 {
        // SAFETY: block kb (64 bytes) lies inside `tile`.
        let (w0, w1) = unsafe {
            (
                _mm256_loadu_si256(wp.add(kb * 64) as *const __m256i),
                _mm256_loadu_si256(wp.add(kb * 64 + 32) as *const __m256i),
            )
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: bytes kb*4..kb*4+4 of row r lie inside the MR rows borrowed above.
            let a4 = unsafe { (rp.add(r * a.stride + kb * 4) as *const i32).read_unaligned() };
            let au = _mm256_set1_epi32(a4);
            acc[0] = _mm256_dpbusd_avx_epi32(acc[0], au, w0);
            acc[1] = _mm256_dpbusd_avx_epi32(acc[1], au, w1);
        }
    }
    let j0 = t * TILE_N;
    let valid = (w.n - j0).min(TILE_N);
    for (r, acc) in acc.iter().enumerate() {
        let row = i + r;
        let mut sums = [0i32; TILE_N];
        // SAFETY: `sums` holds 16 i32, two unaligned 32-byte stores.
        unsafe {
            _mm256_storeu_si256(sums.as_mut_ptr() as *mut __m256i, acc[0]);
            _mm256_storeu_si256(sums.as_mut_ptr().add(8) as *mut __m256i, acc[1]);
        }
        for (c, s) in sums.iter_mut().enumerate().take(valid) {
            *s = s.wrapping_sub(128 * w.col_sums[j0 + c]);
        }
        let o = &mut out[row * w.n + j0..row * w.n + j0 + valid];
        epilogue(&sums, a, row, w, j0, o);
    }
}
