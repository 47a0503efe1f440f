//! JSON-lines driver for standalone binaries (feature `serve`).
//!
//! One JSON object per input line, one per output line, in order; an encoder runs the lines at
//! hand as ragged batches (see [`serve_batched`]). A bad line gets an `{"line": N, "error":
//! "..."}` object in its place and a message naming it on stderr; the other lines go on, and
//! the exit status is non-zero at the end; nothing panics. A line longer than
//! [`ServeOptions::max_line_bytes`] is refused without being read into memory whole, and a
//! reader that closes the output (`... | head`) ends the run quietly.

use std::io::{BufRead, ErrorKind, Write};
use std::process::ExitCode;

use serde_json::{Map, Value};

use crate::DenseModel;

/// Parses one input line of a dense model: `{"input": [f32; INPUT_SIZE]}`.
///
/// ```
/// let row = dynq_runtime::serve::parse_dense_line(r#"{"input": [1, 2.5]}"#, 2).unwrap();
/// assert_eq!(row, [1.0, 2.5]);
/// let e = dynq_runtime::serve::parse_dense_line(r#"{"input": [1]}"#, 2).unwrap_err();
/// assert_eq!(e, "`input`: expected 2 numbers, found 1");
/// ```
pub fn parse_dense_line(line: &str, width: usize) -> Result<Vec<f32>, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err(format!(
            "expected a JSON object like {{\"input\": [{width} numbers]}}, found {}",
            kind(&value)
        ));
    };
    if let Some(k) = map.keys().find(|k| *k != "input") {
        return Err(format!("unknown key `{k}`, expected `input`"));
    }
    let Some(input) = map.get("input") else {
        return Err(format!("missing key `input` ({width} numbers)"));
    };
    float_row(input, "`input`", width)
}

/// One row of `width` finite f32 values; `what` names it in errors (`` `input`[3] ``).
fn float_row(v: &Value, what: &str, width: usize) -> Result<Vec<f32>, String> {
    let Value::Array(items) = v else {
        return Err(format!(
            "{what}: expected an array of {width} numbers, found {}",
            kind(v)
        ));
    };
    if items.len() != width {
        return Err(format!(
            "{what}: expected {width} numbers, found {}",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v.as_f64() {
            Some(x) if (x as f32).is_finite() => Ok(x as f32),
            Some(x) => Err(format!("{what}[{i}]: {x} does not fit in f32")),
            None => Err(format!("{what}[{i}]: expected a number, found {}", kind(v))),
        })
        .collect()
}

/// A matrix of rows of `width` values, flattened; `rows` fixes the row count when known.
fn float_matrix(
    v: &Value,
    key: &str,
    rows: Option<usize>,
    width: usize,
) -> Result<(Vec<f32>, usize), String> {
    let Value::Array(items) = v else {
        return Err(format!(
            "`{key}`: expected an array of rows of {width} numbers, found {}",
            kind(v)
        ));
    };
    if let Some(r) = rows {
        if items.len() != r {
            return Err(format!(
                "`{key}`: expected {r} rows of {width} numbers, found {} rows",
                items.len()
            ));
        }
    }
    let mut flat = Vec::with_capacity(items.len() * width);
    for (i, row) in items.iter().enumerate() {
        flat.extend(float_row(row, &format!("`{key}`[{i}]"), width)?);
    }
    Ok((flat, items.len()))
}

/// One input line of a recurrent model, parsed (see [`parse_recurrent_line`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RecurrentLine {
    /// `steps * input_size` values.
    pub input: Vec<f32>,
    /// Time steps.
    pub steps: usize,
    /// Initial hidden state, `[layers * directions][hidden]` flattened.
    pub h0: Option<Vec<f32>>,
    /// Initial cell state (LSTM).
    pub c0: Option<Vec<f32>>,
}

/// Parses one input line of a recurrent model with PyTorch's unbatched shapes:
/// `{"input": [[f32; input_size]; steps], "h0": [[f32; hidden]; layers * directions],
/// "c0": ...}` (`h0` and `c0` optional, `c0` for LSTM only).
///
/// ```
/// use dynq_runtime::ops::rnn::{Cell, RnnShape};
/// let shape = RnnShape { cell: Cell::Gru, input_size: 2, hidden_size: 1, num_layers: 1,
///     directions: 1, batch_first: true };
/// let l = dynq_runtime::serve::parse_recurrent_line(r#"{"input": [[1, 2], [3, 4]]}"#, &shape).unwrap();
/// assert_eq!((l.steps, l.input), (2, vec![1.0, 2.0, 3.0, 4.0]));
/// let e = dynq_runtime::serve::parse_recurrent_line(r#"{"input": [[1, 2], [3]]}"#, &shape).unwrap_err();
/// assert_eq!(e, "`input`[1]: expected 2 numbers, found 1");
/// ```
pub fn parse_recurrent_line(
    line: &str,
    shape: &crate::ops::rnn::RnnShape,
) -> Result<RecurrentLine, String> {
    use crate::ops::rnn::Cell;
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err(format!(
            "expected a JSON object like {{\"input\": [[{} numbers], ...]}}, found {}",
            shape.input_size,
            kind(&value)
        ));
    };
    let keys: &[&str] = match shape.cell {
        Cell::Lstm => &["input", "h0", "c0"],
        Cell::Gru => &["input", "h0"],
    };
    if let Some(k) = map.keys().find(|k| !keys.contains(&k.as_str())) {
        let hint = if k == "c0" {
            " (a GRU has no cell state)"
        } else {
            ""
        };
        return Err(format!(
            "unknown key `{k}`{hint}, expected {}",
            keys.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let input = map.get("input").ok_or_else(|| {
        format!(
            "missing key `input` (an array of steps, each {} numbers)",
            shape.input_size
        )
    })?;
    let (input, steps) = float_matrix(input, "input", None, shape.input_size)?;
    if steps == 0 {
        return Err("`input`: the sequence is empty; it needs at least one step".into());
    }
    let states = shape.num_layers * shape.directions;
    let state = |key: &str| {
        map.get(key)
            .map(|v| float_matrix(v, key, Some(states), shape.hidden_size).map(|(s, _)| s))
            .transpose()
    };
    Ok(RecurrentLine {
        input,
        steps,
        h0: state("h0")?,
        c0: state("c0")?,
    })
}

/// Formats one recurrent result as `{"output": [[...], ...], "h_n": [[...], ...],
/// "c_n": [[...], ...]}` (`c_n` for LSTM only), rows as PyTorch shapes them for one sequence.
///
/// ```
/// let line = dynq_runtime::serve::format_recurrent_output(&[0.5, -1.0], 1, &[0.25], &[], 1);
/// assert_eq!(line, r#"{"h_n":[[0.25]],"output":[[0.5],[-1.0]]}"#);
/// ```
pub fn format_recurrent_output(
    output: &[f32],
    output_size: usize,
    h_n: &[f32],
    c_n: &[f32],
    hidden: usize,
) -> String {
    let rows = |v: &[f32], w: usize| Value::Array(v.chunks(w).map(floats).collect());
    let mut map = Map::new();
    map.insert("output".into(), rows(output, output_size));
    map.insert("h_n".into(), rows(h_n, hidden));
    if !c_n.is_empty() {
        map.insert("c_n".into(), rows(c_n, hidden));
    }
    Value::Object(map).to_string()
}

/// Serves a recurrent model over `input`/`output`, one sequence per line (see
/// [`serve_batched`] for what a bad line does).
pub fn serve_recurrent<M: crate::RecurrentModel>(
    model: &M,
    options: &ServeOptions,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Served, String> {
    serve_lines(M::NAME, options, input, output, |line| {
        recurrent_line(model, line)
    })
}

/// Runs one input line of a recurrent model (see [`parse_recurrent_line`]) and returns its
/// output line (see [`format_recurrent_output`]), or what was wrong.
pub fn recurrent_line<M: crate::RecurrentModel>(model: &M, line: &str) -> Result<String, String> {
    let shape = M::SHAPE;
    let state = shape.state_len(1);
    let cell_state = match shape.cell {
        crate::ops::rnn::Cell::Lstm => state,
        crate::ops::rnn::Cell::Gru => 0,
    };
    let l = parse_recurrent_line(line, &shape)?;
    let mut out = vec![0.0f32; l.steps * shape.output_size()];
    let (mut h_n, mut c_n) = (vec![0.0f32; state], vec![0.0f32; cell_state]);
    let x = crate::RnnInput {
        input: &l.input,
        steps: l.steps,
        batch: 1,
        h0: l.h0.as_deref(),
        c0: l.c0.as_deref(),
    };
    let out_refs = crate::RnnOutput {
        output: &mut out,
        h_n: &mut h_n,
        c_n: &mut c_n,
    };
    model.forward(&x, out_refs).map_err(|e| e.to_string())?;
    Ok(format_recurrent_output(
        &out,
        shape.output_size(),
        &h_n,
        &c_n,
        shape.hidden_size,
    ))
}

/// How a server reads its input: the flags every standalone binary takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// The longest input line accepted, in bytes (`--max-line-bytes`); a longer line is an
    /// error that names it, found without holding more than this many bytes of it.
    pub max_line_bytes: usize,
    /// Refuse a text longer than the model's `max_seq_len` tokens (`--no-truncate`) instead of
    /// cutting it there (reported by `"truncated": true` and a warning on stderr).
    pub no_truncate: bool,
    /// Token budget of a batch (`--batch-tokens`): an encoder server runs the lines that have
    /// arrived as ragged batches of up to this many tokens (a longer line runs alone; 1 runs
    /// one line at a time). Results do not depend on it.
    pub batch_tokens: usize,
    /// Draw a progress bar on stderr over this many bytes of input (set by the standalone
    /// `main` when stdin is a file and stderr a terminal).
    pub progress_bytes: Option<u64>,
}

/// [`ServeOptions::max_line_bytes`]' default: 1 MiB (`--max-line-bytes`' default, 1048576).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            no_truncate: false,
            batch_tokens: crate::BATCH_TOKENS,
            progress_bytes: None,
        }
    }
}

