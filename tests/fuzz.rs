//! Fuzzing that runs as a normal test: structured mutations of valid inputs through the TOML
//! parser and the presets, the safetensors reader, and the standalone binaries' JSON-line
//! driver. Nothing may panic; library errors must name a file in the model's directory and
//! server errors the line.
//!
//! `cargo test` tries a few hundred inputs per harness from a fixed seed. CI sets
//! `DYNQ_FUZZ_SECS=60` to run each harness for that long from a seed it prints; a failure prints
//! the seed and the input, and `DYNQ_FUZZ_SEED=<seed>` replays the run. Inputs that found bugs
//! are kept in [`regressions`].

#[path = "../cli/tests/common/bad_cases.rs"]
mod bad_cases;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use bad_cases::{bert_tensors, gru_toml, mlp_tensors, rnn_tensors, safetensors};
use dynq_build::{generate_from, spec::SpecFile, weights::Weights, Options, Placement};
use dynq_runtime::ops::rnn::{Cell, RnnShape};
use dynq_runtime::serve;

dynq_macros::dynq_model!("golden/mlp.toml", kernels = "native");
dynq_macros::dynq_model!("golden/bert_logits.toml", kernels = "native");
dynq_macros::dynq_model!("../examples/vowels/vowels.toml", kernels = "native");

// ---- the engine ------------------------------------------------------------------------------

/// xorshift64*: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Runs `check` on mutations of `seeds` for `DYNQ_FUZZ_SECS` seconds, or on a fixed number of
/// inputs without it; panics with the seed and the input when `check` panics or fails.
fn fuzz(
    name: &str,
    default_count: usize,
    seeds: &[Vec<u8>],
    mutate: impl Fn(&mut Rng, &[u8]) -> Vec<u8>,
    check: impl Fn(&[u8]) -> Result<(), String>,
) {
    let secs: Option<u64> = std::env::var("DYNQ_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok());
    let seed = std::env::var("DYNQ_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| match secs {
            Some(_) => {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            }
            None => 0x5eed_d1a9,
        });
    let mut rng = Rng(seed);
    let start = Instant::now();
    let deadline = secs.map(|s| start + Duration::from_secs(s));
    let mut tried = 0usize;
    let mut rejected = 0usize;
    while match deadline {
        Some(d) => Instant::now() < d,
        None => tried < default_count,
    } {
        // Stack one to four mutations on a seed.
        let mut input = rng.pick(seeds).clone();
        for _ in 0..1 + rng.below(4) {
            input = mutate(&mut rng, &input);
        }
        tried += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) if e.is_empty() => None,
            Ok(Err(e)) => Some(e),
            Err(p) => Some(format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("?")
            )),
        };
        if let Some(f) = failure {
            panic!(
                "fuzz {name}: input {tried} (DYNQ_FUZZ_SEED={seed}): {f}\ninput: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
        rejected += usize::from(check_was_rejection());
    }
    eprintln!(
        "fuzz {name}: {tried} inputs in {:.1} s (seed {seed}), {rejected} rejected with a clear error, 0 crashes",
        start.elapsed().as_secs_f64()
    );
}

thread_local! {
    static REJECTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Notes that the last input ended in an (accepted) error.
fn note_rejected() {
    REJECTED.with(|r| r.set(true));
}

fn check_was_rejection() -> bool {
    REJECTED.with(|r| r.replace(false))
}

/// Splits text into tokens: quoted strings, runs of word characters (names, numbers), single
/// punctuation characters, runs of blanks.
fn tokens(text: &[u8]) -> Vec<Vec<u8>> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b"_.+-".contains(&b);
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let start = i;
        let b = text[i];
        if b == b'"' {
            i += 1;
            while i < text.len() && text[i] != b'"' {
                i += 1 + usize::from(text[i] == b'\\');
            }
            i = (i + 1).min(text.len());
        } else if word(b) {
            while i < text.len() && word(text[i]) {
                i += 1;
            }
        } else if b == b' ' || b == b'\t' {
            while i < text.len() && (text[i] == b' ' || text[i] == b'\t') {
                i += 1;
            }
        } else {
            i += 1;
        }
        out.push(text[start..i].to_vec());
    }
    out
}

