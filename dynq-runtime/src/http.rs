//! An HTTP server for generated models (feature `http`): what `serve` in every standalone
//! binary runs.
//!
//! Routes, by what the model outputs:
//!
//! | route | model | request | answer |
//! |---|---|---|---|
//! | `POST /v1/embeddings` | pooled embedding | OpenAI: `input` (string, strings, token ids or lists of them), `encoding_format` (`float`, `base64`) | `{"object": "list", "data": [{"embedding", "index"}], "model", "usage"}` |
//! | `POST /embed` | pooled embedding | text-embeddings-inference: `inputs` (string or list), `normalize`, `truncate` | `[[f32]]` |
//! | `POST /embed_all` | every hidden state | `inputs`, `truncate` | `[[[f32]]]` |
//! | `POST /predict`, `/classify` | logits | `inputs` (text, pair `[a, b]`, token ids, or a list of them), `raw_scores`, `truncate` | `[{"label", "score"}]` sorted (a list of them for a batch) |
//! | `POST /rerank` | one logit (cross-encoder) | `query`, `texts`, `raw_scores`, `return_text`, `truncate` | `[{"index", "score", "text"?}]` sorted |
//! | `POST /predict` | dense or recurrent | one JSON-lines input object | its output object |
//! | `GET /health`, `/info`, `/metrics` | all | | status; model, sizes, kernel, limits; Prometheus text |
//!
//! Dynamic batching: each request's inputs are tokenized on the HTTP threads and enter a
//! bounded queue; one compute thread takes the first request, then whatever else is queued
//! (waiting up to [`HttpOptions::max_wait`] for more) up to [`HttpOptions::max_batch_tokens`]
//! tokens, runs them as ragged batches, and answers each request. A result is bit-identical to
//! the same input run alone, whatever else shares its batch.
//!
//! Bad input is answered, never fatal: malformed JSON or a field of the wrong type is 422 with
//! the field's path, a body that is not UTF-8 is 400, a body over the limit or an input longer
//! than the model's maximum (without `truncate`) is 413, a full queue is 429 with
//! `Retry-After`, a route the model does not serve is 404. Errors are JSON: `{"error": "...",
//! "error_type": "..."}` (text-embeddings-inference's shape) and, on `/v1/` routes, OpenAI's
//! `{"error": {"message", "type", "param", "code"}}`. SIGTERM or Ctrl-C stops accepting
//! connections and ends once every accepted request is answered.

use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::{json, Map, Value};

use crate::ops::bert::l2_normalize;
use crate::serve::{kind as kind_of, TextTokenizer};
use crate::BertOutput;

/// Settings of an HTTP server: the `serve` subcommand's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Token budget of one batch (`--max-batch-tokens`): the compute thread gathers queued
    /// requests up to this many tokens (a larger request runs in chunks of it).
    pub max_batch_tokens: usize,
    /// How long the compute thread waits for more requests to fill a batch once it holds one
    /// (`--max-wait-ms`; 0: it runs what is queued at once, and requests that arrive meanwhile
    /// form the next batch).
    pub max_wait: Duration,
    /// Requests waiting for the model at most (`--max-queue`); one more is answered 429.
    pub max_queue: usize,
    /// Inputs in one request at most (`--max-inputs`); more is 413.
    pub max_inputs: usize,
    /// Request body size at most, in bytes (`--max-body-bytes`); more is 413.
    pub max_body_bytes: usize,
    /// Cut texts longer than the model's maximum instead of answering 413, for requests that do
    /// not say (`--auto-truncate`; a request's `truncate` field overrides it).
    pub auto_truncate: bool,
    /// Threads that accept connections, parse, tokenize and format (`--http-threads`); the
    /// model runs on its own thread (and `--threads` compute threads).
    pub http_threads: usize,
}

/// [`HttpOptions`]' defaults (the `serve` flags' defaults).
pub mod defaults {
    /// `--max-queue`.
    pub const MAX_QUEUE: usize = 1024;
    /// `--max-inputs`.
    pub const MAX_INPUTS: usize = 512;
    /// `--max-body-bytes` (text-embeddings-inference's payload limit).
    pub const MAX_BODY_BYTES: usize = 2_000_000;
    /// `--http-threads`.
    pub const HTTP_THREADS: usize = 2;
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_batch_tokens: crate::BATCH_TOKENS,
            max_wait: Duration::ZERO,
            max_queue: defaults::MAX_QUEUE,
            max_inputs: defaults::MAX_INPUTS,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            auto_truncate: false,
            http_threads: defaults::HTTP_THREADS,
        }
    }
}

/// What the server knows of the model: everything but how to run it.
#[derive(Debug, Clone)]
struct ModelInfo {
    name: &'static str,
    kind: Kind,
    precision: &'static str,
    build_id: &'static str,
}

#[derive(Debug, Clone)]
enum Kind {
    Encoder {
        family: &'static str,
        output: BertOutput,
        hidden: usize,
        output_size: usize,
        max_len: usize,
        labels: &'static [&'static str],
        normalized: bool,
    },
    Dense {
        input: usize,
        output: usize,
    },
    Recurrent {
        shape: crate::ops::rnn::RnnShape,
    },
}

impl ModelInfo {
    /// The POST routes this model serves.
    fn routes(&self) -> &'static [&'static str] {
        match &self.kind {
            Kind::Encoder {
                output,
                output_size,
                ..
            } => match output {
                BertOutput::MeanPooled | BertOutput::Cls => &["/v1/embeddings", "/embed"],
                BertOutput::LastHiddenState => &["/embed_all"],
                // A cross-encoder (one logit) reranks; any classifier predicts.
                BertOutput::Logits if *output_size == 1 => &["/predict", "/classify", "/rerank"],
                BertOutput::Logits => &["/predict", "/classify"],
            },
            Kind::Dense { .. } | Kind::Recurrent { .. } => &["/predict"],
        }
    }

    /// A short description for errors: "pooled embeddings", "logits (3 labels)", ...
    fn what(&self) -> String {
        match &self.kind {
            Kind::Encoder {
                output: BertOutput::MeanPooled | BertOutput::Cls,
                ..
            } => "an embedding model".into(),
            Kind::Encoder {
                output: BertOutput::LastHiddenState,
                ..
            } => "a model of every token's hidden state".into(),
            Kind::Encoder {
                output: BertOutput::Logits,
                output_size,
                ..
            } => format!("a classifier ({output_size} logits)"),
            Kind::Dense { .. } => "a dense model".into(),
            Kind::Recurrent { .. } => "a recurrent model".into(),
        }
    }
}

