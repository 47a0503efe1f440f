//! The AVX-512 VNNI kernel: `vpdpbusd` on zmm, register tiles of 8 x 48 and 4 x 64.
//!
//! One 64-byte block of the packed layout (16 channels x 4 values) is exactly one zmm operand:
//! lane `c` of `vpdpbusd acc, a, w` adds `sum_t a[t] * w[c][t]`. `vpdpbusd` takes unsigned
//! activations, so the rows are flipped to `a + 128` once per call (into a per-thread buffer)
//! and `128 * sum(w)` is taken off in the epilogue. The register tile is 8 rows x 48 channels
//! (24 accumulators) when there are more than 4 rows, else 4 rows x 64 channels. The four products of a lane are summed
//! exactly into i32 (no 16-bit intermediate, nothing saturates); |a + 128| <= 255, |w| <= 127
//! and K <= 66_313 keep every sum inside i32. The epilogue is the scalar one, so outputs match
//! [`super::Scalar`] bit for bit.

use std::arch::x86_64::*;

use super::scalar::epilogue;
use super::{Kernel, KernelId, QuantizedRows, TILE_N};
use crate::math::apply_activation;
use crate::types::{Activation, F32Linear, QLinear};

/// Proof that this CPU has AVX-512 F, BW and VNNI (and so AVX2 and FMA); only
/// [`Avx512Vnni::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub struct Avx512Vnni(());

impl Avx512Vnni {
    /// `Some` when the CPU supports AVX-512 F, BW and VNNI.
    ///
    /// ```
    /// if let Some(k) = dynq_runtime::kernels::Avx512Vnni::detect() {
    ///     println!("AVX-512 VNNI available: {k:?}");
    /// }
    /// ```
    pub fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma"))
        .then_some(Avx512Vnni(()))
    }
}

entry!(Avx512Vnni, "avx512f,avx512bw,avx512vnni,avx2,fma");

impl Kernel for Avx512Vnni {
    const ID: KernelId = KernelId::Avx512Vnni;
    const FMA: bool = true;
    const WIDE_F32: bool = true;

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
        // SAFETY: AVX-512 F implies AVX2 and FMA, and `self` proves it.
        unsafe { super::avx2::gemm_f32_checked(x, m, w, act, out) }
    }

    run_block!("avx512f,avx512bw,avx512vnni,avx2,fma");
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VNNI; the slices must pass `check_qgemm`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
pub(super) unsafe fn qgemm(
    a: QuantizedRows<'_>,
    m: usize,
    w: &QLinear<'_>,
    act: Activation,
    out: &mut [f32],
) {
    super::with_unsigned(&a, m, |flipped| tiles(flipped, m, w, out));
    // Inside the target-feature function, so the activation loop vectorizes for it too.
    apply_activation(act, &mut out[..m * w.n]);
}

/// Every row block against every channel tile; `a` holds flipped (`a + 128`) bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
#[inline]
fn tiles(a: &QuantizedRows<'_>, m: usize, w: &QLinear<'_>, out: &mut [f32]) {
    let tiles = w.n.div_ceil(TILE_N);
    // Few rows (M <= 4: single tokens, recurrent steps): 4 tiles of 16 channels per pass, each
    // weight block used by every row. Many rows: 8 rows x 3 tiles (24 accumulators), so each
    // weight block loaded from cache serves 8 rows and each broadcast 3 tiles.
    let mut t = 0;
    if m <= 4 {
        while t < tiles {
            match tiles - t {
                1 => rows::<4, 1>(a, m, t, w, out),
                2 => rows::<4, 2>(a, m, t, w, out),
                3 => rows::<4, 3>(a, m, t, w, out),
                _ => rows::<4, 4>(a, m, t, w, out),
            }
            t += 4;
        }
    } else {
        while t < tiles {
            match tiles - t {
                1 => rows::<8, 1>(a, m, t, w, out),
                2 => rows::<8, 2>(a, m, t, w, out),
                _ => rows::<8, 3>(a, m, t, w, out),
            }
            t += 3;
        }
    }
}

/// All rows against channel tiles `t..t + NT`, in blocks of `MR` rows (4 or 8).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
#[inline]
fn rows<const MR: usize, const NT: usize>(
    a: &QuantizedRows<'_>,
    m: usize,
    t: usize,
    w: &QLinear<'_>,
    out: &mut [f32],
) {
    let mut i = 0;
    while i + MR <= m {
        row_tile::<MR, NT>(a, i, t, w, out);
        i += MR;
    }
    if m - i >= 4 {
        row_tile::<4, NT>(a, i, t, w, out);
        i += 4;
    }
    match m - i {
        3 => row_tile::<3, NT>(a, i, t, w, out),
        2 => row_tile::<2, NT>(a, i, t, w, out),
        1 => row_tile::<1, NT>(a, i, t, w, out),
        _ => {}
    }
}