/// Numbers that break things: zero, negatives, the edges of integer and float types.
const NUMBERS: [&str; 16] = [
    "0",
    "1",
    "-1",
    "2",
    "255",
    "65536",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "1e39",
    "-1e39",
    "1e-50",
    "0.5",
    "-0",
    "3.4028236e38",
];

/// One structured mutation of text: delete, duplicate, swap or replace tokens (with tokens of
/// the seeds, `extra` ones, or edge-case numbers), or work on whole lines; rarely a raw byte.
fn mutate_text(rng: &mut Rng, input: &[u8], dictionary: &[Vec<u8>]) -> Vec<u8> {
    let mut t = tokens(input);
    if t.is_empty() {
        return rng.pick(dictionary).clone();
    }
    let i = rng.below(t.len());
    match rng.below(10) {
        0 => {
            t.remove(i);
        }
        1 => {
            let x = t[i].clone();
            t.insert(i, x);
        }
        2 => {
            let j = rng.below(t.len());
            t.swap(i, j);
        }
        3 | 4 => t[i] = rng.pick(dictionary).clone(),
        5 => t[i] = rng.pick(&NUMBERS).as_bytes().to_vec(),
        6 => {
            // Duplicate a run of tokens (a table, an array element, a key).
            let n = 1 + rng.below(8).min(t.len() - i - 1);
            let run: Vec<_> = t[i..i + n].to_vec();
            let at = rng.below(t.len());
            t.splice(at..at, run);
        }
        7 => {
            // Delete or duplicate a line.
            let text = t.concat();
            let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
            let l = rng.below(lines.len());
            if rng.below(2) == 0 {
                lines.remove(l);
            } else {
                lines.insert(l, lines[l]);
            }
            return lines.join(&b'\n');
        }
        8 => {
            let cut = rng.below(input.len() + 1);
            return input[..cut].to_vec();
        }
        _ => {
            let mut b = input.to_vec();
            let k = rng.below(b.len());
            b[k] = rng.next() as u8;
            return b;
        }
    }
    t.concat()
}

/// The tokens of all seeds, plus `extra`.
fn dictionary(seeds: &[Vec<u8>], extra: &[&str]) -> Vec<Vec<u8>> {
    let mut d: Vec<Vec<u8>> = seeds.iter().flat_map(|s| tokens(s)).collect();
    d.extend(extra.iter().map(|e| e.as_bytes().to_vec()));
    d.sort();
    d.dedup();
    d
}

/// Lets the error through if it names a file under `dir`, or a file the spec names by an
/// absolute path (a mutated `weights = "/x.safetensors"`); explains it otherwise.
fn names_a_file_in(dir: &Path, e: &dynq_build::Error) -> Result<(), String> {
    note_rejected();
    let msg = e.to_string();
    let absolute = msg
        .split_once(": ")
        .is_some_and(|(file, _)| file.len() > 1 && Path::new(file).is_absolute());
    if absolute
        || (msg.starts_with(&dir.display().to_string()) && msg.len() > dir.as_os_str().len() + 2)
    {
        Ok(())
    } else {
        Err(format!("error does not name a file of the model: {msg:?}"))
    }
}

// ---- the TOML description --------------------------------------------------------------------

