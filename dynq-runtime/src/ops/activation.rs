//! Element-wise activation functions.

/// The activation applied after a linear layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Identity.
    None,
    /// `max(x, 0)`.
    Relu,
    /// The exact GELU, `x * Phi(x)` with the error function (PyTorch's default).
    Gelu,
    /// The tanh approximation of GELU (`gelu_new`, `approximate="tanh"`).
    GeluTanh,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
}

/// The error function, with absolute error below 2e-7 over all of f32: `1 - erfc(|x|)` with
/// the Numerical Recipes Chebyshev fit of erfc (fractional error < 1.2e-7), evaluated in f64.
///
/// ```
/// assert!((dynq_runtime::ops::erf(0.5) - 0.520_499_9).abs() < 1e-6);
/// assert_eq!(dynq_runtime::ops::erf(10.0), 1.0);
/// ```
#[inline]
pub fn erf(x: f32) -> f32 {
    let z = f64::from(x).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let r = (1.0 - erfc) as f32;
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// Exact GELU: `0.5 x (1 + erf(x / sqrt 2))`.
///
/// ```
/// assert!((dynq_runtime::ops::gelu(1.0) - 0.841_344_7).abs() < 1e-6);
/// ```
#[inline]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Tanh GELU: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
///
/// ```
/// assert!((dynq_runtime::ops::gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
/// ```
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh())
}

/// Logistic sigmoid, stable for large |x|.
///
/// ```
/// assert_eq!(dynq_runtime::ops::sigmoid(0.0), 0.5);
/// assert!(dynq_runtime::ops::sigmoid(-100.0) >= 0.0);
/// ```
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Applies `act` in place.
///
/// ```
/// use dynq_runtime::{ops::apply_activation, Activation};
/// let mut v = [-1.0, 2.0];
/// apply_activation(Activation::Relu, &mut v);
/// assert_eq!(v, [0.0, 2.0]);
/// ```
#[inline]
pub fn apply_activation(act: Activation, v: &mut [f32]) {
    match act {
        Activation::None => {}
        Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        Activation::Gelu => v.iter_mut().for_each(|x| *x = gelu(*x)),
        Activation::GeluTanh => v.iter_mut().for_each(|x| *x = gelu_tanh(*x)),
        Activation::Tanh => v.iter_mut().for_each(|x| *x = x.tanh()),
        Activation::Sigmoid => v.iter_mut().for_each(|x| *x = sigmoid(*x)),
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
            assert!((erf(x) - e).abs() < 2e-7, "erf({x}) = {} vs {e}", erf(x));
            assert!((erf(-x) + e).abs() < 2e-7);
        }
    }

    #[test]
    fn sigmoid_and_gelu_limits() {
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(gelu(-20.0), -0.0);
        assert_eq!(gelu(20.0), 20.0);
    }
}
