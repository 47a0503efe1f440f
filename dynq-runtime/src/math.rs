//! Scalar f32 math below the kernels: `exp`, `erf`, the activation functions, and
//! [`apply_activation`]. Written in f32 arithmetic only (no libm calls), so loops over them
//! vectorize inside whatever target features the caller is compiled with; the kernels' fused
//! variants (`exp_k` in [`crate::kernels`]) are the same polynomial with the kernel's FMA flag.

use crate::types::Activation;

/// `e^x` in f32 arithmetic only (no libm call), so loops over it vectorize: `2^n * p(r)` with
/// `n = round(x / ln 2)`, `r = x - n ln 2` split in two constants, and the degree-7 Taylor
/// polynomial of `e^r` on |r| <= ln2 / 2 (truncation error < 2e-9, well under one f32 ulp).
/// Relative error below 4e-7 over the whole range; inputs below -87.3 give exactly 0.
///
/// ```
/// let e = dynq_runtime::math::exp(1.0);
/// assert!((e - std::f32::consts::E).abs() < 2e-6);
/// assert_eq!(dynq_runtime::math::exp(-1000.0), 0.0);
/// assert_eq!(dynq_runtime::math::exp(f32::MIN), 0.0);
/// ```
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_with(x, false)
}

/// `a * b + c`, fused into one instruction and one rounding if `fma` (a constant where it is
/// inlined: the CPU the caller is compiled for has FMA).
#[inline(always)]
pub(crate) fn madd_with(a: f32, b: f32, c: f32, fma: bool) -> f32 {
    if fma {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// [`exp`] with the polynomial in [`madd_with`]s: fused if `fma` (half the instructions;
/// results may differ from [`exp`] in the last bit).
#[inline(always)]
pub(crate) fn exp_with(x: f32, fma: bool) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75; // ln 2 rounded to 16 significant bits: n * LN2_HI is exact
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer with plain SSE2.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.3, 88.7);
    // t = round(xc / ln 2) + 1.5 * 2^23: its low mantissa bits hold n, so 2^n is built from its
    // bits with integer ops only (no float-to-int conversion, which would keep this scalar).
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    p = madd_with(p, r, 1.0 / 720.0, fma);
    p = madd_with(p, r, 1.0 / 120.0, fma);
    p = madd_with(p, r, 1.0 / 24.0, fma);
    p = madd_with(p, r, 1.0 / 6.0, fma);
    p = madd_with(p, r, 0.5, fma);
    p = madd_with(p, r, 1.0, fma);
    p = madd_with(p, r, 1.0, fma);
    let scale = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    if x < -87.3 {
        0.0
    } else {
        p * scale
    }
}

/// The error function in f32 arithmetic (vectorizable): Abramowitz & Stegun 7.1.26,
/// `1 - (a1 t + ... + a5 t^5) e^(-x^2)` with `t = 1 / (1 + p |x|)`, absolute error below 1e-6 (1.5e-7 from the approximation, the rest f32 rounding in the polynomial).
///
/// ```
/// assert!((dynq_runtime::math::erf(0.5) - 0.520_499_9).abs() < 1e-6);
/// assert_eq!(dynq_runtime::math::erf(10.0), 1.0);
/// ```
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let r = 1.0 - poly * exp(-z * z);
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// Exact GELU: `0.5 x (1 + erf(x / sqrt 2))`.
///
/// ```
/// assert!((dynq_runtime::math::gelu(1.0) - 0.841_344_7).abs() < 1e-6);
/// ```
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Tanh GELU: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
///
/// ```
/// assert!((dynq_runtime::math::gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
/// ```
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    0.5 * x * (1.0 + tanh(C * (x + 0.044_715 * x * x * x)))
}

/// `tanh` in f32 arithmetic only (vectorizable), accurate in relative terms near zero too.
///
/// For |x| >= 0.5 it is `1 - 2 / (e^(2|x|) + 1)` through [`exp`] (|x| >= 10 saturates to +-1
/// exactly); below, where that form would cancel, the odd Taylor series up to x^15 (truncation
/// below 5e-9 relative at 0.5). The recurrent cells apply it to small values whose relative
/// error matters: relative error below 1e-6 everywhere.
///
/// ```
/// assert!((dynq_runtime::math::tanh(0.5) - 0.5f32.tanh()).abs() < 1e-6);
/// assert!((dynq_runtime::math::tanh(1e-4) / 1e-4f32.tanh() - 1.0).abs() < 1e-6);
/// assert_eq!(dynq_runtime::math::tanh(-20.0), -1.0);
/// ```
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let z = x.abs().min(10.0);
    let large = 1.0 - 2.0 / (exp(2.0 * z) + 1.0);
    // tanh z = z - z^3/3 + 2z^5/15 - 17z^7/315 + 62z^9/2835 - 1382z^11/155925
    //          + 21844z^13/6081075 - 929569z^15/638512875
    let z2 = z * z;
    let mut p = -929_569.0 / 638_512_875.0;
    p = p * z2 + 21_844.0 / 6_081_075.0;
    p = p * z2 - 1_382.0 / 155_925.0;
    p = p * z2 + 62.0 / 2_835.0;
    p = p * z2 - 17.0 / 315.0;
    p = p * z2 + 2.0 / 15.0;
    p = p * z2 - 1.0 / 3.0;
    let small = z + z * z2 * p;
    let r = if z < 0.5 { small } else { large };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// Logistic sigmoid, stable for large |x|.