/// Rows `i..i + MR` against channel tiles `t..t + NT`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
#[inline]
fn row_tile<const MR: usize, const NT: usize>(
    a: &QuantizedRows<'_>,
    i: usize,
    t: usize,
    w: &QLinear<'_>,
    out: &mut [f32],
) {
    let tile_len = TILE_N * a.stride;
    let tiles = &w.weight[t * tile_len..(t + NT) * tile_len];
    let rows = &a.data[i * a.stride..(i + MR) * a.stride];
    let mut acc = [[_mm512_setzero_si512(); NT]; MR];
    let (rp, wp) = (rows.as_ptr(), tiles.as_ptr());
    for kb in 0..a.stride / 4 {
        let mut wv = [_mm512_setzero_si512(); NT];
        for (nt, wv) in wv.iter_mut().enumerate() {
            // SAFETY: block kb of tile nt lies inside `tiles` (64 bytes per block).
            *wv = unsafe { _mm512_loadu_si512(wp.add(nt * tile_len + kb * 64) as *const _) };
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: bytes kb*4..kb*4+4 of row r lie inside the MR rows borrowed above.
            let a4 = unsafe { (rp.add(r * a.stride + kb * 4) as *const i32).read_unaligned() };
            let au = _mm512_set1_epi32(a4);
            for nt in 0..NT {
                acc[nt] = _mm512_dpbusd_epi32(acc[nt], au, wv[nt]);
            }
        }
    }
    if (t + NT) * TILE_N <= w.n {
        // SAFETY: every tile is full (checked just above), and `check_qgemm` (the only way in)
        // proved rows `i..i + MR` and channels `t * 16..(t + NT) * 16` inside `a`, `w` and
        // `out`.
        unsafe { store_full::<MR, NT>(&acc, a, i, t, w, out) };
        return;
    }
    for (r, acc) in acc.iter().enumerate() {
        let row = i + r;
        let zp = a.zero_points.map_or(0, |z| z[row]);
        for (nt, acc) in acc.iter().enumerate() {
            let j0 = (t + nt) * TILE_N;
            let valid = (w.n - j0).min(TILE_N);
            let o = &mut out[row * w.n + j0..row * w.n + j0 + valid];
            if valid == TILE_N {
                // SAFETY: channels j0..j0+16 exist in scales, col_sums, bias and `o`.
                unsafe { epilogue16(*acc, zp + 128, a.scales[row], w, j0, o) };
            } else {
                let mut sums = [0i32; TILE_N];
                // SAFETY: `sums` holds 16 i32.
                unsafe { _mm512_storeu_si512(sums.as_mut_ptr() as *mut _, *acc) };
                for (c, s) in sums.iter_mut().enumerate().take(valid) {
                    *s = s.wrapping_sub(128 * w.col_sums[j0 + c]);
                }
                epilogue(&sums, a, row, w, j0, o);
            }
        }
    }
}

/// The epilogue of `MR x NT` full tiles, the arithmetic of [`epilogue16`] (so the scalar
/// kernel's bits): each tile's column sums, scales and bias loaded once for all its rows, each
/// row's correction and scale once for all its tiles, no slice bounds checks. With K = 384 the
/// per-element epilogue was a quarter of the kernel's instructions.
///
/// # Safety
/// Rows `i..i + MR` exist in `a` (data, scales and zero points) and in `out` (`w.n` values
/// each), and channels `t * 16..(t + NT) * 16` in `w`'s column sums, scales, bias and `n`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
#[inline]
unsafe fn store_full<const MR: usize, const NT: usize>(
    acc: &[[__m512i; NT]; MR],
    a: &QuantizedRows<'_>,
    i: usize,
    t: usize,
    w: &QLinear<'_>,
    out: &mut [f32],
) {
    debug_assert!((t + NT) * TILE_N <= w.n && out.len() >= (i + MR) * w.n);
    // SAFETY: the indices below stay inside the ranges the caller vouches for.
    unsafe {
        // Each row's `zero point + 128` and scale, broadcast.
        let rows: [(__m512i, __m512); MR] = std::array::from_fn(|r| {
            let zp = a.zero_points.map_or(0, |z| *z.get_unchecked(i + r));
            (
                _mm512_set1_epi32(zp + 128),
                _mm512_set1_ps(*a.scales.get_unchecked(i + r)),
            )
        });
        let o = out.as_mut_ptr();
        for (nt, j0) in (t..t + NT).map(|tile| tile * TILE_N).enumerate() {
            let cs = _mm512_loadu_si512(w.col_sums.as_ptr().add(j0) as *const _);
            let ws = _mm512_loadu_ps(w.scales.as_ptr().add(j0));
            let bias = match w.bias {
                Some(b) => _mm512_loadu_ps(b.as_ptr().add(j0)),
                None => _mm512_setzero_ps(),
            };
            for (r, &(corr, row_scale)) in rows.iter().enumerate() {
                let sums = _mm512_sub_epi32(acc[r][nt], _mm512_mullo_epi32(corr, cs));
                let scale = _mm512_mul_ps(row_scale, ws);
                let v = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sums), scale), bias);
                _mm512_storeu_ps(o.add((i + r) * w.n + j0), v);
            }
        }
    }
}

/// The epilogue of a full tile, in the scalar order, with `corr = zero point + 128`.
///
/// # Safety
/// Channels `j0..j0 + 16` exist in `w`'s scales, column sums and bias; `o` holds 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
#[inline]
unsafe fn epilogue16(
    acc: __m512i,
    corr: i32,
    row_scale: f32,
    w: &QLinear<'_>,
    j0: usize,
    o: &mut [f32],
) {
    // SAFETY: j0..j0+16 lies inside col_sums, scales, bias (caller) and o[..16].
    unsafe {
        let cs = _mm512_loadu_si512(w.col_sums.as_ptr().add(j0) as *const _);
        let sums = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_set1_epi32(corr), cs));
        let scale = _mm512_mul_ps(
            _mm512_set1_ps(row_scale),
            _mm512_loadu_ps(w.scales.as_ptr().add(j0)),
        );
        let bias = match w.bias {
            Some(b) => _mm512_loadu_ps(b.as_ptr().add(j0)),
            None => _mm512_setzero_ps(),
        };
        let v = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sums), scale), bias);
        _mm512_storeu_ps(o.as_mut_ptr(), v);
    }
}
