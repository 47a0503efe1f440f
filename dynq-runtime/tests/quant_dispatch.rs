//! Dynamic quantization compiled inside every kernel's target-feature entry point, at constant
//! row widths, gives the scales and values of the plain build.
//!
//! Background: with rustc 1.95, a `fold` of `f32::max` over rows of constant width 10, inlined
//! into the AVX2 entry point of an LSTM forward at opt-level 3, dropped the last element from
//! the range of one row out of seven (tests/golden_rnn.rs caught it). The miscompile depends on
//! the surrounding code and does not reproduce in this small harness; the test keeps the
//! general property checked at several odd widths, every kernel, both schemes.

use dynq_runtime::quant::{padded_k, quantize_rows_asymmetric, quantize_rows_symmetric};
use dynq_runtime::{dispatch, Granularity, Job, Kernel, KernelId};

/// Rows per quantization: the miscompiled case had 7 (a 4-row block and a remainder of 3).
const ROWS: usize = 7;

/// One quantization: symmetric scales and values, asymmetric scales, zero points and values.
type Quantized = (Vec<f32>, Vec<i8>, Vec<f32>, Vec<i32>, Vec<i8>);

/// Quantizes 7 rows of width `W` with the largest magnitude at every position in turn (shifted by one per row):
/// (symmetric scales, values, asymmetric scales, zero points, values).
#[inline(always)]
fn quantize_all<const W: usize>() -> Vec<Quantized> {
    let stride = padded_k(W);
    (0..W)
        .map(|pos| {
            let mut x: Vec<f32> = (0..ROWS * W)
                .map(|i| ((i * 7) % 11) as f32 * 0.1 - 0.5)
                .collect();
            for r in 0..ROWS {
                x[r * W + (pos + r) % W] = (1.0 + r as f32) * if r % 2 == 0 { 1.0 } else { -1.0 };
            }
            let (mut q, mut s) = (vec![0i8; ROWS * stride], vec![0f32; ROWS]);
            quantize_rows_symmetric(&x, ROWS, W, stride, Granularity::PerToken, &mut q, &mut s);
            let (mut qa, mut sa, mut za) =
                (vec![0i8; ROWS * stride], vec![0f32; ROWS], vec![0i32; ROWS]);
            quantize_rows_asymmetric(
                &x,
                ROWS,
                W,
                stride,
                Granularity::PerToken,
                &mut qa,
                &mut sa,
                &mut za,
            );
            (s, q, sa, za, qa)
        })
        .collect()
}

type Results = Vec<Vec<Quantized>>;

#[inline(always)]
fn all_widths() -> Results {
    vec![
        quantize_all::<1>(),
        quantize_all::<3>(),
        quantize_all::<5>(),
        quantize_all::<7>(),
        quantize_all::<9>(),
        quantize_all::<10>(),
        quantize_all::<12>(),
        quantize_all::<15>(),
        quantize_all::<17>(),
        quantize_all::<24>(),
        quantize_all::<33>(),
    ]
}

struct Quantize;

impl Job for Quantize {
    type Output = Results;
    #[inline(always)]
    fn run<K: Kernel>(self, _kernel: K) -> Results {
        all_widths()
    }
}

#[test]
fn quantization_is_the_same_inside_every_kernel_entry_point() {
    let plain = all_widths();
    // The scales are exact functions of the range: check them against it.
    for (w, rows) in plain.iter().enumerate() {
        for (pos, (s, ..)) in rows.iter().enumerate() {
            let want: Vec<f32> = (0..ROWS).map(|r| (1.0 + r as f32) / 127.0).collect();
            assert_eq!(s, &want, "width #{w}, max at {pos}");
        }
    }
    for id in KernelId::ALL {
        let got = dispatch(Quantize, &[id]).unwrap();
        assert!(
            got == plain,
            "{}: quantization differs from the plain build",
            id.name()
        );
    }
}
