//! Accuracy of the embedded all-MiniLM-L6-v2 against PyTorch FP32 reference embeddings.
//!
//! ```text
//! cargo run --release --example minilm_accuracy -- [SENTENCES.txt REFERENCE.safetensors]
//! ```
//!
//! Defaults to the committed 64 sentences (`tests/golden/minilm/`). For the whole STS test set,
//! make the reference with `scripts/minilm_reference.py --sts target/sts/fp32.safetensors` and
//! pass `target/sts/sentences.txt target/sts/fp32.safetensors`. Prints the cosine of the INT8
//! and the f32 build to the reference: mean, minimum and the worst sentence.

use std::process::ExitCode;

use safetensors::SafeTensors;
use tokenizers::{Tokenizer, TruncationParams};

dynq_macros::dynq_model!("../models/minilm/minilm.toml");
dynq_macros::dynq_model!("../models/minilm/minilm.toml", precision = "f32");

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-12)
}

fn run() -> Result<(), String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (sentences, reference) = match args.as_slice() {
        [] => (
            format!("{root}/tests/golden/minilm/sentences.txt"),
            format!("{root}/tests/golden/minilm/reference.safetensors"),
        ),
        [s, r] => (s.clone(), r.clone()),
        _ => return Err("usage: minilm_accuracy [SENTENCES.txt REFERENCE.safetensors]".into()),
    };
    let text = std::fs::read_to_string(&sentences).map_err(|e| format!("{sentences}: {e}"))?;
    let bytes = std::fs::read(&reference).map_err(|e| format!("{reference}: {e}"))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| format!("{reference}: {e}"))?;
    let emb = st
        .tensor("embeddings")
        .map_err(|e| format!("{reference}: {e}"))?;
    let refs: Vec<f32> = emb
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    if refs.len() != lines.len() * minilm::OUTPUT_SIZE {
        return Err(format!(
            "{} sentences but {} reference values",
            lines.len(),
            refs.len()
        ));
    }
    let mut tok: Tokenizer = minilm::TOKENIZER_JSON
        .ok_or("no tokenizer")?
        .parse()
        .map_err(|e| format!("{e}"))?;
    tok.with_padding(None);
    tok.with_truncation(Some(TruncationParams {
        max_length: 256, // sentence-transformers' max_seq_length for this model
        ..TruncationParams::default()
    }))
    .map_err(|e| format!("{e}"))?;
    let (mut cos8, mut cos32) = (Vec::new(), Vec::new());
    for (line, r) in lines.iter().zip(refs.chunks_exact(minilm::OUTPUT_SIZE)) {
        let ids = tok
            .encode(*line, true)
            .map_err(|e| format!("{e}"))?
            .get_ids()
            .to_vec();
        cos8.push(cosine(&Minilm.embed(&ids).map_err(|e| e.to_string())?, r));
        cos32.push(cosine(
            &MinilmF32.embed(&ids).map_err(|e| e.to_string())?,
            r,
        ));
    }
    for (name, c) in [("int8", &cos8), ("f32", &cos32)] {
        let mean = c.iter().sum::<f64>() / c.len() as f64;
        let (worst, min) =
            c.iter().enumerate().fold(
                (0, f64::INFINITY),
                |b, (i, &v)| if v < b.1 { (i, v) } else { b },
            );
        let shown: String = lines[worst].chars().take(60).collect();
        println!(
            "{name:>4} vs PyTorch FP32 over {} sentences: cosine mean {mean:.5}, min {min:.5} (sentence {}: {shown:?})",
            c.len(),
            worst + 1
        );
    }
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
