//! JSON-lines driver for standalone binaries (feature `serve`).
//!
//! One JSON object per input line, one per output line, in order. A bad line stops the run with
//! a message naming the line number on stderr and a non-zero exit; nothing panics.

use std::io::{BufRead, Write};
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
    let Value::Array(items) = input else {
        return Err(format!(
            "`input`: expected an array of {width} numbers, found {}",
            kind(input)
        ));
    };
    if items.len() != width {
        return Err(format!(
            "`input`: expected {width} numbers, found {}",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v.as_f64() {
            Some(x) if (x as f32).is_finite() => Ok(x as f32),
            Some(x) => Err(format!("`input`[{i}]: {x} does not fit in f32")),
            None => Err(format!(
                "`input`[{i}]: expected a number, found {}",
                kind(v)
            )),
        })
        .collect()
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
    input: impl BufRead,
    mut output: impl Write,
) -> Result<usize, String> {
    let mut out = vec![0.0f32; M::OUTPUT_SIZE];
    let mut count = 0;
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| format!("line {n}: cannot read: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let row = parse_dense_line(&line, M::INPUT_SIZE).map_err(|e| format!("line {n}: {e}"))?;
        model
            .forward(&row, 1, &mut out)
            .map_err(|e| format!("line {n}: {e}"))?;
        writeln!(output, "{}", format_dense_output(&out))
            .and_then(|()| output.flush())
            .map_err(|e| format!("line {n}: cannot write output: {e}"))?;
        count += 1;
    }
    Ok(count)
}

/// `main` of a standalone dense-model binary: stdin to stdout, errors to stderr.
pub fn dense_main<M: DenseModel>(model: &M) -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!(
            "usage: {0} < input.jsonl\n\nReads one JSON object per line, {{\"input\": [{1} numbers]}}, and writes one\n\
             per line, {{\"output\": [{2} numbers]}}, from the `{0}` model ({1} -> {2}).",
            M::NAME,
            M::INPUT_SIZE,
            M::OUTPUT_SIZE
        );
        return ExitCode::from(2);
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    match serve_dense(model, stdin.lock(), stdout.lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", M::NAME);
            ExitCode::FAILURE
        }
    }
}

/// Turns `{"text": ...}` into token ids with a model's `tokenizer.json` (feature `text`;
/// without it, every text is an error that says so).
#[cfg(feature = "text")]
pub struct TextTokenizer(tokenizers::Tokenizer);

#[cfg(feature = "text")]
impl TextTokenizer {
    /// Loads `tokenizer.json` text; sequences are truncated to `max_len` tokens.
    pub fn new(json: &str, max_len: usize) -> Result<Self, String> {
        let mut t: tokenizers::Tokenizer =
            json.parse().map_err(|e| format!("tokenizer.json: {e}"))?;
        t.with_padding(None);
        t.with_truncation(Some(tokenizers::TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| format!("tokenizer: {e}"))?;
        Ok(TextTokenizer(t))
    }

    /// Token ids and token type ids of `text`, with the special tokens.
    pub fn encode(&self, text: &str) -> Result<(Vec<u32>, Vec<u32>), String> {
        let e = self
            .0
            .encode(text, true)
            .map_err(|e| format!("`text`: cannot tokenize: {e}"))?;
        Ok((e.get_ids().to_vec(), e.get_type_ids().to_vec()))
    }
}

/// Turns `{"text": ...}` into token ids with a model's `tokenizer.json` (feature `text`;
/// without it, every text is an error that says so).
#[cfg(not(feature = "text"))]
pub struct TextTokenizer;

#[cfg(not(feature = "text"))]
impl TextTokenizer {
    /// Loads `tokenizer.json` text; sequences are truncated to `max_len` tokens.
    pub fn new(_json: &str, _max_len: usize) -> Result<Self, String> {
        Ok(TextTokenizer)
    }

    /// Token ids and token type ids of `text`, with the special tokens.
    pub fn encode(&self, _text: &str) -> Result<(Vec<u32>, Vec<u32>), String> {
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

/// One input line of an encoder model, parsed: ids, mask, token types.
pub type EncoderLine = (Vec<u32>, Option<Vec<u32>>, Option<Vec<u32>>);

/// Parses one input line of an encoder model: `{"input_ids": [...], "attention_mask": [...],
/// "token_type_ids": [...]}` (the last two optional) or `{"text": "..."}`.
///
/// ```
/// let (ids, mask, types) =
///     dynq_runtime::serve::parse_encoder_line(r#"{"input_ids": [101, 7, 102]}"#, None).unwrap();
/// assert_eq!((ids, mask, types), (vec![101, 7, 102], None, None));
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
        let (ids, types) = t.encode(text)?;
        return Ok((ids, None, Some(types)));
    }
    let ids = id_array(&map, "input_ids")?.ok_or("missing key `input_ids` (or `text`)")?;
    Ok((
        ids,
        id_array(&map, "attention_mask")?,
        id_array(&map, "token_type_ids")?,
    ))
}

fn floats(v: &[f32]) -> Value {
    Value::Array(v.iter().map(|&x| Value::from(x)).collect())
}

/// Serves an encoder model over `input`/`output`; returns the number of sequences or the
/// error message (naming the line).
pub fn serve_encoder<M: crate::EncoderModel>(
    model: &M,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<usize, String> {
    use crate::BertOutput;
    let tokenizer = match M::TOKENIZER_JSON {
        Some(json) => Some(TextTokenizer::new(json, M::MAX_SEQ_LEN)?),
        None => None,
    };
    let mut count = 0;
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| format!("line {n}: cannot read: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let (ids, mask, types) =
            parse_encoder_line(&line, tokenizer.as_ref()).map_err(|e| format!("line {n}: {e}"))?;
        let bert = crate::BertInput {
            input_ids: &ids,
            attention_mask: mask.as_deref(),
            token_type_ids: types.as_deref(),
        };
        let mut out = vec![0.0f32; M::output_len(ids.len())];
        model
            .forward(&bert, &mut out)
            .map_err(|e| format!("line {n}: {e}"))?;
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
        writeln!(output, "{}", Value::Object(map))
            .and_then(|()| output.flush())
            .map_err(|e| format!("line {n}: cannot write output: {e}"))?;
        count += 1;
    }
    Ok(count)
}

/// `main` of a standalone encoder binary: stdin to stdout, errors to stderr.
pub fn encoder_main<M: crate::EncoderModel>(model: &M) -> ExitCode {
    if std::env::args().len() > 1 {
        let text = if M::TOKENIZER_JSON.is_some() {
            " or {\"text\": \"...\"}"
        } else {
            ""
        };
        eprintln!(
            "usage: {0} < input.jsonl\n\nReads one JSON object per line, {{\"input_ids\": [...], \"attention_mask\": [...],\n\
             \"token_type_ids\": [...]}}{text} (up to {1} tokens), and writes one per line.",
            M::NAME,
            M::MAX_SEQ_LEN
        );
        return ExitCode::from(2);
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    match serve_encoder(model, stdin.lock(), stdout.lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", M::NAME);
            ExitCode::FAILURE
        }
    }
}
