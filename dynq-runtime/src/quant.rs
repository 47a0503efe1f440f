//! Dynamic activation quantization.
//!
//! Every activation matrix entering an integer GEMM is quantized from its live values: one scale
//! (and zero point) per row ("per token") or one for the whole matrix ("per tensor").
//!
//! The arithmetic is fixed so that every kernel can reproduce it bit for bit:
//! `q = clamp(round_half_even(x * inv_scale) + zero_point)`, with `inv_scale` computed once per
//! row as `QMAX / range` and `scale = range / QMAX`.
//!
//! Rows are written with a `stride` (the row width rounded up to the kernels' K block of 4)
//! and zero-padded, so kernels never see a partial block.
//!
//! Asymmetric uint8 values are stored shifted by -128, as i8 in [-128, 127], with the zero
//! point shifted alike. Every kernel then runs one signed x signed product,
//! `sum (q - 128) w - (zp - 128) sum w`, which equals `sum (q - zp) w` exactly; with |q - 128|
//! <= 128 and |w| <= 127 AVX2's `vpmaddubsw` pair sums stay below 2 * 128 * 127 = 32512, so
//! they cannot saturate.

/// How many activation values share one scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One scale (and zero point) per row: rows of very different magnitude keep their precision.
    PerToken,
    /// One scale (and zero point) for the whole matrix, as ONNX Runtime and PyTorch do.
    PerTensor,
}

/// The integer format of quantized activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// int8 in [-127, 127], zero point 0.
    Symmetric,
    /// uint8 in [0, 255] with a zero point in [0, 255]; zero is represented exactly.
    Asymmetric,
}

/// Scale and its reciprocal for symmetric int8 given the largest magnitude of the values.
///
/// A zero (or subnormal) range gets scale 1: every value then quantizes to 0 and nothing is
/// divided by zero.
///
/// ```
/// let (scale, inv) = dynq_runtime::quant::symmetric_params(2.54);
/// assert!((scale - 0.02).abs() < 1e-7 && (inv - 50.0).abs() < 1e-4);
/// assert_eq!(dynq_runtime::quant::symmetric_params(0.0), (1.0, 1.0));
/// ```
#[inline(always)]
pub fn symmetric_params(absmax: f32) -> (f32, f32) {
    if absmax >= f32::MIN_POSITIVE {
        (absmax / 127.0, 127.0 / absmax)
    } else {
        (1.0, 1.0)
    }
}

/// Scale, reciprocal and zero point for asymmetric uint8 given the range of the values.
///
/// The range is widened to include 0 so that zero (padding, ReLU outputs) is exact.
///
/// ```
/// let (scale, _inv, zp) = dynq_runtime::quant::asymmetric_params(-1.0, 3.0);
/// assert!((scale - 4.0 / 255.0).abs() < 1e-7);
/// assert_eq!(zp, 64);
/// ```
#[inline(always)]
pub fn asymmetric_params(min: f32, max: f32) -> (f32, f32, i32) {
    let lo = min.min(0.0);
    let hi = max.max(0.0);
    let range = hi - lo;
    if range >= f32::MIN_POSITIVE && range.is_finite() {
        let inv = 255.0 / range;
        let zp = (-lo * inv).round_ties_even().clamp(0.0, 255.0) as i32;
        (range / 255.0, inv, zp)
    } else {
        (1.0, 1.0, 0)
    }
}

/// Lanes of the range reductions: four AVX-512 registers (eight AVX2 ones) of independent
/// accumulators, so the loop is bound by loads rather than by the latency of one min/max chain.
const LANES: usize = 64;

/// `max(a, b)` as a compare and select, which is one `maxps` per vector. (`f32::max` also
/// handles NaN operands, which costs a compare and a blend more per vector; the accumulators
/// here start finite and a NaN input is ignored either way.)
#[inline(always)]
pub(crate) fn max_sel(a: f32, b: f32) -> f32 {
    if b > a {
        b
    } else {
        a
    }
}

/// `min(a, b)` like [`max_sel`].
#[inline(always)]
fn min_sel(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

/// The largest |x|, in explicit lanes plus a scalar tail.
///
/// Not a plain `fold`: rustc 1.95's LLVM mis-vectorizes the fold of `f32::max` for a constant
/// row width that is not a multiple of the vector (K = 10 inside an AVX2 entry point at
/// opt-level 3 dropped the last element of one row; tests/golden_rnn.rs caught it). The lane form is
/// vectorized as a plain element-wise loop, which LLVM gets right, and is faster.
#[inline(always)]
fn absmax(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        // A new array by value each step (not a store per lane, which LLVM turns into masked
        // stores that keep the lanes in memory): the lanes stay in registers.
        lanes = std::array::from_fn(|l| max_sel(lanes[l], c[l].abs()));
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0.0f32, |m, v| max_sel(m, v.abs()));
    max_sel(tail, reduce(lanes, max_sel))
}