/// A directory with every seed model's weights (and the BERT config), and the seed TOMLs.
fn model_dir() -> (tempfile::TempDir, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
    write("mlp.safetensors", &safetensors(&mlp_tensors()));
    write("lstm.safetensors", &safetensors(&rnn_tensors(4, 2, 2)));
    write("gru.safetensors", &safetensors(&rnn_tensors(3, 2, 2)));
    write("bert.safetensors", &safetensors(&bert_tensors(1)));
    write("config.json", bad_cases::BERT_CONFIG.as_bytes());
    let seeds = [
        format!(
            "{}\n[quantize]\nweights = \"per_tensor\"\nactivations = \"per_tensor\"\nscheme = \"asymmetric\"\nkeep_f32 = [\"net.2\"]\n\n[target]\nkernels = [\"avx2\", \"neon_dot\"]\n",
            bad_cases::MLP_TOML.replace("tiny.safetensors", "mlp.safetensors")
        ),
        bad_cases::LSTM_TOML.replace("tiny.safetensors", "lstm.safetensors")
            + "bias = true\nbatch_first = true\n",
        gru_toml().replace("tiny.safetensors", "gru.safetensors"),
        bad_cases::BERT_TOML.replace("tiny.safetensors", "bert.safetensors")
            + "max_seq_len = 4\nnormalize = true\n",
    ];
    (dir, seeds.map(String::into_bytes).to_vec())
}

/// Parses, then generates against the directory's weights: an error must name a file.
fn check_spec(dir: &Path, text: &[u8]) -> Result<(), String> {
    let path = dir.join("model.toml");
    let Ok(text) = String::from_utf8(text.to_vec()) else {
        return Ok(());
    };
    let spec = match SpecFile::parse(&path, text) {
        Ok(s) => s,
        Err(e) => return names_a_file_in(dir, &e),
    };
    let weights = match Weights::open(&spec.weights_path()) {
        Ok(w) => w,
        Err(e) => return names_a_file_in(dir, &e),
    };
    for precision in [dynq_build::Precision::Int8, dynq_build::Precision::F32] {
        let options = Options {
            precision,
            ..Options::default()
        };
        if let Err(e) = generate_from(&spec, &weights, &options, Placement::Relative) {
            return names_a_file_in(dir, &e);
        }
    }
    Ok(())
}

#[test]
fn fuzz_spec_parser_and_presets() {
    let (dir, seeds) = model_dir();
    let dict = dictionary(
        &seeds,
        &[
            "\n[mlp]\n",
            "\n[lstm]\n",
            "\n[gru]\n",
            "\n[bert]\n",
            "\n[model]\n",
            "[[mlp.layers]]",
            "\"relu\"",
            "\"gelu_tanh\"",
            "\"cls\"",
            "\"last_hidden_state\"",
            "\"mean_pooled\"",
            "\"scalar\"",
            "\"\"",
            "\"../\"",
            "true",
            "false",
            "#",
            "{",
            "}",
            "[",
            "]",
            ",",
            "=",
            "'",
            "\"\"\"",
        ],
    );
    fuzz(
        "spec",
        2000,
        &seeds,
        |rng, input| mutate_text(rng, input, &dict),
        |input| check_spec(dir.path(), input),
    );
}

// ---- the safetensors reader ------------------------------------------------------------------

/// Splits a safetensors file into header and data (when its length prefix fits).
fn split_safetensors(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    Some((bytes.get(8..8usize.checked_add(n)?)?, &bytes[8 + n..]))
}

/// Mutates the header's JSON (and rewrites the length prefix), the data, or the raw file.
fn mutate_safetensors(rng: &mut Rng, input: &[u8], dict: &[Vec<u8>]) -> Vec<u8> {
    let Some((header, data)) = split_safetensors(input) else {
        return mutate_text(rng, input, dict);
    };
    let mut data = data.to_vec();
    match rng.below(8) {
        0..=3 => {
            let h = mutate_text(rng, header, dict);
            return [&(h.len() as u64).to_le_bytes()[..], &h, &data].concat();
        }
        4 if !data.is_empty() => {
            // A NaN, an infinity or a random word in the data (f32-aligned or not).
            let words = [0x7fc0_0000u32, 0x7f80_0000, 0xff80_0000, rng.next() as u32];
            let w = rng.pick(&words).to_le_bytes();
            let at = rng.below(data.len());
            for (k, b) in w.iter().enumerate() {
                if let Some(d) = data.get_mut(at + k) {
                    *d = *b;
                }
            }
        }
        5 => {
            let n = rng.below(16);
            data.extend((0..n).map(|_| rng.next() as u8));
        }
        6 => {
            // A length prefix that lies.
            let mut b = input.to_vec();
            let n = header.len() as u64;
            let lies = [0, 1, n.saturating_sub(1), n + 1, u64::MAX, rng.next()];
            b[..8].copy_from_slice(&rng.pick(&lies).to_le_bytes());
            return b;
        }
        _ => return mutate_text(rng, input, dict),
    }
    [&(header.len() as u64).to_le_bytes()[..], header, &data].concat()
}