/// Reads the next line (without its `\n` or `\r\n`) into `buf`, at most `limit` bytes of it:
/// `Ok(None)` at the end of the input, `Ok(Some(false))` for a line that fits, and
/// `Ok(Some(true))` for a longer one, whose rest is skipped unread into memory.
///
/// ```
/// use dynq_runtime::serve::read_line_limited;
/// let mut input = &b"short\r\nmuch too long\nok"[..];
/// let mut buf = Vec::new();
/// assert_eq!(read_line_limited(&mut input, 5, &mut buf).unwrap(), Some(false));
/// assert_eq!(buf, b"short");
/// assert_eq!(read_line_limited(&mut input, 5, &mut buf).unwrap(), Some(true));
/// assert_eq!(read_line_limited(&mut input, 5, &mut buf).unwrap(), Some(false));
/// assert_eq!(buf, b"ok");
/// assert_eq!(read_line_limited(&mut input, 5, &mut buf).unwrap(), None);
/// ```
pub fn read_line_limited(
    input: &mut impl BufRead,
    limit: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(2);
    if std::io::Read::take(&mut *input, cap).read_until(b'\n', buf)? == 0 {
        return Ok(None);
    }
    let ended = buf.last() == Some(&b'\n');
    if ended {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.len() <= limit {
        return Ok(Some(false));
    }
    if !ended {
        // Skip the rest of the overlong line, a buffer at a time.
        loop {
            let chunk = input.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(p) => {
                    input.consume(p + 1);
                    break;
                }
                None => {
                    let n = chunk.len();
                    input.consume(n);
                }
            }
        }
    }
    Ok(Some(true))
}

/// What a server run did: inputs answered, and inputs refused (each reported on stderr and by
/// an `{"line": N, "error": "..."}` object in its place on stdout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Input lines answered with a result.
    pub answered: usize,
    /// Input lines answered with an error.
    pub failed: usize,
}

/// One input line, parsed by [`serve_batched`]'s reader.
#[derive(Debug)]
pub struct Parsed<T> {
    /// What the batch runner gets.
    pub value: T,
    /// Its size against [`ServeOptions::batch_tokens`] (tokens for an encoder, 1 for a model
    /// that runs one input at a time).
    pub tokens: usize,
    /// A warning for stderr, printed in input order with the line number (a truncated text).
    pub warning: Option<String>,
}

/// How many parsed lines the reader holds ahead of the model at most (memory stays bounded by
/// this times the largest accepted line).
const READ_AHEAD: usize = 1024;

/// Lines per batch at most, whatever their tokens (lines that failed to parse count 0 tokens).
const MAX_BATCH_LINES: usize = 4096;

/// A line as the reader hands it over: its number, its end offset in the input (bytes), and
/// the parse result (`Ok(None)`: a line to skip, such as a blank one).
type ReadLine<T> = (usize, u64, Result<Option<Parsed<T>>, String>);