/// One sequence for the encoder.
#[derive(Debug)]
struct Seq {
    ids: Vec<u32>,
    type_ids: Option<Vec<u32>>,
}

/// What a request asks of the compute thread.
#[derive(Debug)]
enum Work {
    /// Encoder sequences, run batched.
    Seqs(Vec<Seq>),
    /// One JSON-lines input of a dense or recurrent model.
    Line(String),
}

/// Its answer.
#[derive(Debug)]
enum Reply {
    Seqs(Vec<Result<Vec<f32>, String>>),
    Line(Result<String, String>),
}

/// A queued request.
struct Job {
    work: Work,
    tokens: usize,
    enqueued: Instant,
    reply: tokio::sync::oneshot::Sender<Reply>,
}

/// How the compute thread runs work.
trait Compute {
    /// One ragged batch of sequences: each one's output or error.
    fn seqs(&self, inputs: &[crate::BertInput<'_>]) -> Vec<Result<Vec<f32>, String>>;
    /// One JSON-lines input.
    fn line(&self, line: &str) -> Result<String, String>;
}

struct EncoderCompute<'m, M>(&'m M);

impl<M: crate::EncoderModel> Compute for EncoderCompute<'_, M> {
    fn seqs(&self, inputs: &[crate::BertInput<'_>]) -> Vec<Result<Vec<f32>, String>> {
        crate::serve::forward_each(self.0, inputs)
    }
    fn line(&self, _: &str) -> Result<String, String> {
        Err("an encoder takes sequences".into())
    }
}

struct DenseCompute<'m, M>(&'m M);

impl<M: crate::DenseModel> Compute for DenseCompute<'_, M> {
    fn seqs(&self, inputs: &[crate::BertInput<'_>]) -> Vec<Result<Vec<f32>, String>> {
        vec![Err("a dense model takes rows".into()); inputs.len()]
    }
    fn line(&self, line: &str) -> Result<String, String> {
        crate::serve::dense_line(self.0, line, &mut vec![0.0; M::OUTPUT_SIZE])
    }
}

struct RecurrentCompute<'m, M>(&'m M);

impl<M: crate::RecurrentModel> Compute for RecurrentCompute<'_, M> {
    fn seqs(&self, inputs: &[crate::BertInput<'_>]) -> Vec<Result<Vec<f32>, String>> {
        vec![Err("a recurrent model takes steps".into()); inputs.len()]
    }
    fn line(&self, line: &str) -> Result<String, String> {
        crate::serve::recurrent_line(self.0, line)
    }
}

/// The Prometheus metrics (`GET /metrics`).
struct Metrics {
    registry: Registry,
    requests: Family<Vec<(String, String)>, Counter>,
    request_seconds: Histogram,
    queue_seconds: Histogram,
    inference_seconds: Histogram,
    batch_inputs: Histogram,
    batch_tokens: Histogram,
    inputs: Counter,
    tokens: Counter,
    queue_depth: Gauge,
    in_flight: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("dynq");
        let requests = Family::<Vec<(String, String)>, Counter>::default();
        let seconds = || Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        let request_seconds = seconds();
        let queue_seconds = seconds();
        let inference_seconds = seconds();
        let batch_inputs = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let batch_tokens = Histogram::new(exponential_buckets(8.0, 2.0, 12));
        let inputs = Counter::default();
        let tokens = Counter::default();
        let queue_depth = Gauge::default();
        let in_flight = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its answer",
            request_seconds.clone(),
        );
        registry.register(
            "queue_duration_seconds",
            "Time a request waited for the model",
            queue_seconds.clone(),
        );
        registry.register(
            "inference_duration_seconds",
            "Time of one batched forward",
            inference_seconds.clone(),
        );
        registry.register(
            "batch_inputs",
            "Inputs per batched forward",
            batch_inputs.clone(),
        );
        registry.register(
            "batch_tokens",
            "Tokens per batched forward",
            batch_tokens.clone(),
        );
        registry.register("inputs", "Inputs run", inputs.clone());
        registry.register("tokens", "Tokens run", tokens.clone());
        registry.register(
            "queue_depth",
            "Requests waiting for the model",
            queue_depth.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests received and not yet answered",
            in_flight.clone(),
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            queue_seconds,
            inference_seconds,
            batch_inputs,
            batch_tokens,
            inputs,
            tokens,
            queue_depth,
            in_flight,
        }
    }
}

/// Counts a request in flight for as long as it lives (a client that hangs up drops it too).
struct InFlight(Gauge);

impl InFlight {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What the handlers share.
struct App {
    info: ModelInfo,
    tokenizer: Option<TextTokenizer>,
    queue: SyncSender<Job>,
    metrics: Arc<Metrics>,
    options: HttpOptions,
    started: Instant,
    answered: AtomicU64,
}

/// A refused request: its status and message.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// The error type text-embeddings-inference and OpenAI clients read.
    fn error_type(&self) -> &'static str {
        match self.status {
            StatusCode::TOO_MANY_REQUESTS => "Overloaded",
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => "NotFound",
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::INTERNAL_SERVER_ERROR => "Backend",
            _ => "Validation",
        }
    }

    /// The JSON answer, OpenAI's shape for `/v1/` routes.
    fn into_response(self, openai: bool) -> Response {
        let body = if openai {
            let kind = match self.status.as_u16() {
                429 => "rate_limit_error",
                500..=599 => "server_error",
                _ => "invalid_request_error",
            };
            json!({ "error": { "message": self.message, "type": kind, "param": null, "code": null } })
        } else {
            json!({ "error": self.message, "error_type": self.error_type() })
        };
        let mut r = json_response(self.status, &body);
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// What a request did, for the log line and the metrics (a response extension).
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    inputs: usize,
    tokens: usize,
}

