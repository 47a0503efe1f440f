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
