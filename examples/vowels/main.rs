//! Speaker recognition on the Japanese Vowels data set with a bidirectional LSTM, INT8 next
//! to f32 and next to PyTorch.
//!
//! `cargo run --release --example vowels`
//!
//! Nine speakers say "ae"; each utterance is 7 to 29 frames of 12 LPC cepstrum coefficients
//! (UCI data set, CC BY 4.0; see `DATA.md`). `scripts/train_vowels.py` trained
//! `nn.LSTM(12, 32, bidirectional=True)` followed by `nn.Linear(64, 9)` on the final hidden
//! states of both directions. Two `dynq_model!` calls per precision turn that into Rust: the
//! `lstm` preset for the recurrent part (`vowels.toml`) and the `mlp` preset for the classifier
//! (`head.toml`); this program standardizes each utterance, runs one sequence at a time, and
//! prints the accuracy of both precisions on the 370 held-out utterances, their agreement, and
//! how far each one's logits are from PyTorch's FP32 logits.

use std::error::Error;
use std::time::Instant;

use dynq_runtime::{RnnInput, RnnOutput};
use safetensors::SafeTensors;

dynq_macros::dynq_model!("vowels/vowels.toml");
dynq_macros::dynq_model!("vowels/vowels.toml", precision = "f32");
dynq_macros::dynq_model!("vowels/head.toml");
dynq_macros::dynq_model!("vowels/head.toml", precision = "f32");

/// The held-out utterances: `frames` [n, 12] (raw), `lengths` [utterances], `labels`
/// [utterances], and PyTorch's FP32 `fp32_logits` [utterances, 9].
const TEST_SET: &[u8] = include_bytes!("test.safetensors");
/// The weights file also holds the standardization, `norm.mean` and `norm.std` [12].
const WEIGHTS: &[u8] = include_bytes!("vowels.safetensors");
/// PyTorch's accuracies on the same utterances (FP32 and `quantize_dynamic`).
const PYTORCH: &str = include_str!("pytorch_reference.json");

fn f32s(st: &SafeTensors<'_>, name: &str) -> Result<Vec<f32>, Box<dyn Error>> {
    let t = st.tensor(name)?;
    Ok(t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn i32s(st: &SafeTensors<'_>, name: &str) -> Result<Vec<usize>, Box<dyn Error>> {
    let t = st.tensor(name)?;
    t.data()
        .chunks_exact(4)
        .map(|b| usize::try_from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])).map_err(Into::into))
        .collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den).sqrt()
}

/// One utterance through the LSTM and the classifier: the 9 logits.
fn classify(
    lstm: impl Fn(&RnnInput<'_>, RnnOutput<'_>) -> Result<(), dynq_runtime::Error>,
    head: impl Fn(&[f32], &mut [f32]) -> Result<(), dynq_runtime::Error>,
    frames: &[f32],
    steps: usize,
) -> Result<[f32; VowelsHead::OUTPUT_SIZE], dynq_runtime::Error> {
    let mut output = vec![0.0; steps * Vowels::OUTPUT_SIZE];
    let mut h_n = [0.0; Vowels::H_N_LEN];
    let mut c_n = [0.0; Vowels::C_N_LEN];
    lstm(
        &RnnInput::sequence(frames, steps),
        RnnOutput {
            output: &mut output,
            h_n: &mut h_n,
            c_n: &mut c_n,
        },
    )?;
    // h_n is [direction][hidden]: the forward state after the last frame, then the backward
    // state after the first one, which is what the classifier was trained on.
    let mut logits = [0.0; VowelsHead::OUTPUT_SIZE];
    head(&h_n, &mut logits)?;
    Ok(logits)
}

fn main() -> Result<(), Box<dyn Error>> {
    let test = SafeTensors::deserialize(TEST_SET)?;
    let (frames, lengths, labels) = (
        f32s(&test, "frames")?,
        i32s(&test, "lengths")?,
        i32s(&test, "labels")?,
    );
    let torch_logits = f32s(&test, "fp32_logits")?;
    let weights = SafeTensors::deserialize(WEIGHTS)?;
    let (mean, std) = (f32s(&weights, "norm.mean")?, f32s(&weights, "norm.std")?);
    let width = Vowels::INPUT_SIZE;

    let (mut correct, mut agree, mut err_int8, mut err_f32) = ([0usize; 2], 0, 0.0, 0.0);
    let (mut t_int8, mut t_f32) = (0.0, 0.0);
    let mut start = 0;
    for (u, (&steps, &label)) in lengths.iter().zip(&labels).enumerate() {
        let raw = &frames[start * width..(start + steps) * width];
        start += steps;
        let x: Vec<f32> = raw
            .iter()
            .enumerate()
            .map(|(i, v)| (v - mean[i % width]) / std[i % width])
            .collect();
        let t = Instant::now();
        let q = classify(
            |i, o| Vowels.forward(i, o),
            |x, o| VowelsHead.forward(x, 1, o),
            &x,
            steps,
        )?;
        t_int8 += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let f = classify(
            |i, o| VowelsF32.forward(i, o),
            |x, o| VowelsHeadF32.forward(x, 1, o),
            &x,
            steps,
        )?;
        t_f32 += t.elapsed().as_secs_f64();
        let torch = &torch_logits[u * 9..(u + 1) * 9];
        correct[0] += usize::from(argmax(&q) == label);
        correct[1] += usize::from(argmax(&f) == label);
        agree += usize::from(argmax(&q) == argmax(&f));
        err_int8 += rel_l2(&q, torch);
        err_f32 += rel_l2(&f, torch);
    }
    let n = labels.len();
    let pct = |c: usize| 100.0 * c as f64 / n as f64;
    println!("Japanese Vowels, {n} held-out utterances, speaker recognition (9 classes)");
    println!(
        "  dynq f32   accuracy {:6.2} %   logits vs PyTorch FP32: mean rel. L2 {:.1e}   {:5.1} us/utterance",
        pct(correct[1]),
        err_f32 / n as f64,
        1e6 * t_f32 / n as f64
    );
    println!(
        "  dynq INT8  accuracy {:6.2} %   logits vs PyTorch FP32: mean rel. L2 {:.1e}   {:5.1} us/utterance",
        pct(correct[0]),
        err_int8 / n as f64,
        1e6 * t_int8 / n as f64
    );
    println!("  INT8 and f32 agree on {agree}/{n} utterances");
    let torch: serde_json::Value = serde_json::from_str(PYTORCH)?;
    let acc = |k: &str| torch[k].as_f64().map_or(f64::NAN, |v| 100.0 * v);
    println!(
        "  PyTorch    accuracy {:6.2} % FP32, {:.2} % INT8 (quantize_dynamic; logits vs FP32: mean rel. L2 {:.1e})",
        acc("fp32_accuracy"),
        acc("int8_accuracy"),
        torch["int8_logit_rel_l2_mean"].as_f64().unwrap_or(f64::NAN)
    );
    Ok(())
}