/// The request body as a JSON object whose keys are all in `keys` (`model` and `user`, which
/// clients send by habit, are accepted everywhere and ignored).
fn body_object(
    body: Result<Bytes, BytesRejection>,
    keys: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    let bytes = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!(
                "request body: larger than the server's limit (--max-body-bytes): {}",
                e.body_text()
            ))
        } else {
            ApiError::new(status, format!("request body: {}", e.body_text()))
        }
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ApiError::bad(format!(
            "request body: not UTF-8 text ({e}); send JSON encoded as UTF-8"
        ))
    })?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::invalid(format!("request body: invalid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::invalid(format!(
            "request body: expected a JSON object, found {}",
            kind_of(&value)
        )));
    };
    if let Some(k) = map
        .keys()
        .find(|k| !keys.contains(&k.as_str()) && !["model", "user"].contains(&k.as_str()))
    {
        let expected: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
        return Err(ApiError::invalid(format!(
            "unknown field `{k}`, expected {}",
            expected.join(", ")
        )));
    }
    Ok(map)
}

fn bool_field(map: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::invalid(format!(
            "`{key}`: expected true or false, found {}",
            kind_of(v)
        ))),
    }
}

fn string_field<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ApiError::invalid(format!(
            "`{key}`: expected a string, found {}",
            kind_of(v)
        ))),
    }
}

/// One input as a request gives it.
#[derive(Debug)]
enum Input<'a> {
    Text(&'a str),
    Pair(&'a str, &'a str),
    Ids(Vec<u32>),
}

/// A list of token ids at `path`, or `None` if `v` is not an array of numbers.
fn ids(v: &Value, path: &str) -> Result<Option<Vec<u32>>, ApiError> {
    let Value::Array(items) = v else {
        return Ok(None);
    };
    if !items.first().is_some_and(Value::is_number) {
        return Ok(None);
    }
    crate::serve::token_ids(items, path)
        .map(Some)
        .map_err(ApiError::invalid)
}