/// A [`BufRead`] that counts the bytes consumed, for the progress bar.
struct Counting<R> {
    inner: R,
    consumed: u64,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.consumed += amt as u64;
        self.inner.consume(amt);
    }
}

/// Reads `input` line by line on a thread of its own, parses each line there, and sends the
/// results down `tx` (stopping when the receiver is gone). A read error is sent as a line
/// numbered 0.
fn read_lines<T: Send>(
    options: &ServeOptions,
    input: impl BufRead,
    parse: &(impl Fn(usize, &str) -> Result<Option<Parsed<T>>, String> + Sync),
    tx: std::sync::mpsc::SyncSender<ReadLine<T>>,
) {
    let mut input = Counting {
        inner: input,
        consumed: 0,
    };
    let mut buf = Vec::new();
    for n in 1.. {
        let parsed = match read_line_limited(&mut input, options.max_line_bytes, &mut buf) {
            Err(e) => {
                let _ = tx.send((
                    0,
                    input.consumed,
                    Err(format!("line {n}: cannot read: {e}")),
                ));
                return;
            }
            Ok(None) => return,
            Ok(Some(true)) => Err(format!(
                "longer than {} bytes; split the input or raise --max-line-bytes",
                options.max_line_bytes
            )),
            Ok(Some(false)) => match std::str::from_utf8(&buf) {
                Err(e) => Err(format!("not UTF-8 text ({e})")),
                Ok(line) => parse(n, line),
            },
        };
        if tx.send((n, input.consumed, parsed)).is_err() {
            return;
        }
    }
}

/// The loop every server shares. A reader thread reads and parses the lines (`parse`; blank
/// lines it returns `Ok(None)` for are skipped); this thread gathers what has arrived into
/// batches of up to [`ServeOptions::batch_tokens`] tokens without waiting for more input (so
/// output starts before input ends), runs each through `run` (one result per value, in
/// order), and writes one output line per input line, in input order, flushed per batch.
///
/// A line that fails (to read, parse or run) gets `{"line": N, "error": "..."}` in its place
/// and `NAME: line N: ...` on stderr; the other lines go on. A closed output ends the run
/// quietly (the reader is gone). Only a failure to read or write is returned as an error.
pub fn serve_batched<T: Send>(
    name: &str,
    options: &ServeOptions,
    input: impl BufRead + Send,
    mut output: impl Write,
    parse: impl Fn(usize, &str) -> Result<Option<Parsed<T>>, String> + Sync,
    mut run: impl FnMut(&[&T]) -> Vec<Result<String, String>>,
) -> Result<Served, String> {
    let progress = options.progress_bytes.map(progress_bar);
    let say = |msg: String| match &progress {
        Some(bar) => bar.suspend(|| eprintln!("{name}: {msg}")),
        None => eprintln!("{name}: {msg}"),
    };
    let budget = options.batch_tokens.max(1);
    let (tx, rx) = std::sync::mpsc::sync_channel::<ReadLine<T>>(READ_AHEAD);
    std::thread::scope(|scope| {
        scope.spawn(|| read_lines(options, input, &parse, tx));
        let mut served = Served::default();
        let mut next = None;
        let mut batch: Vec<ReadLine<T>> = Vec::new();
        let mut text = String::new();
        loop {
            // Gather: block for the first line, then take what has already arrived, up to
            // the token budget.
            batch.clear();
            let mut tokens = 0;
            let first = match next.take() {
                Some(l) => l,
                None => match rx.recv() {
                    Ok(l) => l,
                    Err(_) => break,
                },
            };
            let size = |l: &ReadLine<T>| match &l.2 {
                Ok(Some(p)) => p.tokens,
                _ => 0,
            };
            tokens += size(&first);
            batch.push(first);
            while batch.len() < MAX_BATCH_LINES {
                let Ok(l) = rx.try_recv() else { break };
                if tokens + size(&l) > budget {
                    next = Some(l);
                    break;
                }
                tokens += size(&l);
                batch.push(l);
            }
            // A read error (numbered 0) is the reader's last word: answer the lines before it,
            // then stop.
            let fatal = match batch.last() {
                Some((0, _, Err(e))) => Some(e.clone()),
                _ => None,
            };
            if fatal.is_some() {
                batch.pop();
            }
            // Run the lines that parsed, as one batch.
            let values: Vec<&T> = batch
                .iter()
                .filter_map(|(_, _, p)| match p {
                    Ok(Some(p)) => Some(&p.value),
                    _ => None,
                })
                .collect();
            let mut results = run(&values).into_iter();
            // Write every line's answer in order; a batch counts once it is written.
            let before = served;
            text.clear();
            let mut end = 0;
            for (n, at, p) in &batch {
                end = *at;
                let answer = match p {
                    Ok(None) => continue,
                    Ok(Some(p)) => {
                        if let Some(w) = &p.warning {
                            say(format!("warning: line {n}: {w}"));
                        }
                        results
                            .next()
                            .unwrap_or_else(|| Err("the model returned no result".into()))
                    }
                    Err(e) => Err(e.clone()),
                };
                match answer {
                    Ok(line) => {
                        served.answered += 1;
                        text.push_str(&line);
                    }
                    Err(e) => {
                        served.failed += 1;
                        say(format!("line {n}: {e}"));
                        let mut map = Map::new();
                        map.insert("line".into(), Value::from(*n));
                        map.insert("error".into(), Value::from(e));
                        text.push_str(&Value::Object(map).to_string());
                    }
                }
                text.push('\n');
            }
            match output
                .write_all(text.as_bytes())
                .and_then(|()| output.flush())
            {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                    served = before;
                    break;
                }
                Err(e) => return Err(format!("cannot write output: {e}")),
            }
            if let Some(bar) = &progress {
                bar.set_position(end);
            }
            if let Some(e) = fatal {
                return Err(e);
            }
        }
        // Dropping the receiver stops the reader at its next line.
        drop(rx);
        if let Some(bar) = &progress {
            bar.finish_and_clear();
        }
        Ok(served)
    })
}

