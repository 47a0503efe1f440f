//! Sentence embeddings with all-MiniLM-L6-v2, compiled into this binary by `dynq_model!`.
//!
//! ```text
//! cargo run --release --example embed -- [TEXT ...]
//! cargo run --release --example embed -- --pairs ../shared/data/sts-test.tsv
//! cargo run --release --example embed --features f32-model -- --precision f32 [TEXT ...]
//! ```
//!
//! With TEXT arguments it embeds each; without, one sentence per line from stdin. It writes one
//! JSON array per input (384 floats, mean-pooled, L2-normalized) per line on stdout, in input
//! order. `--pairs FILE` reads `score<TAB>sentence1<TAB>sentence2` lines and prints the Spearman
//! correlation between the cosine similarities and the scores. `--precision f32` runs the
//! unquantized build of the same model, compiled in only with the `f32-model` feature: it
//! triples the binary (the f32 weights), and the INT8 build is what this example is for.
//!
//! A text longer than 256 tokens (what sentence-transformers keeps) is cut there with a warning
//! on stderr, or refused with `--no-truncate`; an input line over `--max-line-bytes` (1 MiB)
//! is refused. `--threads N` (or `DYNQ_THREADS`) sets the threads per forward; all cores
//! by default.
//!
//! `--bench S [--runs N]` times one forward on exactly S tokens (real sentences from the STS set
//! compiled into this binary, concatenated and cut) after 10 warm-up runs, and prints one JSON
//! line: `{"engine": "dynq", "variant": "int8", "seq_len": S, "threads": 1, "median_ms": ..,
//! "min_ms": ..}` (the format of `bench/peers.sh`).

use std::collections::HashMap;
use std::io::{BufRead, ErrorKind, Write};
use std::process::ExitCode;

use dynq_runtime::text::{Tokenizer, Truncate};

dynq_macros::dynq_model!("../models/minilm/minilm.toml");
#[cfg(feature = "f32-model")]
dynq_macros::dynq_model!("../models/minilm/minilm.toml", precision = "f32");

type Embedding = [f32; Minilm::OUTPUT_SIZE];

/// Tokens kept per text: sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2 (the
/// model itself accepts up to `minilm::MAX_SEQ_LEN` = 512, which `--bench` uses).
const TRUNCATE_AT: usize = 256;

/// Which build of the model runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Precision {
    Int8,
    /// Only in binaries built with `--features f32-model`.
    #[cfg(feature = "f32-model")]
    F32,
}

impl Precision {
    /// `--precision`'s value; `f32` is an error in a binary built without the f32 model.
    fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            Some("int8") => Ok(Precision::Int8),
            #[cfg(feature = "f32-model")]
            Some("f32") => Ok(Precision::F32),
            #[cfg(not(feature = "f32-model"))]
            Some("f32") => Err(
                "--precision f32: this binary was built without the f32 model; \
                 rebuild with `--features f32-model` (cargo run --release --example embed \
                 --features f32-model -- --precision f32 ...)"
                    .into(),
            ),
            other => Err(format!(
                "--precision: expected int8 or f32, found {other:?}"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Precision::Int8 => "int8",
            #[cfg(feature = "f32-model")]
            Precision::F32 => "f32",
        }
    }

    /// Runs the model of this precision on one sequence.
    fn embed(self, ids: &[u32]) -> Result<Embedding, dynq_runtime::Error> {
        match self {
            Precision::Int8 => Minilm.embed(ids),
            #[cfg(feature = "f32-model")]
            Precision::F32 => MinilmF32.embed(ids),
        }
    }
}

struct Embedder {
    tokenizer: Tokenizer,
    precision: Precision,
    /// Refuse texts over TRUNCATE_AT tokens instead of cutting them.
    no_truncate: bool,
}

impl Embedder {
    fn new(precision: Precision, no_truncate: bool) -> Result<Self, String> {
        let json = minilm::TOKENIZER_JSON.ok_or("the model was generated without a tokenizer")?;
        // Padding off whatever tokenizer.json says (the shipped one pads to 128).
        let tokenizer = Tokenizer::new(json, minilm::MAX_SEQ_LEN).map_err(|e| e.to_string())?;
        Ok(Embedder {
            tokenizer,
            precision,
            no_truncate,
        })
    }