/// Opens the file, reads every tensor as stored and as f32, inspects it, and generates the MLP
/// over it: an error must name the file.
fn check_safetensors(dir: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join("mlp.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let weights = match Weights::open(&path) {
        Ok(w) => w,
        Err(e) => return names_a_file_in(dir, &e),
    };
    for name in weights.names() {
        let (_, shape, _) = weights.raw(&name).ok_or("a listed tensor cannot be read")?;
        if let Err(e) = weights.get(&name, &shape) {
            names_a_file_in(dir, &e)?;
        }
    }
    if let Err(e) = dynq_cli::inspect::inspect(&path) {
        return names_a_file_in(dir, &e);
    }
    match dynq_build::generate(
        &dir.join("model.toml"),
        &Options::default(),
        Placement::Relative,
    ) {
        Ok(_) => Ok(()),
        Err(e) => names_a_file_in(dir, &e),
    }
}

#[test]
fn fuzz_safetensors_reader() {
    let (dir, _) = model_dir();
    std::fs::write(
        dir.path().join("model.toml"),
        bad_cases::MLP_TOML.replace("tiny.safetensors", "mlp.safetensors"),
    )
    .unwrap();
    let mut half = mlp_tensors();
    half[0] = bad_cases::half(&half[0], "F16");
    half[2] = bad_cases::half(&half[2], "BF16");
    let seeds = vec![
        safetensors(&mlp_tensors()),
        safetensors(&half),
        safetensors(&rnn_tensors(4, 1, 1)),
        safetensors(&[]),
    ];
    let dict = dictionary(
        &seeds
            .iter()
            .filter_map(|s| split_safetensors(s))
            .map(|(h, _)| h.to_vec())
            .collect::<Vec<_>>(),
        &[
            "\"F16\"",
            "\"BF16\"",
            "\"F64\"",
            "\"I8\"",
            "\"U8\"",
            "\"BOOL\"",
            "\"F4\"",
            "\"F6_E2M3\"",
            "\"F8_E4M3\"",
            "\"I64\"",
            "\"C64\"",
            "\"__metadata__\"",
            "{\"a\":\"b\"}",
            "[]",
            "null",
            "\"dtype\"",
            "\"shape\"",
            "\"data_offsets\"",
        ],
    );
    fuzz(
        "safetensors",
        2000,
        &seeds,
        |rng, input| mutate_safetensors(rng, input, &dict),
        |input| check_safetensors(dir.path(), input),
    );
}

// ---- the standalone binaries' JSON lines -----------------------------------------------------