/// `inputs` of an embedding route: a string, a list of token ids, or a list of strings and
/// lists of token ids.
fn embed_inputs<'a>(v: &'a Value, key: &str) -> Result<Vec<Input<'a>>, ApiError> {
    let path = format!("`{key}`");
    if let Value::String(s) = v {
        return Ok(vec![Input::Text(s)]);
    }
    if let Some(ids) = ids(v, &path)? {
        return Ok(vec![Input::Ids(ids)]);
    }
    let Value::Array(items) = v else {
        return Err(ApiError::invalid(format!(
            "{path}: expected a string, a list of strings or a list of token ids, found {}",
            kind_of(v)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = format!("{path}[{i}]");
            if let Value::String(s) = item {
                return Ok(Input::Text(s));
            }
            if let Value::Array(a) = item {
                if a.is_empty() {
                    return Ok(Input::Ids(Vec::new()));
                }
            }
            match ids(item, &p)? {
                Some(ids) => Ok(Input::Ids(ids)),
                None => Err(ApiError::invalid(format!(
                    "{p}: expected a string or a list of token ids, found {}",
                    kind_of(item)
                ))),
            }
        })
        .collect()
}

/// `inputs` of `/predict`: a text, a pair `[a, b]`, a list of token ids, or a list of them
/// (`[["a"], ["b", "c"], [101, 7592, 102]]`; `["a", ...]` of other than two strings is refused
/// as ambiguous). Returns the inputs and whether the request was a batch.
fn predict_inputs(v: &Value) -> Result<(Vec<Input<'_>>, bool), ApiError> {
    fn one<'a>(v: &'a Value, p: &str) -> Result<Input<'a>, ApiError> {
        if let Some(ids) = ids(v, p)? {
            return Ok(Input::Ids(ids));
        }
        match v {
            Value::String(s) => Ok(Input::Text(s)),
            Value::Array(a) => match a.as_slice() {
                [Value::String(s)] => Ok(Input::Text(s)),
                [Value::String(a), Value::String(b)] => Ok(Input::Pair(a, b)),
                _ => Err(ApiError::invalid(format!(
                    "{p}: expected a text, a pair of texts [\"a\", \"b\"] or token ids, found an \
                     array of {} items",
                    a.len()
                ))),
            },
            _ => Err(ApiError::invalid(format!(
                "{p}: expected a text or a pair of texts, found {}",
                kind_of(v)
            ))),
        }
    }
    if let Some(ids) = ids(v, "`inputs`")? {
        return Ok((vec![Input::Ids(ids)], false));
    }
    match v {
        Value::String(s) => Ok((vec![Input::Text(s)], false)),
        Value::Array(items) if items.iter().all(Value::is_string) => match items.len() {
            2 => Ok((vec![one(v, "`inputs`")?], false)),
            n => Err(ApiError::invalid(format!(
                "`inputs`: a list of {n} strings is neither a text nor a pair; send a batch as \
                 [[\"text\"], [\"a\", \"b\"], ...]"
            ))),
        },
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| one(x, &format!("`inputs`[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| (v, true)),
        _ => Err(ApiError::invalid(format!(
            "`inputs`: expected a text, a pair of texts, token ids or a list of them, found {}",
            kind_of(v)
        ))),
    }
}

impl App {
    fn max_len(&self) -> usize {
        match self.info.kind {
            Kind::Encoder { max_len, .. } => max_len,
            _ => 0,
        }
    }

    /// Tokenizes `inputs` (named `key` in errors): cut at the model's maximum when `truncate`,
    /// else 413 for a longer one.
    fn sequences(
        &self,
        inputs: Vec<Input<'_>>,
        key: &str,
        truncate: bool,
    ) -> Result<Vec<Seq>, ApiError> {
        if inputs.is_empty() {
            return Err(ApiError::invalid(format!(
                "`{key}`: an empty list; send at least one input"
            )));
        }
        if inputs.len() > self.options.max_inputs {
            return Err(ApiError::too_large(format!(
                "`{key}`: {} inputs, more than the server's {} per request (--max-inputs)",
                inputs.len(),
                self.options.max_inputs
            )));
        }
        let max = self.max_len();
        let many = inputs.len() > 1;
        let at = |i: usize| {
            if many {
                format!("`{key}`[{i}]")
            } else {
                format!("`{key}`")
            }
        };
        inputs
            .into_iter()
            .enumerate()
            .map(|(i, input)| match input {
                Input::Ids(ids) => {
                    if ids.len() > max {
                        return Err(ApiError::too_large(format!(
                            "{}: {} token ids, more than the model's {max}",
                            at(i),
                            ids.len()
                        )));
                    }
                    Ok(Seq {
                        ids,
                        type_ids: None,
                    })
                }
                Input::Text(t) => self.tokenize(&at(i), t, None, truncate),
                Input::Pair(a, b) => self.tokenize(&at(i), a, Some(b), truncate),
            })
            .collect()
    }

    fn tokenize(
        &self,
        at: &str,
        text: &str,
        pair: Option<&str>,
        truncate: bool,
    ) -> Result<Seq, ApiError> {
        let Some(t) = &self.tokenizer else {
            return Err(ApiError::bad(format!(
                "{at}: this model has no tokenizer (no `tokenizer` in its TOML); send token \
                 ids, e.g. [101, 7592, 102]"
            )));
        };
        #[cfg(feature = "text")]
        {
            use crate::text::Truncate;
            let mode = if truncate {
                Truncate::AtMax
            } else {
                Truncate::Refuse
            };
            let e = match pair {
                None => t.encode(text, mode),
                Some(b) => t.encode_pair(text, b, mode),
            };
            match e {
                Ok(e) => Ok(Seq {
                    ids: e.ids,
                    type_ids: Some(e.type_ids),
                }),
                Err(crate::Error::TextTooLong { max, .. }) => Err(ApiError::too_large(format!(
                    "{at}: longer than the model's {max} tokens; send `\"truncate\": true` to \
                     cut it there"
                ))),
                Err(e) => Err(ApiError::bad(format!("{at}: {e}"))),
            }
        }
        #[cfg(not(feature = "text"))]
        {
            let _ = (t, text, pair, truncate);
            Err(ApiError::bad(format!(
                "{at}: text input needs dynq-runtime's `text` feature"
            )))
        }
    }

    /// Queues `work` and waits for its answer.
    async fn submit(&self, work: Work, tokens: usize) -> Result<Reply, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            work,
            tokens,
            enqueued: Instant::now(),
            reply: tx,
        };
        self.metrics.queue_depth.inc();
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.queue_depth.dec();
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "the server is at capacity ({} requests queued, --max-queue); retry later",
                        self.options.max_queue
                    ),
                );
                e.retry_after = Some(1);
                return Err(e);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.queue_depth.dec();
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the model has stopped",
                ));
            }
        }
        rx.await.map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the model stopped before answering",
            )
        })
    }

    /// Runs sequences and returns each one's output; a failed one fails the request (400,
    /// naming it).
    async fn run(&self, seqs: Vec<Seq>, key: &str) -> Result<(Vec<Vec<f32>>, Usage), ApiError> {
        let usage = Usage {
            inputs: seqs.len(),
            tokens: seqs.iter().map(|s| s.ids.len()).sum(),
        };
        let many = seqs.len() > 1;
        let Reply::Seqs(out) = self.submit(Work::Seqs(seqs), usage.tokens).await? else {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the model answered the wrong kind of result",
            ));
        };
        let rows = out
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.map_err(|e| {
                    if many {
                        ApiError::bad(format!("`{key}`[{i}]: {e}"))
                    } else {
                        ApiError::bad(format!("`{key}`: {e}"))
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rows, usage))
    }

    /// 404 unless this model serves `route`.
    fn check_route(&self, route: &str) -> Result<(), ApiError> {
        let routes = self.info.routes();
        if routes.contains(&route) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "`{}` is {}: it does not serve POST {route}; it serves POST {}",
                self.info.name,
                self.info.what(),
                routes.join(", ")
            ),
        ))
    }

    /// Whether the model L2-normalizes its embeddings itself (`normalize = true` in its TOML).
    fn normalized(&self) -> bool {
        matches!(
            self.info.kind,
            Kind::Encoder {
                normalized: true,
                ..
            }
        )
    }

    fn truncate(&self, map: &Map<String, Value>) -> Result<bool, ApiError> {
        Ok(bool_field(map, "truncate")?.unwrap_or(self.options.auto_truncate))
    }
}

/// `x` as a JSON number in its shortest `f32` form (`null` if not finite).
fn float(x: f32) -> Value {
    // `f32`'s Display is its shortest round-trip form; its `f64` reading prints the same digits,
    // and a client parsing them as `f32` gets `x` back bit for bit.
    let shortest: f64 = x.to_string().parse().unwrap_or(f64::NAN);
    serde_json::Number::from_f64(shortest).map_or(Value::Null, Value::Number)
}

/// An answer's JSON: a tree, or text already written (the embedding routes write their floats
/// straight from `f32`, in the shortest digits that read back to the same `f32`, without a
/// tree of `f64` numbers on the way: a third of a short request's time outside the forward).
enum Body {
    Tree(Value),
    Text(String),
}

impl From<Value> for Body {
    fn from(v: Value) -> Body {
        Body::Tree(v)
    }
}

/// JSON text of numbers, strings and lists of them (`f32`s in their shortest round-trip form,
/// `null` if not finite): serializing those cannot fail.
macro_rules! json_text {
    ($value:expr) => {
        serde_json::to_string($value).unwrap_or_default()
    };
}

type Answer = Result<(Body, Usage), ApiError>;

/// Finishes a handler: the JSON answer or the error, with its usage for the log line.
fn respond(answer: Answer, openai: bool) -> Response {
    match answer {
        Ok((body, usage)) => {
            let mut r = match body {
                Body::Tree(v) => json_response(StatusCode::OK, &v),
                Body::Text(t) => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    t,
                )
                    .into_response(),
            };
            r.extensions_mut().insert(usage);
            r
        }
        Err(e) => e.into_response(openai),
    }
}