    /// Token ids of `text`, cut at TRUNCATE_AT tokens with a warning (or refused).
    fn ids(&self, text: &str) -> Result<Vec<u32>, String> {
        let t = self
            .tokenizer
            .encode(text, Truncate::At(TRUNCATE_AT))
            .map_err(|e| format!("{}: {e}", preview(text)))?;
        if t.truncated {
            if self.no_truncate {
                return Err(format!(
                    "{}: longer than {TRUNCATE_AT} tokens (--no-truncate)",
                    preview(text)
                ));
            }
            eprintln!(
                "warning: {}: truncated to {TRUNCATE_AT} tokens",
                preview(text)
            );
        }
        Ok(t.ids)
    }

    fn embed(&self, text: &str) -> Result<Embedding, String> {
        let ids = self.ids(text)?;
        self.precision
            .embed(&ids)
            .map_err(|e| format!("{}: {e}", preview(text)))
    }
}

/// The start of a text, for messages.
fn preview(text: &str) -> String {
    let cut: String = text.chars().take(40).collect();
    if cut.len() < text.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

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

/// Ranks with ties averaged (1-based).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation.
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

fn pairs(e: &Embedder, path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("{path}: {err}"))?;
    let mut cache: HashMap<String, Embedding> = HashMap::new();
    let (mut gold, mut cos) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut f = line.splitn(3, '\t');
        let (Some(score), Some(s1), Some(s2)) = (f.next(), f.next(), f.next()) else {
            return Err(format!(
                "{path}:{}: expected score<TAB>sentence1<TAB>sentence2",
                n + 1
            ));
        };
        let score: f64 = score
            .trim()
            .parse()
            .map_err(|_| format!("{path}:{}: score {score:?} is not a number", n + 1))?;
        let mut get = |s: &str| -> Result<Embedding, String> {
            if let Some(v) = cache.get(s) {
                return Ok(*v);
            }
            let v = e.embed(s)?;
            cache.insert(s.to_string(), v);
            Ok(v)
        };
        let (a, b) = (get(s1)?, get(s2)?);
        gold.push(score);
        cos.push(cosine(&a, &b));
    }
    if gold.len() < 2 {
        return Err(format!("{path}: fewer than two pairs"));
    }
    println!(
        "spearman: {:.2} ({} pairs, {} sentences, precision {})",
        100.0 * spearman(&cos, &gold),
        gold.len(),
        cache.len(),
        e.precision.name()
    );
    Ok(())
}

/// Token ids of exactly `len` tokens: [CLS], word pieces of real sentences, [SEP].
fn bench_ids(e: &Embedder, len: usize) -> Result<Vec<u32>, String> {
    const TEXT: &str = "A man is playing a guitar on a stage while a crowd of people watches him. \
        The stock market fell sharply on Tuesday after the central bank raised interest rates again. \
        Three children are building a sandcastle on the beach near the old lighthouse. \
        Scientists have discovered a new species of frog in the rainforests of South America. ";
    let sentence = e
        .tokenizer
        .encode(TEXT, Truncate::Refuse)
        .map_err(|err| err.to_string())?
        .ids;
    let (cls, sep, words) = match sentence.as_slice() {
        [cls, words @ .., sep] => (*cls, *sep, words),
        _ => return Err("the tokenizer adds no special tokens".into()),
    };
    let mut ids = vec![cls];
    ids.extend(words.iter().cycle().take(len.saturating_sub(2)));
    ids.push(sep);
    ids.truncate(len);
    Ok(ids)
}

fn bench(e: &Embedder, len: usize, runs: usize) -> Result<(), String> {
    if len == 0 || len > minilm::MAX_SEQ_LEN {
        return Err(format!(
            "--bench: expected 1 to {} tokens, found {len}",
            minilm::MAX_SEQ_LEN
        ));
    }
    let ids = bench_ids(e, len)?;
    let run = |ids: &[u32]| e.precision.embed(ids);
    for _ in 0..10 {
        std::hint::black_box(run(&ids).map_err(|err| err.to_string())?);
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = std::time::Instant::now();
        std::hint::black_box(run(std::hint::black_box(&ids)).map_err(|err| err.to_string())?);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"engine\": \"dynq\", \"variant\": \"{}\", \"seq_len\": {len}, \"threads\": {}, \"median_ms\": {:.4}, \"min_ms\": {:.4}, \"kernel\": \"{}\"}}",
        e.precision.name(),
        dynq_runtime::kernels::threads(),
        times[times.len() / 2],
        times[0],
        dynq_runtime::selected_kernel().map_err(|err| err.to_string())?.name()
    );
    Ok(())
}