/// Serves `input` with each kind of model and parses it as GRU lines too: an error must name
/// its line.
fn check_lines(input: &[u8]) -> Result<(), String> {
    // Every input line is answered: a result, or an error object that names its line.
    let named = |r: Result<serve::Served, String>, out: &mut Vec<u8>| {
        let served = match r {
            Ok(s) => s,
            Err(e) if e.starts_with("line ") && e.len() > 8 => {
                note_rejected();
                return Ok(());
            }
            Err(e) => return Err(format!("error does not name the line: {e:?}")),
        };
        let text = String::from_utf8(std::mem::take(out))
            .map_err(|e| format!("output is not UTF-8: {e}"))?;
        let mut failed = 0;
        for l in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(l).map_err(|e| format!("output line {l:?}: {e}"))?;
            if let Some(e) = v.get("error") {
                let named = v["line"].as_u64().is_some_and(|n| n > 0)
                    && e.as_str().is_some_and(|e| !e.is_empty());
                if !named {
                    return Err(format!("error does not name the line: {l}"));
                }
                failed += 1;
            }
        }
        if failed != served.failed {
            return Err(format!(
                "{failed} error lines, {} failures counted",
                served.failed
            ));
        }
        if failed > 0 {
            note_rejected();
        }
        Ok(())
    };
    let mut out = Vec::new();
    named(
        serve::serve_dense(&GoldenMlp, &serve::ServeOptions::default(), input, &mut out),
        &mut out,
    )?;
    named(
        serve::serve_encoder(
            &TinyBertLogits,
            &serve::ServeOptions::default(),
            input,
            &mut out,
        ),
        &mut out,
    )?;
    named(
        serve::serve_recurrent(&Vowels, &serve::ServeOptions::default(), input, &mut out),
        &mut out,
    )?;
    let gru = RnnShape {
        cell: Cell::Gru,
        input_size: 12,
        hidden_size: 32,
        num_layers: 1,
        directions: 2,
        batch_first: true,
    };
    for line in String::from_utf8_lossy(input).lines() {
        let _ = serve::parse_recurrent_line(line, &gru);
    }
    Ok(())
}

fn numbers(n: usize, scale: f32) -> String {
    let v: Vec<String> = (0..n)
        .map(|i| format!("{}", (i as f32 * 0.37).sin() * scale))
        .collect();
    v.join(", ")
}

#[test]
fn fuzz_json_lines() {
    let rows = |n: usize| -> String {
        (0..n)
            .map(|_| format!("[{}]", numbers(12, 1.0)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let state = format!("[[{}], [{}]]", numbers(32, 0.5), numbers(32, 0.5));
    let seeds: Vec<Vec<u8>> = [
        format!("{{\"input\": [{}]}}\n", numbers(24, 2.0)),
        format!("{{\"input\": [{}]}}\n\n{{\"input\": [{}]}}\n", numbers(24, 1.0), numbers(24, 3.0)),
        "{\"input_ids\": [2, 17, 45, 3]}\n".into(),
        "{\"input_ids\": [2, 17, 45, 3, 0], \"attention_mask\": [1, 1, 1, 1, 0], \"token_type_ids\": [0, 0, 1, 1, 0]}\n".into(),
        "{\"text\": \"hello world\"}\n".into(),
        format!("{{\"input\": [{}]}}\n", rows(3)),
        format!("{{\"input\": [{}], \"h0\": {state}, \"c0\": {state}}}\n", rows(2)),
        format!("{{\"input\": [{}], \"h0\": {state}}}\n{{\"input\": [{}]}}\n", rows(1), rows(4)),
    ]
    .map(String::into_bytes)
    .to_vec();
    let dict = dictionary(
        &seeds,
        &[
            "null",
            "true",
            "{}",
            "[]",
            "[[]]",
            "\"\"",
            "\"input\"",
            "\"h0\"",
            "\"c0\"",
            "\"text\"",
            "\n",
            ":",
            ",",
            "\u{feff}",
            "\"\\ud800\"",
        ],
    );
    fuzz(
        "json-lines",
        5000,
        &seeds,
        |rng, input| mutate_text(rng, input, &dict),
        check_lines,
    );
}

/// Inputs the fuzzers found bugs with, kept as plain tests.
#[test]
fn regressions() {
    let (dir, _) = model_dir();
    let spec_cases = [
        // 4 x hidden_size overflowed in the GRU preset.
        "[model]\nname = \"tiny\"\npreset = \"gru\"\nweights = \"gru.safetensors\"\n\n[gru]\nprefix = \"rnn.\"\ninput_size = 3\nhidden_size = 18446744073709551615\nnum_layers = 2\nbidirectional = true\n",
    ];
    for text in spec_cases {
        check_spec(dir.path(), text.as_bytes()).unwrap();
    }
}