/// A progress bar on stderr over `total` bytes of input.
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {percent:>3}% {bytes}/{total_bytes} {elapsed_precise} (eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// One input at a time through `each` (models whose batches this driver does not form).
fn serve_lines(
    name: &str,
    options: &ServeOptions,
    input: impl BufRead + Send,
    output: impl Write,
    mut each: impl FnMut(&str) -> Result<String, String>,
) -> Result<Served, String> {
    let options = ServeOptions {
        batch_tokens: 1,
        ..*options
    };
    serve_batched(
        name,
        &options,
        input,
        output,
        |_, line| {
            Ok((!line.trim().is_empty()).then(|| Parsed {
                value: line.to_owned(),
                tokens: 1,
                warning: None,
            }))
        },
        |lines| lines.iter().map(|l| each(l)).collect(),
    )
}

// `--batch-tokens`' default, spelled out for clap.
const _: () = assert!(crate::BATCH_TOKENS == 512);

/// Standard input as the servers read it: buffered, and `Send` (the reader thread owns it).
pub type StdinReader = std::io::BufReader<std::io::Stdin>;

/// `--bench-corpus FILE`'s run: the line to print, or why it failed.
type BenchCorpus<'a> = &'a dyn Fn(&std::path::Path, &ServeOptions) -> Result<String, String>;

/// What a standalone binary's `main` offers beyond serving lines.
struct Flags<'a> {
    /// Loads and checks the model's weights (a weights file can be missing or stale).
    load: &'a dyn Fn() -> Result<(), crate::Error>,
    /// `--no-truncate` (a model with a tokenizer).
    text: bool,
    /// `--batch-tokens` (an encoder).
    batched: bool,
    /// `--bench-corpus FILE`: runs it and returns the line to print.
    bench: Option<BenchCorpus<'a>>,
    /// `--profile SEQ_LEN [--runs N]` (an encoder): the per-op table to print.
    profile: Option<ProfileRun<'a>>,
    /// The `serve` subcommand: runs the HTTP server on a bound listener until Ctrl-C or
    /// SIGTERM.
    #[cfg(feature = "http")]
    http: HttpServe<'a>,
}

/// `--profile SEQ_LEN` with `--runs N`: the table, or why it failed.
type ProfileRun<'a> = &'a dyn Fn(usize, usize) -> Result<String, String>;

/// How `serve` runs the model over HTTP (feature `http`).
#[cfg(feature = "http")]
type HttpServe<'a> =
    &'a dyn Fn(std::net::TcpListener, &crate::http::HttpOptions) -> std::io::Result<()>;

