//! The AVX2 kernel: a register tile of up to 4 rows x 16 channels.
//!
//! Per 4-value K block and row: broadcast the row's 4 activation bytes, take their absolute
//! value once, move their signs onto the weights (`vpsignb`), then `vpmaddubsw` (u8 x s8 pairs
//! to i16) and `vpmaddwd` with ones (pairs of i16 to i32). |a| <= 128 (asymmetric values are
//! shifted by -128) and |w| <= 127, so a pair sum is at most 2 * 128 * 127 = 32512 <
//! i16::MAX: `vpmaddubsw` cannot saturate. The i32 sums are exact, the epilogue is the scalar
//! one (mul, then add, no FMA), so outputs match [`super::Scalar`] bit for bit.

use std::arch::x86_64::*;

use super::scalar::epilogue;
use super::{Kernel, KernelId, QuantizedRows, TILE_N};
use crate::math::apply_activation;
use crate::types::{Activation, F32Linear, QLinear};

/// Proof that this CPU has AVX2 and FMA; only [`Avx2::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub struct Avx2(());

impl Avx2 {
    /// `Some` when the CPU supports AVX2 and FMA.
    ///
    /// ```
    /// if let Some(k) = dynq_runtime::kernels::Avx2::detect() {
    ///     println!("AVX2 available: {k:?}");
    /// }
    /// ```
    pub fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2(()))
    }
}

entry!(Avx2, "avx2,fma");

impl Kernel for Avx2 {
    const ID: KernelId = KernelId::Avx2;
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
        // SAFETY: `self` proves AVX2; `check_qgemm` proved every slice long enough.
        unsafe { qgemm(a, m, w, act, out) };
    }

    run_block!("avx2,fma");

    #[inline(always)]
    fn gemm_f32(self, x: &[f32], m: usize, w: &F32Linear<'_>, act: Activation, out: &mut [f32]) {
        // SAFETY: `self` proves AVX2 and FMA.
        unsafe { gemm_f32_checked(x, m, w, act, out) }
    }
}

/// The f32 GEMM of every x86 kernel (the VNNI ones have no better f32 path): checks the
/// lengths, multiplies, applies the activation.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[inline(always)]
pub(super) unsafe fn gemm_f32_checked(
    x: &[f32],
    m: usize,
    w: &F32Linear<'_>,
    act: Activation,
    out: &mut [f32],
) {
    let (n, k) = (w.n, w.k);
    assert!(x.len() >= m * k && out.len() >= m * n && w.weight.len() >= n * k);
    assert!(w.bias.is_none_or(|b| b.len() >= n));
    // SAFETY: the caller guarantees AVX2 and FMA; lengths checked above.
    unsafe { gemm_f32(x, m, w, out) };
    apply_activation(act, &mut out[..m * n]);
}

/// # Safety
/// The CPU must support AVX2; the slices must pass [`check_qgemm`].
#[target_feature(enable = "avx2,fma")]
unsafe fn qgemm(a: QuantizedRows<'_>, m: usize, w: &QLinear<'_>, act: Activation, out: &mut [f32]) {
    let tile_len = TILE_N * a.stride;
    for t in 0..w.n.div_ceil(TILE_N) {
        let tile = &w.weight[t * tile_len..(t + 1) * tile_len];
        let mut i = 0;
        while i + 4 <= m {
            // SAFETY: rows i..i+4 exist (checked), the tile holds stride / 4 blocks.
            unsafe { row_tile::<4>(&a, i, tile, t, w, out) };
            i += 4;
        }
        // SAFETY: as above, for the 1 to 3 remaining rows.
        unsafe {
            match m - i {
                3 => row_tile::<3>(&a, i, tile, t, w, out),
                2 => row_tile::<2>(&a, i, tile, t, w, out),
                1 => row_tile::<1>(&a, i, tile, t, w, out),
                _ => {}
            }
        }
    }
    // Inside the AVX2 function, so the activation loop vectorizes for AVX2 too.
    apply_activation(act, &mut out[..m * w.n]);
}