async fn openai_embeddings(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(openai_embeddings_answer(&app, body).await, true)
}

async fn openai_embeddings_answer(app: &App, body: Result<Bytes, BytesRejection>) -> Answer {
    app.check_route("/v1/embeddings")?;
    let map = body_object(body, &["input", "encoding_format", "dimensions"])?;
    let base64 = match string_field(&map, "encoding_format")? {
        None | Some("float") => false,
        Some("base64") => true,
        Some(f) => {
            return Err(ApiError::invalid(format!(
                "`encoding_format`: expected \"float\" or \"base64\", found \"{f}\""
            )))
        }
    };
    let dims = match &app.info.kind {
        Kind::Encoder { output_size, .. } => *output_size,
        _ => 0,
    };
    match map.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(d) if d.as_u64() == Some(dims as u64) => {}
        Some(d) => {
            return Err(ApiError::invalid(format!(
                "`dimensions`: this model's embeddings have {dims} dimensions, found {d}"
            )))
        }
    }
    let input = map
        .get("input")
        .ok_or_else(|| ApiError::invalid("missing field `input`"))?;
    // OpenAI's endpoint refuses an input over the model's length rather than cutting it.
    let truncate = app.options.auto_truncate;
    let normalized = app.normalized();
    let seqs = app.sequences(embed_inputs(input, "input")?, "input", truncate)?;
    let (mut rows, usage) = app.run(seqs, "input").await?;
    // {"object": "list", "data": [{"object": "embedding", "embedding": ..., "index": i}, ...],
    // "model": ..., "usage": {...}}, written piece by piece (see `Body`).
    let mut out = String::from(r#"{"object":"list","data":["#);
    for (i, row) in rows.iter_mut().enumerate() {
        if !normalized {
            l2_normalize(row);
        }
        let embedding = if base64 {
            use base64::Engine;
            let bytes: Vec<u8> = row.iter().flat_map(|x| x.to_le_bytes()).collect();
            json_text!(&base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            json_text!(&row[..])
        };
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"object":"embedding","embedding":{embedding},"index":{i}}}"#
        ));
    }
    out.push_str(&format!(
        r#"],"model":{},"usage":{{"prompt_tokens":{t},"total_tokens":{t}}}}}"#,
        json_text!(app.info.name),
        t = usage.tokens
    ));
    Ok((Body::Text(out), usage))
}

/// `truncation_direction` and `prompt_name` are accepted only with the values dynq computes.
fn tei_options(map: &Map<String, Value>) -> Result<(), ApiError> {
    match string_field(map, "truncation_direction")? {
        None | Some("Right" | "right") => {}
        Some(d) => {
            return Err(ApiError::invalid(format!(
                "`truncation_direction`: only \"Right\" is supported, found \"{d}\""
            )))
        }
    }
    if let Some(p) = string_field(map, "prompt_name")? {
        return Err(ApiError::invalid(format!(
            "`prompt_name`: this model has no prompts, found \"{p}\""
        )));
    }
    Ok(())
}

async fn embed(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    respond(embed_answer(&app, body, "/embed").await, false)
}

async fn embed_all(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    respond(embed_answer(&app, body, "/embed_all").await, false)
}

async fn embed_answer(app: &App, body: Result<Bytes, BytesRejection>, route: &str) -> Answer {
    app.check_route(route)?;
    let all = route == "/embed_all";
    let keys: &[&str] = if all {
        &["inputs", "truncate", "truncation_direction", "prompt_name"]
    } else {
        &[
            "inputs",
            "normalize",
            "truncate",
            "truncation_direction",
            "prompt_name",
        ]
    };
    let map = body_object(body, keys)?;
    tei_options(&map)?;
    let normalized = app.normalized();
    let norm = bool_field(&map, "normalize")?.unwrap_or(true);
    if !all && !norm && normalized {
        return Err(ApiError::bad(
            "`normalize`: false is not available: this model L2-normalizes its embeddings itself \
             (`normalize = true` in its TOML)",
        ));
    }
    let inputs = map
        .get("inputs")
        .ok_or_else(|| ApiError::invalid("missing field `inputs`"))?;
    let seqs = app.sequences(
        embed_inputs(inputs, "inputs")?,
        "inputs",
        app.truncate(&map)?,
    )?;
    let (mut rows, usage) = app.run(seqs, "inputs").await?;
    let body = if all {
        let hidden = match app.info.kind {
            Kind::Encoder { hidden, .. } => hidden,
            _ => 1,
        };
        let states: Vec<Vec<&[f32]>> = rows.iter().map(|r| r.chunks(hidden).collect()).collect();
        json_text!(&states)
    } else {
        for r in &mut rows {
            // A model that normalizes itself already answered unit vectors: normalizing again
            // would move the last bits away from the in-process result.
            if norm && !normalized {
                l2_normalize(r);
            }
        }
        json_text!(&rows)
    };
    Ok((Body::Text(body), usage))
}

/// `label`/`score` objects sorted by score, highest first.
fn scores(app: &App, logits: &[f32], raw: bool) -> Value {
    let labels = match app.info.kind {
        Kind::Encoder { labels, .. } => labels,
        _ => &[],
    };
    let mut s: Vec<(usize, f32)> = if raw {
        logits.iter().copied().enumerate().collect()
    } else if logits.len() == 1 {
        vec![(0, sigmoid(logits[0]))]
    } else {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        e.into_iter().map(|x| x / sum).enumerate().collect()
    };
    rank(&mut s);
    Value::Array(
        s.into_iter()
            .map(|(i, score)| {
                let label = labels
                    .get(i)
                    .map_or_else(|| format!("LABEL_{i}"), |l| (*l).to_owned());
                json!({ "score": float(score), "label": label })
            })
            .collect(),
    )
}