///
/// ```
/// assert_eq!(dynq_runtime::math::sigmoid(0.0), 0.5);
/// assert!(dynq_runtime::math::sigmoid(-100.0) >= 0.0);
/// ```
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 {
        r
    } else {
        e * r
    }
}

/// Applies `act` in place.
///
/// ```
/// use dynq_runtime::{math::apply_activation, Activation};
/// let mut v = [-1.0, 2.0];
/// apply_activation(Activation::Relu, &mut v);
/// assert_eq!(v, [0.0, 2.0]);
/// ```
#[inline(always)]
pub fn apply_activation(act: Activation, v: &mut [f32]) {
    // Inside the GEMM's timer: the profile takes this time out of the GEMM's.
    let _timer = match act {
        Activation::None => None,
        _ => {
            crate::trace::work(crate::trace::Part::Activation, v.len(), v.len() * 8);
            Some(crate::trace::time(crate::trace::Part::Activation))
        }
    };
    activate(act, v);
}

/// [`apply_activation`] without the profile's accounting (for epilogues that account for
/// it themselves, such as a gated FFN's).
#[inline(always)]
pub(crate) fn activate(act: Activation, v: &mut [f32]) {
    match act {
        Activation::None => {}
        // Plain loops, not `for_each`: the std adaptor may stay out of line, and then it would
        // not be compiled for the caller's target features.
        Activation::Relu => {
            for x in v {
                *x = x.max(0.0);
            }
        }
        Activation::Gelu => {
            for x in v {
                *x = gelu(*x);
            }
        }
        Activation::GeluTanh => {
            for x in v {
                *x = gelu_tanh(*x);
            }
        }
        Activation::Tanh => {
            for x in v {
                *x = tanh(*x);
            }
        }
        Activation::Sigmoid => {
            for x in v {
                *x = sigmoid(*x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_reference_values() {
        // erf values from the standard tables.
        let table = [
            (0.0, 0.0),
            (0.1, 0.112_462_92),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (1.5, 0.966_105_16),
            (2.0, 0.995_322_3),
            (3.0, 0.999_977_9),
        ];
        for (x, e) in table {
            assert!((erf(x) - e).abs() < 1e-6, "erf({x}) = {} vs {e}", erf(x));
            assert!((erf(-x) + e).abs() < 1e-6);
        }
    }

    #[test]
    fn exp_is_accurate_over_the_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let e = f64::from(x).exp();
            worst = worst.max(((f64::from(exp(x)) - e) / e).abs());
            x += 0.013;
        }
        assert!(worst < 4e-7, "relative error {worst:e}");
    }

    #[test]
    fn erf_tanh_sigmoid_match_libm() {
        let mut x = -10.0f32;
        while x < 10.0 {
            let e = libm_erf(f64::from(x));
            assert!(
                (f64::from(erf(x)) - e).abs() < 1e-6,
                "erf({x}) = {} vs {e}",
                erf(x)
            );
            assert!((tanh(x) - x.tanh()).abs() < 1e-6, "tanh({x})");
            let s = 1.0 / (1.0 + (-f64::from(x)).exp());
            assert!((f64::from(sigmoid(x)) - s).abs() < 3e-7, "sigmoid({x})");
            x += 0.0037;
        }
    }

    /// erf in f64 by its Maclaurin series / continued fraction, for the tests.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let mut sum = 0.0;
            let mut term = x;
            let mut n = 0.0;
            while term.abs() > 1e-17 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc continued fraction (Lentz), accurate to ~1e-15 for |x| >= 3.
            let z = x.abs();
            let mut f = z;
            for k in (1..60).rev() {
                f = z + (k as f64 / 2.0) / f;
            }
            let erfc = (-z * z).exp() / (f * std::f64::consts::PI.sqrt());
            (1.0 - erfc).copysign(x)
        }
    }

    #[test]
    fn tanh_and_sigmoid_are_relatively_accurate_near_zero() {
        // The recurrent cells feed them small pre-activations; relative error is what counts.
        let mut x = 1e-8f32;
        while x < 12.0 {
            for v in [x, -x] {
                let t = f64::from(v).tanh();
                let rel = ((f64::from(tanh(v)) - t) / t).abs();
                assert!(rel < 1e-6, "tanh({v}) = {} vs {t}: {rel:e}", tanh(v));
                let s = 1.0 / (1.0 + (-f64::from(v)).exp());
                let rel = ((f64::from(sigmoid(v)) - s) / s).abs();
                assert!(rel < 1e-6, "sigmoid({v}): {rel:e}");
            }
            x *= 1.01;
        }
    }

    #[test]
    fn sigmoid_and_gelu_limits() {
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(gelu(-20.0), 0.0);
        assert_eq!(gelu(20.0), 20.0);
    }
}
