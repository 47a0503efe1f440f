//! The JSON-lines driver of standalone encoder binaries, `{"text": ...}` included, over a stub
//! model that echoes what it was given (the real models are covered by the CLI tests).

use std::sync::mpsc;
use std::time::Duration;

use dynq_runtime::serve::{serve_encoder, ServeOptions, Served};
use dynq_runtime::{BertInput, BertOutput, EncoderModel, Error};

struct Echo;

// The largest batch (in tokens) `Echo` has been given, per thread.
thread_local! {
    /// The most tokens one `forward_batch` of this thread's runs got (the tests run in
    /// parallel, each on its own thread, and a server calls the model on the caller's thread).
    static LARGEST_BATCH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

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

    fn forward_batch(&self, inputs: &[BertInput<'_>], out: &mut [f32]) -> Result<(), Error> {
        let tokens = inputs.iter().map(|i| i.input_ids.len()).sum();
        LARGEST_BATCH.with(|l| l.set(l.get().max(tokens)));
        for (index, (input, o)) in inputs.iter().zip(out.chunks_mut(3)).enumerate() {
            self.forward(input, o).map_err(|error| Error::Item {
                index,
                error: Box::new(error),
            })?;
        }
        Ok(())
    }
}

/// Serves `input`: the output, or the first failed line's `line N: error`.
fn serve(input: &str) -> Result<String, String> {
    serve_with(&ServeOptions::default(), input)
}

fn serve_with(options: &ServeOptions, input: &str) -> Result<String, String> {
    let (out, served) = serve_all(options, input)?;
    match errors(&out).into_iter().next() {
        Some(e) => {
            assert!(served.failed > 0);
            Err(e)
        }
        None => Ok(out),
    }
}

/// Serves `input`: all of the output, and the counts.
fn serve_all(options: &ServeOptions, input: &str) -> Result<(String, Served), String> {
    let mut out = Vec::new();
    let served = serve_encoder(&Echo, options, input.as_bytes(), &mut out)?;
    Ok((String::from_utf8(out).unwrap(), served))
}

/// The `{"line": N, "error": "..."}` lines of an output, as `line N: ...`.
fn errors(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Some(format!("line {}: {}", v.get("line")?, v["error"].as_str()?))
        })
        .collect()
}

#[test]
fn text_is_tokenized_without_padding_and_truncated() {
    // [CLS] hello world [SEP] = 101 7592 2088 102.
    let out = serve("{\"text\": \"hello world\"}\n").unwrap();
    assert_eq!(out, "{\"embedding\":[4.0,101.0,102.0]}\n");
    let long = "word ".repeat(50);
    let out = serve(&format!("{{\"text\": \"{long}\"}}\n")).unwrap();
    assert_eq!(
        out, "{\"embedding\":[8.0,101.0,102.0],\"truncated\":true}\n",
        "truncated at MAX_SEQ_LEN with [SEP] kept, and said so"
    );
    // Exactly MAX_SEQ_LEN tokens is not a truncation: [CLS] + 6 words + [SEP].
    let out = serve("{\"text\": \"word word word word word word\"}\n").unwrap();
    assert_eq!(out, "{\"embedding\":[8.0,101.0,102.0]}\n");
    let strict = ServeOptions {
        no_truncate: true,
        ..ServeOptions::default()
    };
    let e = serve_with(
        &strict,
        &format!("{{\"input_ids\": [1]}}\n{{\"text\": \"{long}\"}}\n"),
    )
    .unwrap_err();
    assert_eq!(
        e,
        "line 2: `text`: longer than the model's 8 tokens (--no-truncate)"
    );
}

#[test]
fn overlong_lines_are_refused_without_reading_them_whole() {
    let small = ServeOptions {
        max_line_bytes: 24,
        ..ServeOptions::default()
    };
    // 24 bytes exactly pass, with \n or \r\n.
    let ok = "{\"input_ids\": [1, 2345]}";
    assert_eq!(ok.len(), 24);
    let out = serve_with(&small, &format!("{ok}\r\n{ok}\n{ok}")).unwrap();
    assert_eq!(out.lines().count(), 3);
    let long = "{\"input_ids\": [1, 23456]}";
    let e = serve_with(&small, &format!("{ok}\n{long}\n{ok}\n")).unwrap_err();
    assert_eq!(
        e,
        "line 2: longer than 24 bytes; split the input or raise --max-line-bytes"
    );
    // A 10 MB line with the default limit: refused at once.
    let huge = format!("{{\"text\": \"{}\"}}\n", "word ".repeat(2_000_000));
    let t = std::time::Instant::now();
    let e = serve(&huge).unwrap_err();
    assert_eq!(
        e,
        "line 1: longer than 1048576 bytes; split the input or raise --max-line-bytes"
    );
    assert!(t.elapsed().as_secs() < 5);
    let mut out = Vec::new();
    let served = serve_encoder(&Echo, &small, &b"{\"text\": \"\xff\"}\n"[..], &mut out).unwrap();
    assert_eq!(
        served,
        Served {
            answered: 0,
            failed: 1
        }
    );
    let e = errors(&String::from_utf8(out).unwrap()).remove(0);
    assert!(e.starts_with("line 1: not UTF-8 text"), "{e}");
}