/// Rows `i..i + MR` against channel tile `t`: sums in registers, then the epilogue.
///
/// # Safety
/// AVX2; rows `i..i + MR` of `a` exist and `tile` holds `a.stride / 4` blocks of 64 bytes.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn row_tile<const MR: usize>(
    a: &QuantizedRows<'_>,
    i: usize,
    tile: &[i8],
    t: usize,
    w: &QLinear<'_>,
    out: &mut [f32],
) {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    let rows = a.data[i * a.stride..(i + MR) * a.stride].as_ptr();
    let wp = tile.as_ptr();
    for kb in 0..a.stride / 4 {
        // SAFETY: block kb lies inside `tile` (64 bytes per block, stride / 4 blocks).
        let (w0, w1) = unsafe {
            (
                _mm256_loadu_si256(wp.add(kb * 64) as *const __m256i),
                _mm256_loadu_si256(wp.add(kb * 64 + 32) as *const __m256i),
            )
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: bytes kb*4..kb*4+4 of row r lie inside the MR rows borrowed above.
            let a4 = unsafe { (rows.add(r * a.stride + kb * 4) as *const i32).read_unaligned() };
            let av = _mm256_set1_epi32(a4);
            let aa = _mm256_abs_epi8(av);
            let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(w0, av)), ones);
            let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(w1, av)), ones);
            acc[0] = _mm256_add_epi32(acc[0], p0);
            acc[1] = _mm256_add_epi32(acc[1], p1);
        }
    }
    let j0 = t * TILE_N;
    let valid = (w.n - j0).min(TILE_N);
    for (r, acc) in acc.iter().enumerate() {
        let row = i + r;
        let zp = a.zero_points.map_or(0, |z| z[row]);
        let o = &mut out[row * w.n + j0..row * w.n + j0 + valid];
        if valid == TILE_N {
            // SAFETY: channels j0..j0+16 exist in scales, col_sums, bias and `o`.
            unsafe { epilogue16(acc, zp, a.scales[row], w, j0, o) };
        } else {
            let mut sums = [0i32; TILE_N];
            // SAFETY: `sums` holds 16 i32, two unaligned 32-byte stores.
            unsafe {
                _mm256_storeu_si256(sums.as_mut_ptr() as *mut __m256i, acc[0]);
                _mm256_storeu_si256(sums.as_mut_ptr().add(8) as *mut __m256i, acc[1]);
            }
            epilogue(&sums, a, row, w, j0, o);
        }
    }
}

/// The epilogue of a full tile, in the scalar order: `acc as f32 * (row_scale * w_scale) + b`.
///
/// # Safety
/// AVX2; channels `j0..j0 + 16` exist in `w`'s scales, column sums and bias; `o` holds 16.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn epilogue16(
    acc: &[__m256i; 2],
    zp: i32,
    row_scale: f32,
    w: &QLinear<'_>,
    j0: usize,
    o: &mut [f32],
) {
    let zpv = _mm256_set1_epi32(zp);
    let rs = _mm256_set1_ps(row_scale);
    for (h, acc) in acc.iter().enumerate() {
        let j = j0 + 8 * h;
        // SAFETY: j..j+8 lies inside col_sums, scales, bias (caller) and o[8h..8h+8].
        unsafe {
            let cs = _mm256_loadu_si256(w.col_sums.as_ptr().add(j) as *const __m256i);
            let sums = _mm256_sub_epi32(*acc, _mm256_mullo_epi32(zpv, cs));
            let scale = _mm256_mul_ps(rs, _mm256_loadu_ps(w.scales.as_ptr().add(j)));
            let bias = match w.bias {
                Some(b) => _mm256_loadu_ps(b.as_ptr().add(j)),
                None => _mm256_setzero_ps(),
            };
            let v = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(sums), scale), bias);
            _mm256_storeu_ps(o.as_mut_ptr().add(8 * h), v);
        }
    }
}

/// Horizontal sum of 8 f32.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// f32 `out = x W^T + b` with row-major weights: four channels at a time, 8-wide FMA over k.
///
/// # Safety
/// AVX2 and FMA; `x` holds `m * k`, `w.weight` `n * k`, `out` `m * n`, bias `n` if present.
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_f32(x: &[f32], m: usize, w: &F32Linear<'_>, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    let k8 = k / 8 * 8;
    for i in 0..m {
        let row = &x[i * k..(i + 1) * k];
        let mut j = 0;
        while j < n {
            let cols = (n - j).min(4);
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut kk = 0;
            while kk < k8 {
                // SAFETY: kk + 8 <= k, inside `row` and each weight row j + c < n.
                unsafe {
                    let xv = _mm256_loadu_ps(row.as_ptr().add(kk));
                    for (c, acc) in acc.iter_mut().enumerate().take(cols) {
                        let wv = _mm256_loadu_ps(w.weight.as_ptr().add((j + c) * k + kk));
                        *acc = _mm256_fmadd_ps(xv, wv, *acc);
                    }
                }
                kk += 8;
            }
            for c in 0..cols {
                let wr = &w.weight[(j + c) * k..(j + c + 1) * k];
                let tail: f32 = row[k8..].iter().zip(&wr[k8..]).map(|(a, b)| a * b).sum();
                out[i * n + j + c] = hsum(acc[c]) + tail + w.bias.map_or(0.0, |b| b[j + c]);
            }
            j += cols;
        }
    }
}