/// Sorts `(index, score)` by score, highest first (ties in index order).
fn rank(s: &mut [(usize, f32)]) {
    s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

async fn predict(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    respond(predict_answer(&app, body).await, false)
}

async fn predict_answer(app: &App, body: Result<Bytes, BytesRejection>) -> Answer {
    app.check_route("/predict")?;
    if !matches!(app.info.kind, Kind::Encoder { .. }) {
        return line_answer(app, body).await;
    }
    let map = body_object(
        body,
        &["inputs", "raw_scores", "truncate", "truncation_direction"],
    )?;
    tei_options(&map)?;
    let raw = bool_field(&map, "raw_scores")?.unwrap_or(false);
    let inputs = map
        .get("inputs")
        .ok_or_else(|| ApiError::invalid("missing field `inputs`"))?;
    let (inputs, batch) = predict_inputs(inputs)?;
    let seqs = app.sequences(inputs, "inputs", app.truncate(&map)?)?;
    let (rows, usage) = app.run(seqs, "inputs").await?;
    let mut all: Vec<Value> = rows.iter().map(|r| scores(app, r, raw)).collect();
    let body = if batch {
        Value::Array(all)
    } else {
        all.pop().unwrap_or(Value::Null)
    };
    Ok((body.into(), usage))
}

/// A dense or recurrent model's `/predict`: the body is one JSON-lines input object.
async fn line_answer(app: &App, body: Result<Bytes, BytesRejection>) -> Answer {
    let map = body_object(body, &["input", "h0", "c0"])?;
    let line = Value::Object(map).to_string();
    let Reply::Line(out) = app.submit(Work::Line(line), 1).await? else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model answered the wrong kind of result",
        ));
    };
    let out = out.map_err(ApiError::invalid)?;
    // The JSON-lines answer is the body as it is (checked, not rebuilt: its floats keep their
    // digits).
    serde_json::from_str::<Value>(&out).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the model's answer is not JSON: {e}"),
        )
    })?;
    Ok((
        Body::Text(out.trim_end().to_owned()),
        Usage {
            inputs: 1,
            tokens: 0,
        },
    ))
}

async fn rerank(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    respond(rerank_answer(&app, body).await, false)
}

async fn rerank_answer(app: &App, body: Result<Bytes, BytesRejection>) -> Answer {
    if let Kind::Encoder {
        output: BertOutput::Logits,
        output_size,
        ..
    } = app.info.kind
    {
        if output_size != 1 {
            return Err(ApiError::bad(format!(
                "POST /rerank needs a cross-encoder with one logit; `{}` has {output_size}: use \
                 POST /predict",
                app.info.name
            )));
        }
    }
    app.check_route("/rerank")?;
    let map = body_object(
        body,
        &[
            "query",
            "texts",
            "raw_scores",
            "return_text",
            "truncate",
            "truncation_direction",
        ],
    )?;
    tei_options(&map)?;
    let raw = bool_field(&map, "raw_scores")?.unwrap_or(false);
    let return_text = bool_field(&map, "return_text")?.unwrap_or(false);
    let query =
        string_field(&map, "query")?.ok_or_else(|| ApiError::invalid("missing field `query`"))?;
    let texts = match map.get("texts") {
        None => return Err(ApiError::invalid("missing field `texts`")),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                Value::String(s) => Ok(s.as_str()),
                v => Err(ApiError::invalid(format!(
                    "`texts`[{i}]: expected a string, found {}",
                    kind_of(v)
                ))),
            })
            .collect::<Result<Vec<&str>, _>>()?,
        Some(v) => {
            return Err(ApiError::invalid(format!(
                "`texts`: expected a list of strings, found {}",
                kind_of(v)
            )))
        }
    };
    let inputs = texts.iter().map(|t| Input::Pair(query, t)).collect();
    let seqs = app.sequences(inputs, "texts", app.truncate(&map)?)?;
    let (rows, usage) = app.run(seqs, "texts").await?;
    let mut ranked: Vec<(usize, f32)> = rows
        .iter()
        .map(|r| r.first().copied().unwrap_or(f32::NAN))
        .map(|x| if raw { x } else { sigmoid(x) })
        .enumerate()
        .collect();
    rank(&mut ranked);
    let body = ranked
        .into_iter()
        .map(|(i, score)| {
            let mut m = json!({ "index": i, "score": float(score) });
            if return_text {
                m["text"] = Value::from(texts[i]);
            }
            m
        })
        .collect();
    Ok((Value::Array(body).into(), usage))
}

async fn health() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

