//! The JSON-lines driver of standalone encoder binaries, `{"text": ...}` included, over a stub
//! model that echoes what it was given (the real models are covered by the CLI tests).

use dynq_runtime::serve::serve_encoder;
use dynq_runtime::{BertInput, BertOutput, EncoderModel, Error};

struct Echo;

impl EncoderModel for Echo {
    const NAME: &'static str = "echo";
    const OUTPUT: BertOutput = BertOutput::MeanPooled;
    const HIDDEN_SIZE: usize = 3;
    const OUTPUT_SIZE: usize = 3;
    const MAX_SEQ_LEN: usize = 8;
    const LABELS: &'static [&'static str] = &[];
    const TOKENIZER_JSON: Option<&'static str> =
        Some(include_str!("../models/minilm/tokenizer.json"));

    fn forward(&self, input: &BertInput<'_>, out: &mut [f32]) -> Result<(), Error> {
        let len = input.check(30522, 2, Self::MAX_SEQ_LEN)?;
        out[0] = len as f32;
        out[1] = input.input_ids[0] as f32;
        out[2] = input.input_ids[len - 1] as f32;
        Ok(())
    }
}

fn serve(input: &str) -> Result<String, String> {
    let mut out = Vec::new();
    serve_encoder(&Echo, input.as_bytes(), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn text_is_tokenized_without_padding_and_truncated() {
    // [CLS] hello world [SEP] = 101 7592 2088 102.
    let out = serve("{\"text\": \"hello world\"}\n").unwrap();
    assert_eq!(out, "{\"embedding\":[4.0,101.0,102.0]}\n");
    let long = "word ".repeat(50);
    let out = serve(&format!("{{\"text\": \"{long}\"}}\n")).unwrap();
    assert_eq!(
        out, "{\"embedding\":[8.0,101.0,102.0]}\n",
        "truncated at MAX_SEQ_LEN with [SEP] kept"
    );
}

#[test]
fn ids_and_bad_lines() {
    let out = serve("{\"input_ids\": [101, 5, 102]}\n\n{\"input_ids\": [7]}\n").unwrap();
    assert_eq!(
        out,
        "{\"embedding\":[3.0,101.0,102.0]}\n{\"embedding\":[1.0,7.0,7.0]}\n"
    );
    let e = serve("{\"input_ids\": [1]}\n{\"text\": \"a\", \"input_ids\": [1]}\n").unwrap_err();
    assert_eq!(
        e,
        "line 2: `text` cannot be combined with `input_ids`, `attention_mask` or `token_type_ids`"
    );
    let e = serve("{\"ids\": [1]}\n").unwrap_err();
    assert_eq!(e, "line 1: unknown key `ids`, expected one of `input_ids`, `attention_mask`, `token_type_ids`, `text`");
    let e = serve("{\"text\": 5}\n").unwrap_err();
    assert_eq!(e, "line 1: `text`: expected a string, found a number");
    let e = serve("{}\n").unwrap_err();
    assert_eq!(e, "line 1: missing key `input_ids` (or `text`)");
    let e = serve("{\"input_ids\": [1, 2, 3, 4, 5, 6, 7, 8, 9]}\n").unwrap_err();
    assert_eq!(
        e,
        "line 1: sequence of 9 tokens is longer than max_seq_len 8"
    );
}