/// Folds `N` lanes (a power of two) pairwise, halves at a time (six vector steps for 64 lanes
/// instead of a chain of 63 dependent scalar ones).
#[inline(always)]
pub(crate) fn reduce<const N: usize>(mut lanes: [f32; N], f: impl Fn(f32, f32) -> f32) -> f32 {
    const { assert!(N.is_power_of_two()) };
    let mut n = N;
    while n > 1 {
        n /= 2;
        lanes = std::array::from_fn(|l| {
            if l < n {
                f(lanes[l], lanes[l + n])
            } else {
                0.0
            }
        });
    }
    lanes[0]
}

/// The smallest and largest value, in lanes like [`absmax`].
#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES]);
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        lo = std::array::from_fn(|l| min_sel(lo[l], c[l]));
        hi = std::array::from_fn(|l| max_sel(hi[l], c[l]));
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (min_sel(l, v), max_sel(h, v))
        });
    (
        min_sel(tail.0, reduce(lo, min_sel)),
        max_sel(tail.1, reduce(hi, max_sel)),
    )
}

/// 1.5 * 2^23: adding it to a float below 2^22 in magnitude rounds to the nearest integer
/// (ties to even) and leaves that integer in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// `round_half_even(v)` as an integer, for |v| < 2^22, with float adds and integer ops only
/// (a float-to-int conversion would keep the quantization loops scalar).
#[inline(always)]
fn round_to_int(v: f32) -> i32 {
    ((v + ROUND).to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32)
}

#[inline(always)]
fn quantize_s8(x: &[f32], inv: f32, q: &mut [i8]) {
    for (q, &v) in q.iter_mut().zip(x) {
        // Clamping before rounding gives the same integers as after, for this range.
        *q = round_to_int((v * inv).clamp(-127.0, 127.0)) as i8;
    }
}

/// Asymmetric uint8, stored shifted by -128 (see the module docs).
#[inline(always)]
fn quantize_u8_shifted(x: &[f32], inv: f32, zp: i32, q: &mut [i8]) {
    for (q, &v) in q.iter_mut().zip(x) {
        // Clamp to a range that still rounds to the same integers after adding the zero point.
        let r = round_to_int((v * inv).clamp(-256.0, 256.0));
        *q = ((r + zp).clamp(0, 255) - 128) as i8;
    }
}

/// The K block every kernel works in: rows of quantized activations and packed weights are
/// padded to a multiple of it.
pub const K_BLOCK: usize = 4;

/// `k` rounded up to the K block.
///
/// ```
/// assert_eq!(dynq_runtime::quant::padded_k(5), 8);
/// ```
pub const fn padded_k(k: usize) -> usize {
    k.div_ceil(K_BLOCK) * K_BLOCK
}

/// Row `r` of a strided buffer and its zero padding.
#[inline(always)]
fn row_mut(q: &mut [i8], r: usize, k: usize, stride: usize) -> &mut [i8] {
    let row = &mut q[r * stride..(r + 1) * stride];
    row[k..].fill(0);
    &mut row[..k]
}

/// Quantizes `rows` rows of width `k` to symmetric int8, writing one scale per row.
///
/// Row `r` lands at `q[r * stride..]`, zero-padded from `k` to `stride`. With
/// [`Granularity::PerTensor`] every row gets the same scale.
///
/// ```
/// use dynq_runtime::quant::{quantize_rows_symmetric, Granularity};
/// let x = [1.0f32, -0.5, 100.0, 50.0];
/// let (mut q, mut s) = ([9i8; 6], [0f32; 2]);
/// quantize_rows_symmetric(&x, 2, 2, 3, Granularity::PerTensor, &mut q, &mut s);
/// assert_eq!(q, [1, -1, 0, 127, 64, 0]);
/// assert_eq!(s[0], s[1]);
/// ```
#[inline(always)]
pub fn quantize_rows_symmetric(
    x: &[f32],
    rows: usize,
    k: usize,
    stride: usize,
    granularity: Granularity,
    q: &mut [i8],
    scales: &mut [f32],
) {
    assert!(stride >= k && q.len() >= rows * stride && x.len() >= rows * k);
    let x = &x[..rows * k];
    let tensor = match granularity {
        Granularity::PerToken => None,
        Granularity::PerTensor => Some(symmetric_params(absmax(x))),
    };
    for (r, (xr, s)) in x.chunks_exact(k).zip(&mut scales[..rows]).enumerate() {
        let (scale, inv) = tensor.unwrap_or_else(|| symmetric_params(absmax(xr)));
        quantize_s8(xr, inv, row_mut(q, r, k, stride));
        *s = scale;
    }
}