/// The size of stdin when it is a regular file and stderr a terminal (a progress bar then
/// tells how far the run is: [`ServeOptions::progress_bytes`]); `None` otherwise.
pub fn progress_total() -> Option<u64> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
        let meta = std::fs::File::from(fd).metadata().ok()?;
        meta.is_file().then_some(meta.len())
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The `main` every standalone binary shares: parses the flags (`--help` prints `about` and
/// them on stdout; a bad flag is an error on stderr, exit 2), sets the thread count, then
/// serves stdin to stdout. Every failed line is reported on stderr, prefixed with the model's
/// name, and makes the exit status 1 once the input is done.
fn stdio_main(
    name: &'static str,
    about: String,
    flags: Flags<'_>,
    serve: impl FnOnce(
        &ServeOptions,
        StdinReader,
        std::io::StdoutLock<'static>,
    ) -> Result<Served, String>,
) -> ExitCode {
    use clap::{value_parser, Arg, ArgAction};
    let mut cmd = clap::Command::new(name)
        .about(about)
        .arg(threads_arg().global(true))
        .arg(
            Arg::new("max_line_bytes")
                .long("max-line-bytes")
                .value_name("BYTES")
                .default_value("1048576")
                .value_parser(value_parser!(u64).range(1..))
                .help("Refuse input lines longer than this"),
        );
    if flags.text {
        cmd = cmd.arg(
            Arg::new("no_truncate")
                .long("no-truncate")
                .action(ArgAction::SetTrue)
                .help("Refuse a text longer than the model's maximum instead of truncating it"),
        );
    }
    if flags.batched {
        cmd = cmd.arg(
            Arg::new("batch_tokens")
                .long("batch-tokens")
                .value_name("N")
                .default_value("512")
                .value_parser(value_parser!(u32).range(1..))
                .help(
                    "Run the lines at hand as ragged batches of up to N tokens (1: one line at a \
                     time); results do not depend on it",
                ),
        );
    }
    if flags.bench.is_some() {
        cmd = cmd.arg(
            Arg::new("bench_corpus")
                .long("bench-corpus")
                .value_name("FILE")
                .value_parser(value_parser!(std::path::PathBuf))
                .help(
                    "Embed every line of FILE (plain text) in batches, then print one JSON line \
                     with sentences/s and tokens/s (tokenization included) instead of serving",
                ),
        );
    }
    if flags.profile.is_some() {
        cmd = cmd
            .arg(
                Arg::new("profile")
                    .long("profile")
                    .value_name("SEQ_LEN")
                    .value_parser(value_parser!(u32).range(1..))
                    .help(
                        "Print where a forward of SEQ_LEN tokens spends its time, op by op, \
                         beside this machine's limit for each op, instead of serving",
                    ),
            )
            .arg(
                Arg::new("runs")
                    .long("runs")
                    .value_name("N")
                    .default_value("50")
                    .requires("profile")
                    .value_parser(value_parser!(u32).range(1..))
                    .help("Forwards --profile averages"),
            );
    }
    #[cfg(feature = "http")]
    {
        cmd = cmd.subcommand(http_command(flags.text, flags.batched));
    }
    let m = cmd.get_matches();
    if let Err(code) = apply_threads(name, &m) {
        return code;
    }
    if let Err(e) = (flags.load)() {
        eprintln!("{name}: {e}");
        return ExitCode::FAILURE;
    }
    #[cfg(feature = "http")]
    if let Some(("serve", sm)) = m.subcommand() {
        return http_main(name, flags.http, sm);
    }
    let options = ServeOptions {
        max_line_bytes: m
            .get_one::<u64>("max_line_bytes")
            .map_or(DEFAULT_MAX_LINE_BYTES, |&b| {
                usize::try_from(b).unwrap_or(usize::MAX)
            }),
        no_truncate: flags.text && m.get_flag("no_truncate"),
        batch_tokens: if flags.batched {
            m.get_one::<u32>("batch_tokens")
                .map_or(crate::BATCH_TOKENS, |&n| n as usize)
        } else {
            1
        },
        progress_bytes: progress_total(),
    };
    if let (Some(profile), Some(&len)) = (
        flags.profile,
        m.try_get_one::<u32>("profile").ok().flatten(),
    ) {
        let runs = m.get_one::<u32>("runs").map_or(50, |&r| r as usize);
        return match profile(len as usize, runs) {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let (Some(bench), Some(path)) = (
        flags.bench,
        m.try_get_one::<std::path::PathBuf>("bench_corpus")
            .ok()
            .flatten(),
    ) {
        return match bench(path, &options) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin());
    match serve(&options, input, std::io::stdout().lock()) {
        Ok(Served { failed: 0, .. }) => ExitCode::SUCCESS,
        Ok(Served { answered, failed }) => {
            eprintln!(
                "{name}: {failed} of {} input lines failed (each reported above and by an \
                 {{\"error\"}} line in its place on stdout)",
                answered + failed
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--threads N` (or `DYNQ_THREADS`), which every standalone binary and `serve` take.
fn threads_arg() -> clap::Arg {
    clap::Arg::new("threads")
        .long("threads")
        .value_name("N")
        .env("DYNQ_THREADS")
        .value_parser(clap::value_parser!(u16).range(1..))
        .help("Threads per forward call [default: all cores]")
}

/// Sets the compute threads from `--threads`, if given.
fn apply_threads(name: &str, m: &clap::ArgMatches) -> Result<(), ExitCode> {
    if let Some(&n) = m.get_one::<u16>("threads") {
        if let Err(e) = crate::set_threads(n.into()) {
            eprintln!("{name}: --threads {n}: {e}");
            return Err(ExitCode::FAILURE);
        }
    }
    Ok(())
}

/// The `serve` subcommand's flags.
#[cfg(feature = "http")]
fn http_command(text: bool, encoder: bool) -> clap::Command {
    use clap::{value_parser, Arg, ArgAction};
    let mut c = clap::Command::new("serve")
        .about(
            "Serve the model over HTTP until Ctrl-C or SIGTERM: POST /v1/embeddings, /embed, \
             /embed_all, /predict, /classify or /rerank (as the model's output allows), GET \
             /health, /info and /metrics. Logs one line per request on stderr (DYNQ_LOG=warn \
             silences them).",
        )
        .arg(
            Arg::new("host")
                .long("host")
                .value_name("ADDR")
                .default_value("127.0.0.1")
                .help("Address to listen on (0.0.0.0: every interface)"),
        )
        .arg(
            Arg::new("port")
                .long("port")
                .value_name("PORT")
                .default_value("8080")
                .value_parser(value_parser!(u16))
                .help("Port to listen on (0: any free port, logged at start)"),
        )
        .arg(
            Arg::new("max_queue")
                .long("max-queue")
                .value_name("N")
                .default_value("1024")
                .value_parser(value_parser!(u32).range(1..))
                .help("Requests waiting for the model at most; more are answered 429"),
        )
        .arg(
            Arg::new("max_body_bytes")
                .long("max-body-bytes")
                .value_name("BYTES")
                .default_value("2000000")
                .value_parser(value_parser!(u64).range(1..))
                .help("Largest request body; a larger one is answered 413"),
        )
        .arg(
            Arg::new("http_threads")
                .long("http-threads")
                .value_name("N")
                .default_value("2")
                .value_parser(value_parser!(u16).range(1..))
                .help(
                    "Threads that parse, tokenize and answer requests (the model runs on its own)",
                ),
        );
    if encoder {
        c = c
            .arg(
                Arg::new("max_batch_tokens")
                    .long("max-batch-tokens")
                    .value_name("N")
                    .default_value("512")
                    .value_parser(value_parser!(u32).range(1..))
                    .help(
                        "Token budget of a batch: queued requests run together up to it; results \
                         do not depend on it",
                    ),
            )
            .arg(
                Arg::new("max_wait_ms")
                    .long("max-wait-ms")
                    .value_name("MS")
                    .default_value("0")
                    .value_parser(value_parser!(f64))
                    .help(
                        "Wait up to MS for more requests to fill a batch (0: run what is queued \
                         at once; requests arriving meanwhile form the next batch)",
                    ),
            )
            .arg(
                Arg::new("max_inputs")
                    .long("max-inputs")
                    .value_name("N")
                    .default_value("512")
                    .value_parser(value_parser!(u32).range(1..))
                    .help("Inputs in one request at most; more are answered 413"),
            );
    }
    if text {
        c = c.arg(
            Arg::new("auto_truncate")
                .long("auto-truncate")
                .action(ArgAction::SetTrue)
                .help(
                    "Cut texts longer than the model's maximum instead of answering 413, unless \
                     a request says `\"truncate\": false`",
                ),
        );
    }
    c
}

// The `serve` flags' defaults, spelled out for clap.
#[cfg(feature = "http")]
const _: () = {
    use crate::http::defaults as d;
    assert!(d::MAX_QUEUE == 1024 && d::MAX_BODY_BYTES == 2_000_000 && d::HTTP_THREADS == 2);
    assert!(d::MAX_INPUTS == 512 && crate::BATCH_TOKENS == 512);
};

/// Runs `serve`: binds the address, then serves until Ctrl-C or SIGTERM.
#[cfg(feature = "http")]
fn http_main(name: &str, serve: HttpServe<'_>, m: &clap::ArgMatches) -> ExitCode {
    let mut options = crate::http::HttpOptions::default();
    let num = |key: &str| -> Option<usize> {
        m.try_get_one::<u32>(key)
            .ok()
            .flatten()
            .map(|&n| n as usize)
    };
    if let Some(n) = num("max_queue") {
        options.max_queue = n;
    }
    if let Some(n) = num("max_inputs") {
        options.max_inputs = n;
    }
    if let Some(n) = num("max_batch_tokens") {
        options.max_batch_tokens = n;
    }
    if let Some(&b) = m.get_one::<u64>("max_body_bytes") {
        options.max_body_bytes = usize::try_from(b).unwrap_or(usize::MAX);
    }
    if let Some(&n) = m.get_one::<u16>("http_threads") {
        options.http_threads = n.into();
    }
    if let Ok(Some(&ms)) = m.try_get_one::<f64>("max_wait_ms") {
        if !(0.0..=60_000.0).contains(&ms) {
            eprintln!("{name}: serve --max-wait-ms {ms}: expected 0 to 60000");
            return ExitCode::from(2);
        }
        options.max_wait = std::time::Duration::from_secs_f64(ms / 1e3);
    }
    options.auto_truncate = m.try_get_one::<bool>("auto_truncate").ok().flatten() == Some(&true);
    let host = m
        .get_one::<String>("host")
        .map_or("127.0.0.1", String::as_str);
    let port = m.get_one::<u16>("port").copied().unwrap_or(8080);
    // An IPv6 address needs brackets before the port.
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let listener = match std::net::TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{name}: serve: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    crate::http::init_logging();
    match serve(listener, &options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: serve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A `main` that only serves an encoder over HTTP: the `serve` subcommand's flags (and
/// `--threads`) at the top level. `cargo run --release --example serve` is one.
#[cfg(feature = "http")]
pub fn encoder_http_main<M: crate::EncoderModel + Sync>(model: &M) -> ExitCode {
    let m = http_command(M::TOKENIZER_JSON.is_some(), true)
        .name(M::NAME)
        .arg(threads_arg())
        .get_matches();
    if let Err(code) = apply_threads(M::NAME, &m) {
        return code;
    }
    http_main(
        M::NAME,
        &|listener, options| {
            crate::http::serve_encoder(model, listener, options, crate::http::shutdown_signal())
        },
        &m,
    )
}

/// `main` of a standalone recurrent binary: stdin to stdout, errors to stderr.
pub fn recurrent_main<M: crate::RecurrentModel + Sync>(model: &M) -> ExitCode {
    let s = M::SHAPE;
    let lstm = s.cell == crate::ops::rnn::Cell::Lstm;
    let (c, cn) = if lstm {
        (", \"c0\"", ", \"c_n\"")
    } else {
        ("", "")
    };
    let about = format!(
        "The `{0}` model: reads one sequence per line on stdin, {{\"input\": [[{1} numbers], ...]}}\n\
         (optional \"h0\"{c}: {2} rows of {3} numbers), and writes one per line on stdout,\n\
         {{\"output\": [[{4} numbers], ...], \"h_n\"{cn}}}.\n\nUsage: {0} < input.jsonl > output.jsonl",
        M::NAME,
        s.input_size,
        s.num_layers * s.directions,
        s.hidden_size,
        s.output_size(),
    );
    let flags = Flags {
        load: &|| model.load(),
        profile: None,
        text: false,
        batched: false,
        bench: None,
        #[cfg(feature = "http")]
        http: &|listener, options| {
            crate::http::serve_recurrent(model, listener, options, crate::http::shutdown_signal())
        },
    };
    stdio_main(M::NAME, about, flags, |opt, i, o| {
        serve_recurrent(model, opt, i, o)
    })
}

/// What `v` is, for error messages ("a string", "an array", ...).
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Formats one output row as `{"output": [...]}`.
///
/// ```
/// assert_eq!(dynq_runtime::serve::format_dense_output(&[0.5, -1.0]), r#"{"output":[0.5,-1.0]}"#);
/// ```
pub fn format_dense_output(row: &[f32]) -> String {
    let mut map = Map::new();
    map.insert(
        "output".into(),
        Value::Array(row.iter().map(|&v| Value::from(v)).collect()),
    );
    Value::Object(map).to_string()
}

/// Serves a dense model over `input`/`output`, one example per line (see [`serve_batched`]
/// for what a bad line does).
pub fn serve_dense<M: DenseModel>(
    model: &M,
    options: &ServeOptions,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Served, String> {
    let mut out = vec![0.0f32; M::OUTPUT_SIZE];
    serve_lines(M::NAME, options, input, output, |line| {
        dense_line(model, line, &mut out)
    })
}

/// Runs one input line of a dense model (see [`parse_dense_line`]) into `out`
/// (`M::OUTPUT_SIZE` floats, reused across lines) and returns its output line (see
/// [`format_dense_output`]), or what was wrong.
pub fn dense_line<M: DenseModel>(model: &M, line: &str, out: &mut [f32]) -> Result<String, String> {
    let row = parse_dense_line(line, M::INPUT_SIZE)?;
    model.forward(&row, 1, out).map_err(|e| e.to_string())?;
    Ok(format_dense_output(out))
}

/// `main` of a standalone dense-model binary: stdin to stdout, errors to stderr.
pub fn dense_main<M: DenseModel + Sync>(model: &M) -> ExitCode {
    let about = format!(
        "The `{0}` model ({1} -> {2}): reads one JSON object per line on stdin,\n\
         {{\"input\": [{1} numbers]}}, and writes one per line on stdout, {{\"output\": [{2} numbers]}}.\n\n\
         Usage: {0} < input.jsonl > output.jsonl",
        M::NAME,
        M::INPUT_SIZE,
        M::OUTPUT_SIZE
    );
    let flags = Flags {
        load: &|| model.load(),
        profile: None,
        text: false,
        batched: false,
        bench: None,
        #[cfg(feature = "http")]
        http: &|listener, options| {
            crate::http::serve_dense(model, listener, options, crate::http::shutdown_signal())
        },
    };
    stdio_main(M::NAME, about, flags, |opt, i, o| {
        serve_dense(model, opt, i, o)
    })
}

/// Turns `{"text": ...}` into token ids: the model's tokenizer (feature `text`).
#[cfg(feature = "text")]
pub use crate::text::Tokenizer as TextTokenizer;

/// Without the `text` feature there is no tokenizer, and every `{"text": ...}` is an error
/// that says so.
#[cfg(not(feature = "text"))]
#[derive(Debug)]
pub struct TextTokenizer;

#[cfg(not(feature = "text"))]
impl TextTokenizer {
    /// A tokenizer that refuses every text.
    pub fn new(_json: &str, _max_len: usize) -> Result<Self, crate::Error> {
        Ok(TextTokenizer)
    }
}

/// Token ids of a `{"text": ...}` line, cut at the tokenizer's maximum (and said so).
fn encode_text(t: &TextTokenizer, text: &str) -> Result<EncoderLine, String> {
    #[cfg(feature = "text")]
    {
        let t = t
            .encode(text, crate::text::Truncate::AtMax)
            .map_err(|e| format!("`text`: {e}"))?;
        Ok(EncoderLine {
            input_ids: t.ids,
            attention_mask: None,
            token_type_ids: Some(t.type_ids),
            truncated: t.truncated,
        })
    }
    #[cfg(not(feature = "text"))]
    {
        let _ = (t, text);
        Err("`text` input needs dynq-runtime's `text` feature".into())
    }
}

fn id_array(map: &Map<String, Value>, key: &'static str) -> Result<Option<Vec<u32>>, String> {
    let Some(v) = map.get(key) else {
        return Ok(None);
    };
    let Value::Array(items) = v else {
        return Err(format!(
            "`{key}`: expected an array of integers, found {}",
            kind(v)
        ));
    };
    token_ids(items, &format!("`{key}`")).map(Some)
}

/// The token ids in `items` (the array at `path`, for errors).
pub(crate) fn token_ids(items: &[Value], path: &str) -> Result<Vec<u32>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    format!("{path}[{i}]: expected a token id (a non-negative integer), found {x}")
                })
        })
        .collect()
}

/// One input line of an encoder model, parsed (see [`parse_encoder_line`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderLine {
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// `attention_mask`, if given.
    pub attention_mask: Option<Vec<u32>>,
    /// `token_type_ids`, if given (from the tokenizer for `text`).
    pub token_type_ids: Option<Vec<u32>>,
    /// A `text` cut at the model's maximum length.
    pub truncated: bool,
}