async fn info(State(app): State<Arc<App>>) -> Response {
    let i = &app.info;
    let mut m = Map::new();
    m.insert("model_id".into(), Value::from(i.name));
    m.insert("precision".into(), Value::from(i.precision));
    m.insert("build_hash".into(), Value::from(i.build_id));
    let kernel = crate::selected_kernel().map_or_else(|e| e.to_string(), |k| k.name().to_owned());
    m.insert("kernel".into(), Value::from(kernel));
    m.insert("threads".into(), Value::from(crate::threads::count()));
    match &i.kind {
        Kind::Encoder {
            family,
            output,
            hidden,
            output_size,
            max_len,
            labels,
            normalized,
        } => {
            let (model_type, out) = match output {
                BertOutput::MeanPooled => ("embedding", "mean_pooled"),
                BertOutput::Cls => ("embedding", "cls"),
                BertOutput::LastHiddenState => ("hidden_states", "last_hidden_state"),
                BertOutput::Logits if *output_size == 1 => ("reranker", "logits"),
                BertOutput::Logits => ("classifier", "logits"),
            };
            m.insert("model_type".into(), Value::from(model_type));
            m.insert("family".into(), Value::from(*family));
            m.insert("output".into(), Value::from(out));
            m.insert("dims".into(), Value::from(*output_size));
            m.insert("hidden_size".into(), Value::from(*hidden));
            m.insert("max_input_length".into(), Value::from(*max_len));
            m.insert("normalized".into(), Value::from(*normalized));
            m.insert("tokenizer".into(), Value::from(app.tokenizer.is_some()));
            if *output == BertOutput::Logits {
                m.insert("labels".into(), Value::from(labels.to_vec()));
                // text-embeddings-inference's shape: label by logit index, `LABEL_i` unnamed.
                let id2label: Map<String, Value> = (0..*output_size)
                    .map(|i| {
                        let l = labels
                            .get(i)
                            .map_or_else(|| format!("LABEL_{i}"), |l| (*l).to_owned());
                        (i.to_string(), Value::from(l))
                    })
                    .collect();
                m.insert("id2label".into(), Value::Object(id2label));
            }
        }
        Kind::Dense { input, output } => {
            m.insert("model_type".into(), Value::from("dense"));
            m.insert("input_size".into(), Value::from(*input));
            m.insert("dims".into(), Value::from(*output));
        }
        Kind::Recurrent { shape } => {
            m.insert("model_type".into(), Value::from("recurrent"));
            let cell = match shape.cell {
                crate::ops::rnn::Cell::Lstm => "lstm",
                crate::ops::rnn::Cell::Gru => "gru",
            };
            m.insert("cell".into(), Value::from(cell));
            m.insert("input_size".into(), Value::from(shape.input_size));
            m.insert("hidden_size".into(), Value::from(shape.hidden_size));
            m.insert("dims".into(), Value::from(shape.output_size()));
        }
    }
    m.insert("routes".into(), Value::from(i.routes().to_vec()));
    let o = &app.options;
    m.insert("max_batch_tokens".into(), Value::from(o.max_batch_tokens));
    m.insert(
        "max_wait_ms".into(),
        Value::from(o.max_wait.as_secs_f64() * 1e3),
    );
    m.insert("max_client_batch_size".into(), Value::from(o.max_inputs));
    m.insert("max_concurrent_requests".into(), Value::from(o.max_queue));
    m.insert("max_body_bytes".into(), Value::from(o.max_body_bytes));
    m.insert("auto_truncate".into(), Value::from(o.auto_truncate));
    m.insert("version".into(), Value::from(env!("CARGO_PKG_VERSION")));
    m.insert(
        "uptime_s".into(),
        Value::from(app.started.elapsed().as_secs_f64()),
    );
    m.insert(
        "requests_answered".into(),
        Value::from(app.answered.load(Ordering::Relaxed)),
    );
    m.insert(
        "requests_in_flight".into(),
        Value::from(app.metrics.in_flight.get()),
    );
    json_response(StatusCode::OK, &Value::Object(m))
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &app.metrics.registry) {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}"),
        )
        .into_response(false);
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn not_found(uri: Uri, method: Method) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route {method} {}", uri.path()),
    )
    .into_response(uri.path().starts_with("/v1/"))
}

async fn wrong_method(uri: Uri, method: Method) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} {} is not served: {} takes {}",
            uri.path(),
            uri.path(),
            if GET_ROUTES.contains(&uri.path()) {
                "GET"
            } else {
                "POST"
            }
        ),
    )
    .into_response(uri.path().starts_with("/v1/"))
}

/// The routes every server has (`GET`).
const GET_ROUTES: [&str; 3] = ["/health", "/info", "/metrics"];
/// The model routes (`POST`): each model serves some of them ([`ModelInfo::routes`]).
const POST_ROUTES: [&str; 6] = [
    "/v1/embeddings",
    "/embed",
    "/embed_all",
    "/predict",
    "/classify",
    "/rerank",
];

/// Logs one line per request and counts it in the metrics.
async fn log_request(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let start = Instant::now();
    let _in_flight = InFlight::new(&app.metrics.in_flight);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let elapsed = start.elapsed();
    let status = response.status();
    let usage = response
        .extensions()
        .get::<Usage>()
        .copied()
        .unwrap_or_default();
    // Unknown paths share one label: a client cannot grow the metrics without bound.
    let known = GET_ROUTES.iter().chain(&POST_ROUTES).any(|r| *r == path);
    let route = if known { path.as_str() } else { "other" };
    let m = &app.metrics;
    m.requests
        .get_or_create(&vec![
            ("route".to_owned(), route.to_owned()),
            ("status".to_owned(), status.as_u16().to_string()),
        ])
        .inc();
    m.request_seconds.observe(elapsed.as_secs_f64());
    app.answered.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        target: "dynq::http",
        "{method} {path} {} inputs={} tokens={} {:.2}ms",
        status.as_u16(),
        usage.inputs,
        usage.tokens,
        elapsed.as_secs_f64() * 1e3
    );
    response
}

/// The compute thread: gathers queued requests into batches and answers them (see the module
/// documentation). Returns once every sender is gone and the queue is empty.
fn batcher(rx: Receiver<Job>, compute: &dyn Compute, options: &HttpOptions, metrics: &Metrics) {
    let budget = options.max_batch_tokens.max(1);
    let mut pending: Option<Job> = None;
    let mut jobs: Vec<Job> = Vec::new();
    loop {
        let first = match pending.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        metrics.queue_depth.dec();
        let deadline = Instant::now() + options.max_wait;
        let mut tokens = first.tokens;
        jobs.clear();
        jobs.push(first);
        while tokens < budget {
            let next = match rx.try_recv() {
                Ok(j) => Some(j),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        None
                    } else {
                        rx.recv_timeout(deadline - now).ok()
                    }
                }
            };
            let Some(j) = next else { break };
            metrics.queue_depth.dec();
            if tokens + j.tokens > budget {
                // It waits for the next batch, at the head of the line.
                metrics.queue_depth.inc();
                pending = Some(j);
                break;
            }
            tokens += j.tokens;
            jobs.push(j);
        }
        run_jobs(std::mem::take(&mut jobs), compute, budget, metrics);
    }
}

