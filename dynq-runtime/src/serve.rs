//! JSON-lines driver for standalone binaries (feature `serve`).
//!
//! One JSON object per input line, one per output line, in order. A bad line stops the run with
//! a message naming the line number on stderr and a non-zero exit; nothing panics. A line
//! longer than [`ServeOptions::max_line_bytes`] is refused without being read into memory
//! whole, and a reader that closes the output (`... | head`) ends the run quietly.

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

/// Serves a recurrent model over `input`/`output`, one sequence per line; returns the number
/// of sequences or the error message (naming the line).
pub fn serve_recurrent<M: crate::RecurrentModel>(
    model: &M,
    options: &ServeOptions,
    input: impl BufRead,
    output: impl Write,
) -> Result<usize, String> {
    let shape = M::SHAPE;
    let state = shape.state_len(1);
    let cell_state = match shape.cell {
        crate::ops::rnn::Cell::Lstm => state,
        crate::ops::rnn::Cell::Gru => 0,
    };
    serve_lines(options, input, output, |_, line| {
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
    })
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
}

/// [`ServeOptions::max_line_bytes`]' default: 1 MiB (`--max-line-bytes`' default, 1048576).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            no_truncate: false,
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

/// The loop every server shares: one output line per non-blank input line, flushed at once;
/// the first error stops it, prefixed with its line number. A closed output ends it quietly
/// (the reader is gone), with the count of lines written.
fn serve_lines(
    options: &ServeOptions,
    mut input: impl BufRead,
    mut output: impl Write,
    mut each: impl FnMut(usize, &str) -> Result<String, String>,
) -> Result<usize, String> {
    let mut count = 0;
    let mut buf = Vec::new();
    for n in 1.. {
        let too_long = read_line_limited(&mut input, options.max_line_bytes, &mut buf)
            .map_err(|e| format!("line {n}: cannot read: {e}"))?;
        match too_long {
            None => break,
            Some(true) => {
                return Err(format!(
                    "line {n}: longer than {} bytes; split the input or raise --max-line-bytes",
                    options.max_line_bytes
                ))
            }
            Some(false) => {}
        }
        let line =
            std::str::from_utf8(&buf).map_err(|e| format!("line {n}: not UTF-8 text ({e})"))?;
        if line.trim().is_empty() {
            continue;
        }
        let out = each(n, line).map_err(|e| format!("line {n}: {e}"))?;
        match writeln!(output, "{out}").and_then(|()| output.flush()) {
            Ok(()) => count += 1,
            Err(e) if e.kind() == ErrorKind::BrokenPipe => break,
            Err(e) => return Err(format!("line {n}: cannot write output: {e}")),
        }
    }
    Ok(count)
}