/// Parses one input line of an encoder model: `{"input_ids": [...], "attention_mask": [...],
/// "token_type_ids": [...]}` (the last two optional) or `{"text": "..."}`.
///
/// ```
/// let l = dynq_runtime::serve::parse_encoder_line(r#"{"input_ids": [101, 7, 102]}"#, None).unwrap();
/// assert_eq!((l.input_ids, l.attention_mask, l.token_type_ids), (vec![101, 7, 102], None, None));
/// ```
pub fn parse_encoder_line(
    line: &str,
    tokenizer: Option<&TextTokenizer>,
) -> Result<EncoderLine, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err(format!(
            "expected a JSON object with `input_ids` or `text`, found {}",
            kind(&value)
        ));
    };
    const KEYS: [&str; 4] = ["input_ids", "attention_mask", "token_type_ids", "text"];
    if let Some(k) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown key `{k}`, expected one of `input_ids`, `attention_mask`, `token_type_ids`, `text`"));
    }
    if let Some(text) = map.get("text") {
        if map.len() > 1 {
            return Err(
                "`text` cannot be combined with `input_ids`, `attention_mask` or `token_type_ids`"
                    .into(),
            );
        }
        let Value::String(text) = text else {
            return Err(format!("`text`: expected a string, found {}", kind(text)));
        };
        let Some(t) = tokenizer else {
            return Err("`text`: this model has no tokenizer; send `input_ids`".into());
        };
        return encode_text(t, text);
    }
    let ids = id_array(&map, "input_ids")?.ok_or("missing key `input_ids` (or `text`)")?;
    Ok(EncoderLine {
        input_ids: ids,
        attention_mask: id_array(&map, "attention_mask")?,
        token_type_ids: id_array(&map, "token_type_ids")?,
        truncated: false,
    })
}