/// Runs the gathered requests: every sequence as ragged batches of up to `budget` tokens, each
/// line alone; then answers each request.
fn run_jobs(jobs: Vec<Job>, compute: &dyn Compute, budget: usize, metrics: &Metrics) {
    let start = Instant::now();
    for j in &jobs {
        metrics
            .queue_seconds
            .observe(start.saturating_duration_since(j.enqueued).as_secs_f64());
    }
    let inputs: Vec<crate::BertInput<'_>> = jobs
        .iter()
        .flat_map(|j| match &j.work {
            Work::Seqs(s) => s.as_slice(),
            Work::Line(_) => &[],
        })
        .map(|s| crate::BertInput {
            input_ids: &s.ids,
            attention_mask: None,
            token_type_ids: s.type_ids.as_deref(),
        })
        .collect();
    let mut outputs = Vec::with_capacity(inputs.len());
    for (_, chunk) in crate::batches(&inputs, budget) {
        let t = Instant::now();
        outputs.extend(compute.seqs(chunk));
        metrics.inference_seconds.observe(t.elapsed().as_secs_f64());
        metrics.batch_inputs.observe(chunk.len() as f64);
        let tokens: usize = chunk.iter().map(|i| i.input_ids.len()).sum();
        metrics.batch_tokens.observe(tokens as f64);
        metrics.inputs.inc_by(chunk.len() as u64);
        metrics.tokens.inc_by(tokens as u64);
    }
    let mut outputs = outputs.into_iter();
    for j in jobs {
        let reply = match &j.work {
            Work::Seqs(s) => Reply::Seqs(outputs.by_ref().take(s.len()).collect()),
            Work::Line(line) => {
                let t = Instant::now();
                let r = compute.line(line);
                metrics.inference_seconds.observe(t.elapsed().as_secs_f64());
                metrics.inputs.inc();
                Reply::Line(r)
            }
        };
        // A client that went away no longer waits for its answer.
        let _ = j.reply.send(reply);
    }
}

/// The router over `app`.
fn router(app: Arc<App>) -> Router {
    let max_body = app.options.max_body_bytes;
    Router::new()
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/embed", post(embed))
        .route("/embed_all", post(embed_all))
        .route("/predict", post(predict))
        .route("/classify", post(predict))
        .route("/rerank", post(rerank))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            log_request,
        ))
        .with_state(app)
}

/// Serves `compute` on `listener` until `shutdown` completes, then answers every accepted
/// request and returns.
fn serve(
    info: ModelInfo,
    tokenizer: Option<TextTokenizer>,
    compute: &(dyn Compute + Sync),
    listener: TcpListener,
    options: &HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(options.max_queue.max(1));
    let app = Arc::new(App {
        info,
        tokenizer,
        queue: tx,
        metrics: Arc::new(Metrics::new()),
        options: options.clone(),
        started: Instant::now(),
        answered: AtomicU64::new(0),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.http_threads.max(1))
        .thread_name("dynq-http")
        .enable_all()
        .build()?;
    listener.set_nonblocking(true)?;
    std::thread::scope(|scope| {
        // The compute thread holds the metrics but not `app`: `app` owns the queue's sender,
        // and the queue must close when the server is done.
        let metrics = Arc::clone(&app.metrics);
        let worker = std::thread::Builder::new()
            .name("dynq-model".into())
            .spawn_scoped(scope, move || batcher(rx, compute, options, &metrics))?;
        let result = runtime.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let addr = listener.local_addr()?;
            tracing::info!(target: "dynq::http", "`{}` listening on http://{addr}", app.info.name);
            axum::serve(listener, router(Arc::clone(&app)))
                .with_graceful_shutdown(shutdown)
                .await
        });
        // The router's copies of `app` are gone with the server: dropping this last one
        // closes the queue, and the compute thread ends once it has answered what is in it.
        drop(app);
        let _ = worker.join();
        tracing::info!(target: "dynq::http", "stopped");
        result
    })
}

fn tokenizer_of(
    json: Option<&'static str>,
    max_len: usize,
) -> std::io::Result<Option<TextTokenizer>> {
    json.map(|j| TextTokenizer::new(j, max_len))
        .transpose()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Serves an encoder model over HTTP on `listener` until `shutdown` completes (see the module
/// documentation for the routes), then finishes the accepted requests and returns.
pub fn serve_encoder<M: crate::EncoderModel + Sync>(
    model: &M,
    listener: TcpListener,
    options: &HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let info = ModelInfo {
        name: M::NAME,
        kind: Kind::Encoder {
            family: M::FAMILY,
            output: M::OUTPUT,
            hidden: M::HIDDEN_SIZE,
            output_size: M::OUTPUT_SIZE,
            max_len: M::MAX_SEQ_LEN,
            labels: M::LABELS,
            normalized: M::NORMALIZED,
        },
        precision: M::PRECISION,
        build_id: M::BUILD_ID,
    };
    let tokenizer = tokenizer_of(M::TOKENIZER_JSON, M::MAX_SEQ_LEN)?;
    serve(
        info,
        tokenizer,
        &EncoderCompute(model),
        listener,
        options,
        shutdown,
    )
}

/// Serves a dense model over HTTP: `POST /predict` takes `{"input": [...]}` and answers
/// `{"output": [...]}` (see [`serve_encoder`]).
pub fn serve_dense<M: crate::DenseModel + Sync>(
    model: &M,
    listener: TcpListener,
    options: &HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let info = ModelInfo {
        name: M::NAME,
        kind: Kind::Dense {
            input: M::INPUT_SIZE,
            output: M::OUTPUT_SIZE,
        },
        precision: M::PRECISION,
        build_id: M::BUILD_ID,
    };
    serve(
        info,
        None,
        &DenseCompute(model),
        listener,
        options,
        shutdown,
    )
}

/// Serves a recurrent model over HTTP: `POST /predict` takes one sequence as the JSON-lines
/// input object and answers its output object (see [`serve_encoder`]).
pub fn serve_recurrent<M: crate::RecurrentModel + Sync>(
    model: &M,
    listener: TcpListener,
    options: &HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let info = ModelInfo {
        name: M::NAME,
        kind: Kind::Recurrent { shape: M::SHAPE },
        precision: M::PRECISION,
        build_id: M::BUILD_ID,
    };
    serve(
        info,
        None,
        &RecurrentCompute(model),
        listener,
        options,
        shutdown,
    )
}

/// Completes on Ctrl-C or SIGTERM: the standalone `serve`'s shutdown signal.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!(target: "dynq::http", "shutting down: finishing the accepted requests");
}

/// Logs to stderr through `tracing` (`DYNQ_LOG` or `RUST_LOG` filters; `info` by default: one
/// line per request). Does nothing if a subscriber is already set.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DYNQ_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colors on a terminal only: a log file or journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