/// Quantizes `rows` rows of width `k` to asymmetric uint8 with one scale and zero point per
/// row, stored shifted by -128 (values and zero points; see the module docs).
///
/// ```
/// use dynq_runtime::quant::{quantize_rows_asymmetric, Granularity};
/// let x = [0.0f32, 1.0, 2.0, 3.0];
/// let (mut q, mut s, mut z) = ([0i8; 4], [0f32; 1], [0i32; 1]);
/// quantize_rows_asymmetric(&x, 1, 4, 4, Granularity::PerToken, &mut q, &mut s, &mut z);
/// // uint8 [0, 85, 170, 255] with zero point 0, shifted by -128:
/// assert_eq!((q, z[0]), ([-128, -43, 42, 127], -128));
/// ```
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn quantize_rows_asymmetric(
    x: &[f32],
    rows: usize,
    k: usize,
    stride: usize,
    granularity: Granularity,
    q: &mut [i8],
    scales: &mut [f32],
    zero_points: &mut [i32],
) {
    assert!(stride >= k && q.len() >= rows * stride && x.len() >= rows * k);
    let x = &x[..rows * k];
    let tensor = match granularity {
        Granularity::PerToken => None,
        Granularity::PerTensor => {
            let (lo, hi) = min_max(x);
            Some(asymmetric_params(lo, hi))
        }
    };
    let params = scales[..rows].iter_mut().zip(&mut zero_points[..rows]);
    for (r, (xr, (s, z))) in x.chunks_exact(k).zip(params).enumerate() {
        let (scale, inv, zp) = tensor.unwrap_or_else(|| {
            let (lo, hi) = min_max(xr);
            asymmetric_params(lo, hi)
        });
        quantize_u8_shifted(xr, inv, zp, row_mut(q, r, k, stride));
        (*s, *z) = (scale, zp - 128);
    }
}

/// Dequantizes symmetric int8 rows back to f32 (for tests and error reports).
///
/// ```
/// let mut out = [0f32; 2];
/// dynq_runtime::quant::dequantize_rows_symmetric(&[127, -64], 1, 2, &[0.5], &mut out);
/// assert_eq!(out, [63.5, -32.0]);
/// ```
pub fn dequantize_rows_symmetric(q: &[i8], rows: usize, k: usize, scales: &[f32], out: &mut [f32]) {
    for ((qr, o), &s) in q[..rows * k]
        .chunks_exact(k)
        .zip(out.chunks_exact_mut(k))
        .zip(scales)
    {
        for (o, &v) in o.iter_mut().zip(qr) {
            *o = f32::from(v) * s;
        }
    }
}

