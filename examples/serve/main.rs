//! all-MiniLM-L6-v2 as an HTTP embedding service, compiled into this binary by `dynq_model!`.
//!
//! ```text
//! cargo run --release --example serve -- [--port 8080] [--host 127.0.0.1] [--threads N]
//! curl -s localhost:8080/embed -H 'content-type: application/json' -d '{"inputs": "Hello"}'
//! curl -s localhost:8080/v1/embeddings -H 'content-type: application/json' \
//!     -d '{"input": ["Hello", "world"]}'
//! ```
//!
//! The same server `serve` runs in every binary `dynq build` makes (see
//! `dynq_runtime::http` for the routes, batching and limits): requests that arrive together
//! run as one ragged batch, and each answer is bit-identical to its text run alone. Ctrl-C or
//! SIGTERM stops accepting connections and ends once every accepted request is answered.

use std::process::ExitCode;

dynq_macros::dynq_model!("../models/minilm/minilm.toml");

fn main() -> ExitCode {
    dynq_runtime::serve::encoder_http_main(&Minilm)
}