#[test]
fn a_closed_output_ends_the_run_quietly() {
    /// A writer whose reader goes away after `0` lines.
    struct Closed(usize);
    impl std::io::Write for Closed {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.0 -= b.iter().filter(|&&c| c == b'\n').count();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let input = "{\"input_ids\": [1]}\n".repeat(5);
    let options = ServeOptions {
        batch_tokens: 1,
        ..ServeOptions::default()
    };
    let served = serve_encoder(&Echo, &options, input.as_bytes(), Closed(1)).unwrap();
    assert_eq!(served.answered, 1);
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

#[test]
fn a_bad_line_is_answered_in_its_place_and_the_others_go_on() {
    let input =
        "{\"input_ids\": [101, 5, 102]}\n{\"input_ids\": [7, 99999]}\n{\"input_ids\": []}\n\
                 not json\n{\"input_ids\": [1, 2, 3, 4, 5, 6, 7, 8, 9]}\n{\"input_ids\": [7]}\n";
    for batch_tokens in [1, 3, 2048] {
        let options = ServeOptions {
            batch_tokens,
            ..ServeOptions::default()
        };
        let (out, served) = serve_all(&options, input).unwrap();
        assert_eq!(
            served,
            Served {
                answered: 2,
                failed: 4
            }
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 6, "one answer per input line: {out}");
        assert_eq!(lines[0], "{\"embedding\":[3.0,101.0,102.0]}");
        assert_eq!(lines[5], "{\"embedding\":[1.0,7.0,7.0]}");
        assert_eq!(
            errors(&out),
            [
                "line 2: input_ids[1] = 99999: expected a value below 30522",
                "line 3: empty input: a sequence needs at least one token",
                "line 4: invalid JSON: expected ident at line 1 column 2",
                "line 5: sequence of 9 tokens is longer than max_seq_len 8",
            ]
        );
    }
}

#[test]
fn batches_keep_to_the_token_budget() {
    let input = "{\"input_ids\": [1, 2, 3]}\n".repeat(200);
    let options = ServeOptions {
        batch_tokens: 7,
        ..ServeOptions::default()
    };
    let (out, served) = serve_all(&options, &input).unwrap();
    assert_eq!(
        served,
        Served {
            answered: 200,
            failed: 0
        }
    );
    assert!(out.lines().all(|l| l == "{\"embedding\":[3.0,1.0,3.0]}"));
    assert!(LARGEST_BATCH.with(|l| l.get()) <= 7);
}

#[test]
fn output_starts_before_input_ends() {
    /// Gives line 1, then line 2 only once the output has answered line 1.
    struct Waiting {
        lines: Vec<&'static [u8]>,
        written: mpsc::Receiver<()>,
    }
    impl std::io::Read for Waiting {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.lines.is_empty() {
                return Ok(0);
            }
            if self.lines.len() == 1 {
                self.written
                    .recv_timeout(Duration::from_secs(20))
                    .map_err(|_| std::io::Error::other("no output before the input ended"))?;
            }
            let line = self.lines.remove(0);
            buf[..line.len()].copy_from_slice(line);
            Ok(line.len())
        }
    }
    struct Signal(mpsc::Sender<()>, Vec<u8>);
    impl std::io::Write for Signal {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.1.extend_from_slice(b);
            let _ = self.0.send(());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (tx, rx) = mpsc::channel();
    let input = std::io::BufReader::new(Waiting {
        lines: vec![b"{\"input_ids\": [5]}\n", b"{\"input_ids\": [6]}\n"],
        written: rx,
    });
    let mut out = Signal(tx, Vec::new());
    let served = serve_encoder(&Echo, &ServeOptions::default(), input, &mut out).unwrap();
    assert_eq!(
        served,
        Served {
            answered: 2,
            failed: 0
        }
    );
    assert_eq!(
        String::from_utf8(out.1).unwrap(),
        "{\"embedding\":[1.0,5.0,5.0]}\n{\"embedding\":[1.0,6.0,6.0]}\n"
    );
}
