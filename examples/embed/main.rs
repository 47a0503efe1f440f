//! Sentence embeddings with all-MiniLM-L6-v2, compiled into this binary by `dynq_model!`.
//!
//! ```text
//! cargo run --release --example embed -- [TEXT ...]
//! cargo run --release --example embed -- < corpus.txt > embeddings.jsonl
//! cargo run --release --example embed -- --pairs ../shared/data/sts-test.tsv
//! cargo run --release --example embed -- --bench-corpus corpus.txt
//! cargo run --release --example embed --features f32-model -- --precision f32 [TEXT ...]
//! ```
//!
//! With TEXT arguments it embeds each; without, one text per line from stdin. It writes one
//! JSON array per input (384 floats, mean-pooled, L2-normalized) per line on stdout, in input
//! order. Stdin is read on a thread of its own and run as ragged batches of up to
//! `--batch-tokens` tokens (512 by default; 1 runs one text at a time) of whatever lines have
//! arrived, so output starts before the input ends and memory stays bounded by the budget. A
//! text's embedding is bit-identical whatever batch it runs in. When stdin is a file and
//! stderr a terminal, a progress bar runs on stderr. A line that cannot be embedded (not UTF-8,
//! over `--max-line-bytes`, over 256 tokens with `--no-truncate`) gets
//! `{"line": N, "error": "..."}` in its place on stdout and `embed: line N: ...` on stderr; the
//! other lines go on, and the exit status is 1 at the end.
//!
//! `--pairs FILE` reads `score<TAB>sentence1<TAB>sentence2` lines and prints the Spearman
//! correlation between the cosine similarities and the scores. `--precision f32` runs the
//! unquantized build of the same model, compiled in only with the `f32-model` feature: it
//! triples the binary (the f32 weights), and the INT8 build is what this example is for.
//!
//! A text longer than 256 tokens (what sentence-transformers keeps) is cut there with a warning
//! on stderr, or refused with `--no-truncate`; an input line over `--max-line-bytes` (1 MiB)
//! is refused. `--threads N` (or `DYNQ_THREADS`) sets the threads per forward; all cores
//! by default.
//!
//! `--bench-corpus FILE` embeds every non-blank line of FILE in batches of `--batch-tokens`
//! (tokenization included, after a short warm-up) and prints one JSON line: `{"engine": "dynq",
//! "variant": "int8", "corpus", "threads", "batch_tokens", "sentences", "tokens", "seconds",
//! "sentences_per_s", "tokens_per_s", "truncation": 256, "kernel"}` (what `bench/corpus.sh`
//! reads).
//!
//! `--bench S [--runs N]` times one forward on exactly S tokens (real sentences from the STS set
//! compiled into this binary, concatenated and cut) after 10 warm-up runs, and prints one JSON
//! line: `{"engine": "dynq", "variant": "int8", "seq_len": S, "threads": 1, "median_ms": ..,
//! "min_ms": ..}` (the format of `bench/peers.sh`).
//!
//! `--profile S [--runs N]` prints where a forward on S tokens spends its time, op by op (see
//! `dynq_runtime::profile`): time, share, rate reached and this machine's limit for each op,
//! and the forward's total beside the sum of the limits.

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use dynq_runtime::serve::{Parsed, ServeOptions};
use dynq_runtime::text::{Tokenizer, Truncate};
use dynq_runtime::BertInput;

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

    /// Runs `inputs` as one ragged batch: each input's embedding, or why it failed (an input
    /// the batch refuses is set aside and the others still run).
    fn embed_each(self, inputs: &[BertInput<'_>]) -> Vec<Result<Vec<f32>, String>> {
        match self {
            Precision::Int8 => dynq_runtime::serve::forward_each(&Minilm, inputs),
            #[cfg(feature = "f32-model")]
            Precision::F32 => dynq_runtime::serve::forward_each(&MinilmF32, inputs),
        }
    }

    /// `--profile`: the per-op table of a forward on `len` tokens.
    fn profile(self, len: usize, runs: usize) -> Result<String, dynq_runtime::Error> {
        use dynq_runtime::profile::encoder;
        match self {
            Precision::Int8 => encoder(&Minilm, len, runs).map(|p| p.to_string()),
            #[cfg(feature = "f32-model")]
            Precision::F32 => encoder(&MinilmF32, len, runs).map(|p| p.to_string()),
        }
    }

    /// `--bench-corpus`: times the model of this precision over the lines of `path`.
    fn bench_corpus(
        self,
        path: &std::path::Path,
        truncate: Truncate,
        batch_tokens: usize,
    ) -> Result<dynq_runtime::serve::CorpusBench, String> {
        use dynq_runtime::serve::bench_corpus;
        match self {
            Precision::Int8 => bench_corpus(&Minilm, path, truncate, batch_tokens),
            #[cfg(feature = "f32-model")]
            Precision::F32 => bench_corpus(&MinilmF32, path, truncate, batch_tokens),
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

    /// One stdin line for the batch runner: its token ids (a blank line is embedded too, as
    /// `[CLS] [SEP]`, so that output line N always answers input line N), with a warning when
    /// it was cut at TRUNCATE_AT tokens, or the reason it is refused.
    fn parse(&self, text: &str) -> Result<Option<Parsed<Vec<u32>>>, String> {
        let t = self
            .tokenizer
            .encode(text, Truncate::At(TRUNCATE_AT))
            .map_err(|e| e.to_string())?;
        let warning = if t.truncated {
            if self.no_truncate {
                return Err(format!("longer than {TRUNCATE_AT} tokens (--no-truncate)"));
            }
            Some(format!("truncated to {TRUNCATE_AT} tokens"))
        } else {
            None
        };
        Ok(Some(Parsed {
            tokens: t.ids.len(),
            value: t.ids,
            warning,
        }))
    }

    /// Embeds token-id sequences as one ragged batch: each one's output line (a JSON array),
    /// or why it failed.
    fn run(&self, ids: &[&Vec<u32>]) -> Vec<Result<String, String>> {
        let inputs: Vec<BertInput<'_>> = ids
            .iter()
            .map(|ids| BertInput::new(ids.as_slice()))
            .collect();
        self.precision
            .embed_each(&inputs)
            .into_iter()
            .map(|r| r.map(|v| embedding_line(&v)))
            .collect()
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

fn bench(e: &Embedder, len: usize, runs: usize) -> Result<(), Stop> {
    if len == 0 || len > minilm::MAX_SEQ_LEN {
        return Err(Stop::Failed(format!(
            "--bench: expected 1 to {} tokens, found {len}",
            minilm::MAX_SEQ_LEN
        )));
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
    writeln!(
        std::io::stdout(),
        "{{\"engine\": \"dynq\", \"variant\": \"{}\", \"seq_len\": {len}, \"threads\": {}, \"median_ms\": {:.4}, \"min_ms\": {:.4}, \"kernel\": \"{}\"}}",
        e.precision.name(),
        dynq_runtime::threads::count(),
        times[times.len() / 2],
        times[0],
        dynq_runtime::selected_kernel().map_err(|err| err.to_string())?.name()
    )
    .map_err(write_err)
}

/// One embedding as a JSON array of floats (shortest round-trip form).
fn embedding_line(v: &[f32]) -> String {
    let mut line = String::with_capacity(v.len() * 12);
    line.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&x.to_string());
    }
    line.push(']');
    line
}

/// `--bench-corpus FILE`: one JSON line of sentences/s and tokens/s.
fn bench_corpus(e: &Embedder, path: &str, batch_tokens: usize) -> Result<(), Stop> {
    let truncate = if e.no_truncate {
        Truncate::Refuse
    } else {
        Truncate::At(TRUNCATE_AT)
    };
    let b = e
        .precision
        .bench_corpus(std::path::Path::new(path), truncate, batch_tokens)?;
    let mut line: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&b.to_json("dynq", e.precision.name()))
            .map_err(|err| format!("--bench-corpus: {err}"))?;
    line.insert("truncation".into(), TRUNCATE_AT.into());
    let kernel = dynq_runtime::selected_kernel().map_err(|err| err.to_string())?;
    line.insert("kernel".into(), kernel.name().into());
    writeln!(std::io::stdout(), "{}", serde_json::Value::Object(line)).map_err(write_err)
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

fn parse_count(flag: &str, v: Option<String>) -> Result<usize, String> {
    let v = v.ok_or(format!("{flag} needs a number"))?;
    v.parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or(format!("{flag}: {v:?} is not a positive number"))
}

const USAGE: &str =
    "usage: embed [--precision int8|f32] [--threads N] [--no-truncate] [--max-line-bytes N]
             [--batch-tokens N] [--pairs FILE | --bench SEQ_LEN [--runs N] |
             --profile SEQ_LEN [--runs N] | --bench-corpus FILE] [TEXT ...]

Embeds each TEXT (or each line of stdin) with all-MiniLM-L6-v2: one JSON array per line.
  --precision int8|f32   the INT8 build (default) or the f32 one (needs --features f32-model)
  --threads N            threads per forward (default: DYNQ_THREADS, else all cores)
  --no-truncate          refuse texts over 256 tokens instead of truncating them
  --max-line-bytes N     refuse stdin lines longer than N bytes (default 1048576)
  --batch-tokens N       run the texts at hand as ragged batches of up to N tokens (default
                         512; 1: one at a time); embeddings do not depend on it
  --pairs FILE           STS Spearman of score<TAB>sentence1<TAB>sentence2 lines
  --bench SEQ_LEN        time one forward on SEQ_LEN tokens (--runs N, default 50)
  --profile SEQ_LEN      where a forward on SEQ_LEN tokens spends its time, op by op, beside
                         this machine's limit for each op (--runs N, default 50)
  --bench-corpus FILE    embed every line of FILE in batches, print sentences/s and tokens/s";

/// Embeds the TEXT arguments in token-budgeted batches and writes one line each: its
/// embedding, or `{"argument": N, "error": "..."}` (also on stderr). Returns how many failed.
fn embed_args(
    e: &Embedder,
    texts: &[String],
    batch_tokens: usize,
    out: &mut impl Write,
) -> Result<usize, Stop> {
    let parsed: Vec<Result<Vec<u32>, String>> = texts.iter().map(|t| e.ids(t)).collect();
    let ok: Vec<&Vec<u32>> = parsed.iter().filter_map(|p| p.as_ref().ok()).collect();
    let inputs: Vec<BertInput<'_>> = ok.iter().map(|ids| BertInput::new(ids)).collect();
    let mut results = Vec::with_capacity(ok.len());
    for (_, chunk) in dynq_runtime::batches(&inputs, batch_tokens) {
        results.extend(e.precision.embed_each(chunk));
    }
    let mut results = results.into_iter();
    let mut failed = 0;
    for (n, (text, p)) in texts.iter().zip(&parsed).enumerate() {
        let r = match p {
            Ok(_) => results
                .next()
                .unwrap_or_else(|| Err("the model returned no result".into()))
                .map_err(|err| format!("{}: {err}", preview(text))),
            Err(err) => Err(err.clone()),
        };
        let line = match r {
            Ok(v) => embedding_line(&v),
            Err(err) => {
                failed += 1;
                eprintln!("embed: argument {}: {err}", n + 1);
                serde_json::json!({"argument": n + 1, "error": err}).to_string()
            }
        };
        writeln!(out, "{line}").map_err(write_err)?;
    }
    Ok(failed)
}

/// Embeds stdin, one text per line, in token-budgeted batches (see the crate docs). Returns
/// how many lines failed and how many there were.
fn embed_stdin(e: &Embedder, options: &ServeOptions) -> Result<(usize, usize), Stop> {
    let input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin());
    let served = dynq_runtime::serve::serve_batched(
        "embed",
        options,
        input,
        std::io::stdout().lock(),
        |_, line| e.parse(line),
        |ids| e.run(ids),
    )?;
    Ok((served.failed, served.answered + served.failed))
}

fn run() -> Result<(), Stop> {
    let mut precision = Precision::Int8;
    let mut pairs_file = None;
    let mut corpus = None;
    let (mut bench_len, mut runs) = (None, 50usize);
    let mut profile_len = None;
    let (mut no_truncate, mut max_line) = (false, 1usize << 20);
    let mut batch_tokens = dynq_runtime::BATCH_TOKENS;
    let mut texts = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--precision" => precision = Precision::parse(args.next().as_deref())?,
            "--pairs" => pairs_file = Some(args.next().ok_or("--pairs needs a file".to_string())?),
            "--bench" => bench_len = Some(parse_count("--bench", args.next())?),
            "--profile" => profile_len = Some(parse_count("--profile", args.next())?),
            "--bench-corpus" => {
                corpus = Some(
                    args.next()
                        .ok_or("--bench-corpus needs a file".to_string())?,
                )
            }
            "--runs" => runs = parse_count("--runs", args.next())?,
            "--batch-tokens" => batch_tokens = parse_count("--batch-tokens", args.next())?,
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
            flag if flag.starts_with("--") => {
                return Err(Stop::Failed(format!(
                    "unknown flag {flag:?} (--help lists them; a text that starts with \"--\" \
                     goes on stdin)"
                )))
            }
            _ => texts.push(a),
        }
    }
    if let Some(len) = profile_len {
        let table = precision
            .profile(len, runs)
            .map_err(|err| format!("--profile {len}: {err}"))?;
        return write!(std::io::stdout(), "{table}").map_err(write_err);
    }
    let e = Embedder::new(precision, no_truncate)?;
    if let Some(len) = bench_len {
        return bench(&e, len, runs);
    }
    if let Some(path) = corpus {
        return bench_corpus(&e, &path, batch_tokens);
    }
    if let Some(path) = pairs_file {
        return Ok(pairs(&e, &path)?);
    }
    let (failed, total) = if texts.is_empty() {
        let options = ServeOptions {
            max_line_bytes: max_line,
            no_truncate,
            batch_tokens,
            progress_bytes: dynq_runtime::serve::progress_total(),
        };
        embed_stdin(&e, &options)?
    } else {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let failed = embed_args(&e, &texts, batch_tokens, &mut out)?;
        out.flush().map_err(write_err)?;
        (failed, texts.len())
    };
    if failed > 0 {
        return Err(Stop::Failed(format!(
            "{failed} of {total} inputs failed (each reported above and by an {{\"error\"}} \
             line in its place on stdout)"
        )));
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) | Err(Stop::ClosedPipe) => ExitCode::SUCCESS,
        Err(Stop::Failed(e)) => {
            eprintln!("embed: {e}");
            ExitCode::FAILURE
        }
    }
}