fn floats(v: &[f32]) -> Value {
    Value::Array(v.iter().map(|&x| Value::from(x)).collect())
}

/// Serves an encoder model over `input`/`output`: the lines that have arrived run as ragged
/// batches of up to [`ServeOptions::batch_tokens`] tokens (each result bit-identical to the
/// line run alone). A `text` longer than the model's `max_seq_len` tokens is cut there, with
/// `"truncated": true` in its output line and a warning on stderr, or refused with
/// [`ServeOptions::no_truncate`]. See [`serve_batched`] for what a bad line does.
pub fn serve_encoder<M: crate::EncoderModel>(
    model: &M,
    options: &ServeOptions,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Served, String> {
    let tokenizer = match M::TOKENIZER_JSON {
        Some(json) => Some(TextTokenizer::new(json, M::MAX_SEQ_LEN).map_err(|e| e.to_string())?),
        None => None,
    };
    let parse = |_: usize, line: &str| {
        if line.trim().is_empty() {
            return Ok(None);
        }
        let l = parse_encoder_line(line, tokenizer.as_ref())?;
        let warning = if l.truncated {
            if options.no_truncate {
                return Err(format!(
                    "`text`: longer than the model's {} tokens (--no-truncate)",
                    M::MAX_SEQ_LEN
                ));
            }
            Some(format!("text truncated to {} tokens", M::MAX_SEQ_LEN))
        } else {
            None
        };
        Ok(Some(Parsed {
            tokens: l.input_ids.len(),
            value: l,
            warning,
        }))
    };
    serve_batched(M::NAME, options, input, output, parse, |lines| {
        let inputs: Vec<crate::BertInput<'_>> = lines
            .iter()
            .map(|l| crate::BertInput {
                input_ids: &l.input_ids,
                attention_mask: l.attention_mask.as_deref(),
                token_type_ids: l.token_type_ids.as_deref(),
            })
            .collect();
        let outputs = forward_each(model, &inputs);
        outputs
            .into_iter()
            .zip(lines)
            .map(|(o, l)| o.map(|o| format_encoder_output::<M>(&o, l.truncated)))
            .collect()
    })
}

/// Runs `inputs` as one batch and returns each input's output, or its error: an input the
/// batch refuses is set aside and the rest run again (their results do not depend on what
/// else is in the batch).
pub fn forward_each<M: crate::EncoderModel>(
    model: &M,
    inputs: &[crate::BertInput<'_>],
) -> Vec<Result<Vec<f32>, String>> {
    let mut results: Vec<Option<Result<Vec<f32>, String>>> = vec![None; inputs.len()];
    let mut live: Vec<usize> = (0..inputs.len()).collect();
    let mut out = Vec::new();
    while !live.is_empty() {
        let batch: Vec<crate::BertInput<'_>> = live.iter().map(|&i| inputs[i]).collect();
        let lens: Vec<usize> = batch
            .iter()
            .map(|i| M::output_len(i.input_ids.len()))
            .collect();
        out.clear();
        out.resize(lens.iter().sum(), 0.0);
        match model.forward_batch(&batch, &mut out) {
            Ok(()) => {
                let mut at = 0;
                for (&i, n) in live.iter().zip(lens) {
                    results[i] = Some(Ok(out[at..at + n].to_vec()));
                    at += n;
                }
                break;
            }
            Err(crate::Error::Item { index, error }) if index < live.len() => {
                results[live.remove(index)] = Some(Err(error.to_string()));
            }
            Err(e) => {
                for &i in &live {
                    results[i] = Some(Err(e.to_string()));
                }
                break;
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run".into())))
        .collect()
}

/// One encoder output line: `{"embedding": [...]}`, `{"last_hidden_state": [[...], ...]}` or
/// `{"logits": [...], "label": "..."}`, with `"truncated": true` for a cut text.
fn format_encoder_output<M: crate::EncoderModel>(out: &[f32], truncated: bool) -> String {
    use crate::BertOutput;
    let mut map = Map::new();
    match M::OUTPUT {
        BertOutput::MeanPooled | BertOutput::Cls => {
            map.insert("embedding".into(), floats(out));
        }
        BertOutput::LastHiddenState => {
            let rows = out.chunks(M::HIDDEN_SIZE).map(floats).collect();
            map.insert("last_hidden_state".into(), Value::Array(rows));
        }
        BertOutput::Logits => {
            let best = (0..out.len()).fold(0, |b, i| if out[i] > out[b] { i } else { b });
            map.insert("logits".into(), floats(out));
            map.insert(
                "label".into(),
                Value::from(M::LABELS.get(best).copied().unwrap_or("")),
            );
        }
    }
    if truncated {
        map.insert("truncated".into(), Value::Bool(true));
    }
    Value::Object(map).to_string()
}

/// `main` of a standalone encoder binary: stdin to stdout, errors to stderr.
pub fn encoder_main<M: crate::EncoderModel + Sync>(model: &M) -> ExitCode {
    let text = if M::TOKENIZER_JSON.is_some() {
        " or {\"text\": \"...\"}"
    } else {
        ""
    };
    let about = format!(
        "The `{0}` model: reads one JSON object per line on stdin, {{\"input_ids\": [...],\n\
         \"attention_mask\": [...], \"token_type_ids\": [...]}}{text} (up to {1} tokens), and\n\
         writes one per line on stdout.\n\nUsage: {0} < input.jsonl > output.jsonl",
        M::NAME,
        M::MAX_SEQ_LEN
    );
    #[cfg(feature = "text")]
    let bench = |path: &std::path::Path, options: &ServeOptions| {
        let truncate = if options.no_truncate {
            crate::text::Truncate::Refuse
        } else {
            crate::text::Truncate::AtMax
        };
        bench_corpus(model, path, truncate, options.batch_tokens).map(|b| b.to_json("dynq", ""))
    };
    #[cfg(feature = "text")]
    let bench = M::TOKENIZER_JSON
        .is_some()
        .then_some(&bench as &dyn Fn(&std::path::Path, &ServeOptions) -> Result<String, String>);
    #[cfg(not(feature = "text"))]
    let bench = None;
    let profile = |len: usize, runs: usize| {
        crate::profile::encoder(model, len, runs)
            .map(|p| p.to_string())
            .map_err(|e| format!("--profile {len}: {e}"))
    };
    let flags = Flags {
        load: &|| model.load(),
        profile: Some(&profile),
        text: M::TOKENIZER_JSON.is_some(),
        batched: true,
        bench,
        #[cfg(feature = "http")]
        http: &|listener, options| {
            crate::http::serve_encoder(model, listener, options, crate::http::shutdown_signal())
        },
    };
    stdio_main(M::NAME, about, flags, |opt, i, o| {
        serve_encoder(model, opt, i, o)
    })
}

/// What [`bench_corpus`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusBench {
    /// The corpus file's name (without its directory).
    pub corpus: String,
    /// Texts run (the file's non-blank lines).
    pub sentences: usize,
    /// Their tokens, special tokens included, after truncation.
    pub tokens: usize,
    /// The batches' token budget.
    pub batch_tokens: usize,
    /// Threads per forward.
    pub threads: usize,
    /// Wall time of tokenizing and running them all.
    pub seconds: f64,
}

impl CorpusBench {
    /// One JSON line: `{"engine", "variant", "corpus", "threads", "batch_tokens", "sentences",
    /// "tokens", "seconds", "sentences_per_s", "tokens_per_s"}` (`variant` left out when
    /// empty).
    pub fn to_json(&self, engine: &str, variant: &str) -> String {
        let mut map = Map::new();
        map.insert("engine".into(), Value::from(engine));
        if !variant.is_empty() {
            map.insert("variant".into(), Value::from(variant));
        }
        map.insert("corpus".into(), Value::from(self.corpus.as_str()));
        map.insert("threads".into(), Value::from(self.threads));
        map.insert("batch_tokens".into(), Value::from(self.batch_tokens));
        map.insert("sentences".into(), Value::from(self.sentences));
        map.insert("tokens".into(), Value::from(self.tokens));
        map.insert("seconds".into(), Value::from(self.seconds));
        let rate = |n: usize| n as f64 / self.seconds.max(f64::MIN_POSITIVE);
        map.insert("sentences_per_s".into(), Value::from(rate(self.sentences)));
        map.insert("tokens_per_s".into(), Value::from(rate(self.tokens)));
        Value::Object(map).to_string()
    }
}

/// Times a corpus: tokenizes every non-blank line of the text file at `path` with the model's
/// tokenizer and runs them all in ragged batches of up to `batch_tokens` tokens (1: one at a
/// time), in file order, after a short warm-up (the first batch, untimed). The clock covers
/// tokenization and the forwards; reading the file is outside it.
#[cfg(feature = "text")]
pub fn bench_corpus<M: crate::EncoderModel>(
    model: &M,
    path: &std::path::Path,
    truncate: crate::text::Truncate,
    batch_tokens: usize,
) -> Result<CorpusBench, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--bench-corpus {}: {e}", path.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return Err(format!(
            "--bench-corpus {}: no text in the file (one text per line expected)",
            path.display()
        ));
    }
    let json = M::TOKENIZER_JSON.ok_or("--bench-corpus: this model has no tokenizer")?;
    let tokenizer = crate::text::Tokenizer::new(json, M::MAX_SEQ_LEN).map_err(|e| e.to_string())?;
    let run = |lines: &[&str]| -> Result<usize, String> {
        let encoded = lines
            .iter()
            .enumerate()
            .map(|(i, t)| {
                tokenizer
                    .encode(t, truncate)
                    .map_err(|e| format!("--bench-corpus {} line {}: {e}", path.display(), i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inputs: Vec<crate::BertInput<'_>> = encoded
            .iter()
            .map(|t| crate::BertInput {
                input_ids: &t.ids,
                attention_mask: None,
                token_type_ids: Some(&t.type_ids),
            })
            .collect();
        let mut out = Vec::new();
        for (first, chunk) in crate::batches(&inputs, batch_tokens) {
            let len = chunk.iter().map(|i| M::output_len(i.input_ids.len())).sum();
            out.clear();
            out.resize(len, 0.0);
            model.forward_batch(chunk, &mut out).map_err(|e| {
                format!(
                    "--bench-corpus {}: {}",
                    path.display(),
                    e.offset_item(first)
                )
            })?;
        }
        Ok(inputs.iter().map(|i| i.input_ids.len()).sum())
    };
    let warm = lines.len().min(batch_tokens.div_ceil(16).clamp(1, 64));
    run(&lines[..warm])?;
    let start = std::time::Instant::now();
    let tokens = run(&lines)?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(CorpusBench {
        corpus: path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        sentences: lines.len(),
        tokens,
        batch_tokens,
        threads: crate::threads::count(),
        seconds,
    })
}