fn print_embedding(out: &mut impl Write, v: &[f32]) -> std::io::Result<()> {
    let mut line = String::with_capacity(v.len() * 12);
    line.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&x.to_string());
    }
    line.push(']');
    writeln!(out, "{line}")
}

/// How the program stopped early.
enum Stop {
    Failed(String),
    /// stdout's reader went away (`embed ... | head -1`): not an error.
    ClosedPipe,
}

impl From<String> for Stop {
    fn from(e: String) -> Self {
        Stop::Failed(e)
    }
}

fn write_err(err: std::io::Error) -> Stop {
    if err.kind() == ErrorKind::BrokenPipe {
        Stop::ClosedPipe
    } else {
        Stop::Failed(format!("stdout: {err}"))
    }
}

/// The next line of `input`, refused when longer than `limit` bytes (without reading more
/// than that of it).
fn next_line(input: &mut impl BufRead, limit: usize, n: usize) -> Result<Option<String>, String> {
    let mut buf = Vec::new();
    match dynq_runtime::serve::read_line_limited(input, limit, &mut buf) {
        Err(err) => Err(format!("stdin: {err}")),
        Ok(None) => Ok(None),
        Ok(Some(true)) => Err(format!(
            "stdin line {n}: longer than {limit} bytes; split it or raise --max-line-bytes"
        )),
        Ok(Some(false)) => String::from_utf8(buf)
            .map(Some)
            .map_err(|_| format!("stdin line {n}: not UTF-8 text")),
    }
}

fn parse_count(flag: &str, v: Option<String>) -> Result<usize, String> {
    let v = v.ok_or(format!("{flag} needs a number"))?;
    v.parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or(format!("{flag}: {v:?} is not a positive number"))
}

const USAGE: &str =
    "usage: embed [--precision int8|f32] [--threads N] [--no-truncate] [--max-line-bytes N]
             [--pairs FILE | --bench SEQ_LEN [--runs N]] [TEXT ...]

Embeds each TEXT (or each line of stdin) with all-MiniLM-L6-v2: one JSON array per line.
  --precision int8|f32   the INT8 build (default) or the f32 one (needs --features f32-model)
  --threads N            threads per forward (default: DYNQ_THREADS, else all cores)
  --no-truncate          refuse texts over 256 tokens instead of truncating them
  --max-line-bytes N     refuse stdin lines longer than N bytes (default 1048576)
  --pairs FILE           STS Spearman of score<TAB>sentence1<TAB>sentence2 lines
  --bench SEQ_LEN        time one forward on SEQ_LEN tokens (--runs N, default 50)";

fn run() -> Result<(), Stop> {
    let mut precision = Precision::Int8;
    let mut pairs_file = None;
    let (mut bench_len, mut runs) = (None, 50usize);
    let (mut no_truncate, mut max_line) = (false, 1usize << 20);
    let mut texts = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--precision" => precision = Precision::parse(args.next().as_deref())?,
            "--pairs" => pairs_file = Some(args.next().ok_or("--pairs needs a file".to_string())?),
            "--bench" => bench_len = Some(parse_count("--bench", args.next())?),
            "--runs" => runs = parse_count("--runs", args.next())?,
            "--threads" => {
                let n = parse_count("--threads", args.next())?;
                dynq_runtime::set_threads(n).map_err(|e| format!("--threads: {e}"))?;
            }
            "--no-truncate" => no_truncate = true,
            "--max-line-bytes" => max_line = parse_count("--max-line-bytes", args.next())?,
            "-h" | "--help" => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{USAGE}").map_err(write_err)?;
                if !cfg!(feature = "f32-model") {
                    writeln!(out, "(this binary was built without --features f32-model)")
                        .map_err(write_err)?;
                }
                return Ok(());
            }
            _ => texts.push(a),
        }
    }
    let e = Embedder::new(precision, no_truncate)?;
    if let Some(len) = bench_len {
        return Ok(bench(&e, len, runs)?);
    }
    if let Some(path) = pairs_file {
        return Ok(pairs(&e, &path)?);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if texts.is_empty() {
        let mut input = std::io::stdin().lock();
        for n in 1.. {
            let Some(line) = next_line(&mut input, max_line, n)? else {
                break;
            };
            print_embedding(&mut out, &e.embed(&line)?).map_err(write_err)?;
        }
    } else {
        for t in &texts {
            print_embedding(&mut out, &e.embed(t)?).map_err(write_err)?;
        }
    }
    out.flush().map_err(write_err)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) | Err(Stop::ClosedPipe) => ExitCode::SUCCESS,
        Err(Stop::Failed(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