/// The `main` every standalone binary shares: parses the flags (`--help` prints `about` and
/// them on stdout; a bad flag is an error on stderr, exit 2), sets the thread count, then
/// serves stdin to stdout; an error goes to stderr, prefixed with the model's name.
fn stdio_main(
    name: &'static str,
    about: String,
    text: bool,
    serve: impl FnOnce(
        &ServeOptions,
        std::io::StdinLock<'static>,
        std::io::StdoutLock<'static>,
    ) -> Result<usize, String>,
) -> ExitCode {
    use clap::{value_parser, Arg, ArgAction};
    let mut cmd = clap::Command::new(name)
        .about(about)
        .arg(
            Arg::new("threads")
                .long("threads")
                .value_name("N")
                .env("DYNQ_THREADS")
                .value_parser(value_parser!(u16).range(1..))
                .help("Threads per forward call [default: all cores]"),
        )
        .arg(
            Arg::new("max_line_bytes")
                .long("max-line-bytes")
                .value_name("BYTES")
                .default_value("1048576")
                .value_parser(value_parser!(u64).range(1..))
                .help("Refuse input lines longer than this"),
        );
    if text {
        cmd = cmd.arg(
            Arg::new("no_truncate")
                .long("no-truncate")
                .action(ArgAction::SetTrue)
                .help("Refuse a text longer than the model's maximum instead of truncating it"),
        );
    }
    let m = cmd.get_matches();
    if let Some(&n) = m.get_one::<u16>("threads") {
        if let Err(e) = crate::set_threads(n.into()) {
            eprintln!("{name}: --threads {n}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let options = ServeOptions {
        max_line_bytes: m
            .get_one::<u64>("max_line_bytes")
            .map_or(DEFAULT_MAX_LINE_BYTES, |&b| {
                usize::try_from(b).unwrap_or(usize::MAX)
            }),
        no_truncate: text && m.get_flag("no_truncate"),
    };
    match serve(&options, std::io::stdin().lock(), std::io::stdout().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `main` of a standalone recurrent binary: stdin to stdout, errors to stderr.
pub fn recurrent_main<M: crate::RecurrentModel>(model: &M) -> ExitCode {
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
    stdio_main(M::NAME, about, false, |opt, i, o| {
        serve_recurrent(model, opt, i, o)
    })
}

fn kind(v: &Value) -> &'static str {
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

/// Serves a dense model over `input`/`output`; returns the number of examples or the error
/// message (naming the line).
pub fn serve_dense<M: DenseModel>(
    model: &M,
    options: &ServeOptions,
    input: impl BufRead,
    output: impl Write,
) -> Result<usize, String> {
    let mut out = vec![0.0f32; M::OUTPUT_SIZE];
    serve_lines(options, input, output, |_, line| {
        let row = parse_dense_line(line, M::INPUT_SIZE)?;
        model
            .forward(&row, 1, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(format_dense_output(&out))
    })
}

/// `main` of a standalone dense-model binary: stdin to stdout, errors to stderr.
pub fn dense_main<M: DenseModel>(model: &M) -> ExitCode {
    let about = format!(
        "The `{0}` model ({1} -> {2}): reads one JSON object per line on stdin,\n\
         {{\"input\": [{1} numbers]}}, and writes one per line on stdout, {{\"output\": [{2} numbers]}}.\n\n\
         Usage: {0} < input.jsonl > output.jsonl",
        M::NAME,
        M::INPUT_SIZE,
        M::OUTPUT_SIZE
    );
    stdio_main(M::NAME, about, false, |opt, i, o| {
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
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("`{key}`[{i}]: expected a non-negative integer, found {x}"))
        })
        .collect::<Result<Vec<u32>, String>>()
        .map(Some)
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

/// Serves an encoder model over `input`/`output`; returns the number of sequences or the
/// error message (naming the line). A `text` longer than the model's `max_seq_len` tokens is
/// cut there, with `"truncated": true` in its output line and a warning on stderr, or refused
/// with [`ServeOptions::no_truncate`].
pub fn serve_encoder<M: crate::EncoderModel>(
    model: &M,
    options: &ServeOptions,
    input: impl BufRead,
    output: impl Write,
) -> Result<usize, String> {
    use crate::BertOutput;
    let tokenizer = match M::TOKENIZER_JSON {
        Some(json) => Some(TextTokenizer::new(json, M::MAX_SEQ_LEN).map_err(|e| e.to_string())?),
        None => None,
    };
    serve_lines(options, input, output, |n, line| {
        let l = parse_encoder_line(line, tokenizer.as_ref())?;
        if l.truncated {
            if options.no_truncate {
                return Err(format!(
                    "`text`: longer than the model's {} tokens (--no-truncate)",
                    M::MAX_SEQ_LEN
                ));
            }
            let _ = writeln!(
                std::io::stderr(),
                "{}: warning: line {n}: text truncated to {} tokens",
                M::NAME,
                M::MAX_SEQ_LEN
            );
        }
        let bert = crate::BertInput {
            input_ids: &l.input_ids,
            attention_mask: l.attention_mask.as_deref(),
            token_type_ids: l.token_type_ids.as_deref(),
        };
        let mut out = vec![0.0f32; M::output_len(l.input_ids.len())];
        model.forward(&bert, &mut out).map_err(|e| e.to_string())?;
        let mut map = Map::new();
        match M::OUTPUT {
            BertOutput::MeanPooled | BertOutput::Cls => {
                map.insert("embedding".into(), floats(&out));
            }
            BertOutput::LastHiddenState => {
                let rows = out.chunks(M::HIDDEN_SIZE).map(floats).collect();
                map.insert("last_hidden_state".into(), Value::Array(rows));
            }
            BertOutput::Logits => {
                let best = (0..out.len()).fold(0, |b, i| if out[i] > out[b] { i } else { b });
                map.insert("logits".into(), floats(&out));
                map.insert(
                    "label".into(),
                    Value::from(M::LABELS.get(best).copied().unwrap_or("")),
                );
            }
        }
        if l.truncated {
            map.insert("truncated".into(), Value::Bool(true));
        }
        Ok(Value::Object(map).to_string())
    })
}

/// `main` of a standalone encoder binary: stdin to stdout, errors to stderr.
pub fn encoder_main<M: crate::EncoderModel>(model: &M) -> ExitCode {
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
    stdio_main(M::NAME, about, M::TOKENIZER_JSON.is_some(), |opt, i, o| {
        serve_encoder(model, opt, i, o)
    })
}
