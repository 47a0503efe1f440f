//! The digits classifier, INT8 next to f32.
//!
//! `cargo run --release --example digits`
//!
//! An MLP (64 -> 64 -> 10) trained on scikit-learn's 8x8 handwritten digits by
//! `scripts/train_digits.py`. `dynq_model!` reads `digits.toml` and the weights at compile time
//! and generates two models: `Digits` (INT8 weights, activations quantized per row at run time)
//! and `DigitsF32` (the unquantized reference). This program classifies the held-out test set
//! with both and prints their accuracy.

use std::process::ExitCode;

dynq_macros::dynq_model!("digits/digits.toml");
dynq_macros::dynq_model!("digits/digits.toml", precision = "f32");

/// Test images: `label,f0,...,f63` per line, features already scaled to [0, 1].
const TEST_SET: &str = include_str!("digits_test.csv");

fn parse_test_set() -> Result<(Vec<f32>, Vec<usize>), String> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for (i, line) in TEST_SET.lines().enumerate() {
        let mut fields = line.split(',');
        let label = fields.next().and_then(|l| l.parse().ok());
        let row: Result<Vec<f32>, _> = fields.map(str::parse).collect();
        match (label, row) {
            (Some(label), Ok(row)) if row.len() == Digits::INPUT_SIZE => {
                labels.push(label);
                pixels.extend(row);
            }
            _ => {
                return Err(format!(
                    "digits_test.csv line {}: expected a label and 64 numbers",
                    i + 1
                ))
            }
        }
    }
    Ok((pixels, labels))
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

fn accuracy(logits: &[f32], labels: &[usize]) -> f64 {
    let correct = logits
        .chunks_exact(Digits::OUTPUT_SIZE)
        .zip(labels)
        .filter(|(row, &label)| argmax(row) == label)
        .count();
    100.0 * correct as f64 / labels.len() as f64
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (pixels, labels) = parse_test_set()?;
    let rows = labels.len();
    let mut int8 = vec![0.0; rows * Digits::OUTPUT_SIZE];
    let mut f32 = vec![0.0; rows * DigitsF32::OUTPUT_SIZE];
    Digits.forward(&pixels, rows, &mut int8)?;
    DigitsF32.forward(&pixels, rows, &mut f32)?;

    let (acc_int8, acc_f32) = (accuracy(&int8, &labels), accuracy(&f32, &labels));
    let agree = int8
        .chunks_exact(10)
        .zip(f32.chunks_exact(10))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    let max_diff = int8
        .iter()
        .zip(&f32)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "digits: {rows} held-out test images, kernel {}",
        dynq_runtime::selected_kernel()?.name()
    );
    println!("  f32  accuracy: {acc_f32:.2} %");
    println!(
        "  int8 accuracy: {acc_int8:.2} % ({:+.2} points)",
        acc_int8 - acc_f32
    );
    println!("  same prediction on {agree} of {rows}; largest logit difference {max_diff:.4}");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