/// Dequantizes shifted asymmetric rows (as written by [`quantize_rows_asymmetric`]) back to
/// f32 (for tests and error reports).
///
/// ```
/// let mut out = [0f32; 2];
/// dynq_runtime::quant::dequantize_rows_asymmetric(&[-128, 127], 1, 2, &[1.0], &[5 - 128], &mut out);
/// assert_eq!(out, [-5.0, 250.0]);
/// ```
pub fn dequantize_rows_asymmetric(
    q: &[i8],
    rows: usize,
    k: usize,
    scales: &[f32],
    zero_points: &[i32],
    out: &mut [f32],
) {
    for (((qr, o), &s), &z) in q[..rows * k]
        .chunks_exact(k)
        .zip(out.chunks_exact_mut(k))
        .zip(scales)
        .zip(zero_points)
    {
        for (o, &v) in o.iter_mut().zip(qr) {
            *o = (i32::from(v) - z) as f32 * s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        let den: f32 = a.iter().map(|x| x * x).sum();
        (num / den).sqrt()
    }

    fn roundtrip_sym(x: &[f32], rows: usize, k: usize, g: Granularity) -> Vec<f32> {
        let (mut q, mut s, mut out) = (vec![0; x.len()], vec![0.0; rows], vec![0.0; x.len()]);
        quantize_rows_symmetric(x, rows, k, k, g, &mut q, &mut s);
        dequantize_rows_symmetric(&q, rows, k, &s, &mut out);
        out
    }

    fn roundtrip_asym(x: &[f32], rows: usize, k: usize, g: Granularity) -> Vec<f32> {
        let (mut q, mut s, mut z) = (vec![0; x.len()], vec![0.0; rows], vec![0; rows]);
        let mut out = vec![0.0; x.len()];
        quantize_rows_asymmetric(x, rows, k, k, g, &mut q, &mut s, &mut z);
        dequantize_rows_asymmetric(&q, rows, k, &s, &z, &mut out);
        out
    }

    fn wave(n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|i| amp * ((i as f32) * 0.731).sin()).collect()
    }

    #[test]
    fn symmetric_round_trip_error_is_within_half_a_step() {
        let x = wave(256, 3.0);
        let y = roundtrip_sym(&x, 4, 64, Granularity::PerToken);
        for (row_x, row_y) in x.chunks(64).zip(y.chunks(64)) {
            let step = absmax(row_x) / 127.0;
            for (a, b) in row_x.iter().zip(row_y) {
                assert!((a - b).abs() <= 0.5 * step * 1.0001, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn asymmetric_round_trip_error_is_within_half_a_step() {
        let x: Vec<f32> = wave(128, 2.0).iter().map(|v| v + 1.5).collect();
        let y = roundtrip_asym(&x, 2, 64, Granularity::PerToken);
        for (row_x, row_y) in x.chunks(64).zip(y.chunks(64)) {
            let (lo, hi) = min_max(row_x);
            let step = (hi.max(0.0) - lo.min(0.0)) / 255.0;
            for (a, b) in row_x.iter().zip(row_y) {
                assert!((a - b).abs() <= 0.5 * step * 1.001 + 1e-6, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn zero_and_constant_rows_are_safe() {
        let zeros = [0.0f32; 8];
        assert_eq!(roundtrip_sym(&zeros, 2, 4, Granularity::PerToken), zeros);
        assert_eq!(roundtrip_asym(&zeros, 2, 4, Granularity::PerToken), zeros);
        let tiny = [1e-40f32; 4];
        assert!(roundtrip_sym(&tiny, 1, 4, Granularity::PerToken)
            .iter()
            .all(|v| v.is_finite()));
        let constant = [2.5f32; 8];
        assert_eq!(
            roundtrip_sym(&constant, 2, 4, Granularity::PerToken),
            constant
        );
        let back = roundtrip_asym(&constant, 2, 4, Granularity::PerToken);
        assert!(back.iter().all(|v| (v - 2.5).abs() < 1e-6), "{back:?}");
        let negative = [-3.0f32; 4];
        let back = roundtrip_asym(&negative, 1, 4, Granularity::PerToken);
        assert!(back.iter().all(|v| (v + 3.0).abs() < 1e-6), "{back:?}");
    }

    #[test]
    fn zero_is_exact_in_the_asymmetric_scheme() {
        let x = [0.0f32, 0.3, 1.7, 2.9, 0.0, 0.1];
        let y = roundtrip_asym(&x, 1, 6, Granularity::PerToken);
        assert_eq!((y[0], y[4]), (0.0, 0.0));
    }

    #[test]
    fn per_token_beats_per_tensor_on_rows_of_different_magnitude() {
        let mut x = wave(64, 0.01);
        x.extend(wave(64, 100.0));
        for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
            let rt = |g| match scheme {
                Scheme::Symmetric => roundtrip_sym(&x, 2, 64, g),
                Scheme::Asymmetric => roundtrip_asym(&x, 2, 64, g),
            };
            let (tok, ten) = (rt(Granularity::PerToken), rt(Granularity::PerTensor));
            let small_tok = rel_err(&x[..64], &tok[..64]);
            let small_ten = rel_err(&x[..64], &ten[..64]);
            assert!(small_tok < 0.01, "{scheme:?}: per token {small_tok}");
            assert!(small_ten > 0.5, "{scheme:?}: per tensor {small_ten}");
        }
    }

    #[test]
    fn rounding_is_half_to_even_and_clamped() {
        let x = [0.5f32, 1.5, 2.5, -0.5, 127.0];
        let (mut q, mut s) = ([0i8; 5], [0f32; 1]);
        quantize_rows_symmetric(&x, 1, 5, 5, Granularity::PerToken, &mut q, &mut s);
        assert_eq!(q, [0, 2, 2, 0, 127]);
        assert_eq!(s[0], 1.0);
    }
}
