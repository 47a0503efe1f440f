//! The HTTP server (`serve`) on an ephemeral port: every route, every refusal, 256 requests from
//! 32 concurrent clients checked bit for bit against the single-input result and the in-process
//! forward, a shutdown under load that answers every accepted request, and a soak at
//! concurrency 64 (`DYNQ_SOAK_SECS`, 3 s unless set) with no errors and no memory growth.
//!
//! The embedding routes run the embedded MiniLM; the classifier and reranker routes run small
//! stub encoders whose logits are known functions of the tokens (so the pair encoding, the
//! sorting and the softmax can be checked exactly); `/predict` of a dense model runs the golden
//! MLP.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use dynq_runtime::http::{serve_dense, serve_encoder, HttpOptions};
use dynq_runtime::{BertInput, BertOutput, EncoderModel, Error};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokenizers::Tokenizer;

dynq_macros::dynq_model!("../models/minilm/minilm.toml", kernels = "native");
dynq_macros::dynq_model!("golden/mlp.toml", kernels = "native");

const MINILM_TOKENIZER: &str = include_str!("../models/minilm/tokenizer.json");

/// A cross-encoder stub: one logit, the number of tokens of the second text (token type 1)
/// minus 4, so `/rerank` must order texts by length and needs the pair encoding to see them.
/// `hold` lets a test keep the model busy.
struct Cross {
    hold: Mutex<()>,
}

impl EncoderModel for Cross {
    const NAME: &'static str = "cross";
    const OUTPUT: BertOutput = BertOutput::Logits;
    const HIDDEN_SIZE: usize = 4;
    const OUTPUT_SIZE: usize = 1;
    const MAX_SEQ_LEN: usize = 24;
    const LABELS: &'static [&'static str] = &[];
    const TOKENIZER_JSON: Option<&'static str> = Some(MINILM_TOKENIZER);

    fn forward(&self, input: &BertInput<'_>, out: &mut [f32]) -> Result<(), Error> {
        input.check(30522, 2, Self::MAX_SEQ_LEN)?;
        drop(self.hold.lock());
        let second = input
            .token_type_ids
            .map_or(0, |t| t.iter().filter(|&&t| t == 1).count());
        out[0] = second as f32 - 4.0;
        Ok(())
    }
}

/// A three-label classifier stub: logits `[len / 2, 1, first word id % 5]`.
struct Moods;

impl EncoderModel for Moods {
    const NAME: &'static str = "moods";
    const OUTPUT: BertOutput = BertOutput::Logits;
    const HIDDEN_SIZE: usize = 4;
    const OUTPUT_SIZE: usize = 3;
    const MAX_SEQ_LEN: usize = 16;
    const LABELS: &'static [&'static str] = &["negative", "neutral", "positive"];
    const TOKENIZER_JSON: Option<&'static str> = Some(MINILM_TOKENIZER);

    fn forward(&self, input: &BertInput<'_>, out: &mut [f32]) -> Result<(), Error> {
        let len = input.check(30522, 2, Self::MAX_SEQ_LEN)?;
        out.copy_from_slice(&Moods::logits(input.input_ids, len));
        Ok(())
    }
}

impl Moods {
    fn logits(ids: &[u32], len: usize) -> [f32; 3] {
        [len as f32 / 2.0, 1.0, (ids[1] % 5) as f32]
    }
}

/// A running server: its address, and how to stop it.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    fn start(
        options: HttpOptions,
        serve: impl FnOnce(
                TcpListener,
                &HttpOptions,
                tokio::sync::oneshot::Receiver<()>,
            ) -> std::io::Result<()>
            + Send
            + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || serve(listener, &options, stopped));
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn minilm(options: HttpOptions) -> Server {
        Server::start(options, |l, o, stop| {
            serve_encoder(&Minilm, l, o, async {
                let _ = stop.await;
            })
        })
    }

    /// Stops accepting, and waits until every accepted request is answered.
    fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.thread
            .take()
            .unwrap()
            .join()
            .unwrap()
            .expect("server ends cleanly");
    }
}

/// An answer: status, `Retry-After`, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The error message of a refusal, checking the status and the JSON error shape.
    fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
        let v = self.json();
        match &v["error"] {
            Value::String(s) => {
                assert!(v["error_type"].is_string(), "{v}");
                s.clone()
            }
            Value::Object(e) => e["message"].as_str().unwrap().to_owned(),
            _ => panic!("not an error body: {v}"),
        }
    }
}

/// One keep-alive connection.
struct Client {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Client { send })
    }

    async fn raw(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Answer, hyper::Error> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        // A keep-alive connection takes the next request once the last one is done.
        self.send.ready().await?;
        let response = self.send.send_request(request).await?;
        let status = response.status().as_u16();
        let header = |h: &str| {
            response
                .headers()
                .get(h)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let retry_after = header("retry-after");
        let content_type = header("content-type");
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        Ok(Answer {
            status,
            retry_after,
            content_type,
            body,
        })
    }

    async fn post(&mut self, path: &str, body: Value) -> Answer {
        self.raw("POST", path, body.to_string().into_bytes())
            .await
            .unwrap()
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.raw("GET", path, Vec::new()).await.unwrap()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn sentences() -> Vec<String> {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/minilm/sentences.txt");
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn tokenizer() -> Tokenizer {
    let mut t: Tokenizer = MINILM_TOKENIZER.parse().unwrap();
    t.with_padding(None);
    t.with_truncation(None).unwrap();
    t
}

/// The float rows of a `/embed` answer, as the `f32` each number spells.
fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list of embeddings: {v}"))
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.to_string().parse::<f32>().unwrap())
                .collect()
        })
        .collect()
}

/// The rows of a `/v1/embeddings` answer, base64 or float.
fn openai_rows(v: &Value) -> Vec<Vec<f32>> {
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("expected OpenAI data: {v}"))
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["index"], i);
            assert_eq!(d["object"], "embedding");
            match &d["embedding"] {
                Value::String(b) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .unwrap()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.to_string().parse::<f32>().unwrap())
                    .collect(),
                e => panic!("not an embedding: {e}"),
            }
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn embedding_routes_match_the_in_process_forward() {
    let server = Server::minilm(HttpOptions::default());
    let tok = tokenizer();
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::connect(server.addr).await.unwrap();
        let text = "The quick brown fox jumps over the lazy dog.";
        let ids = tok.encode(text, true).unwrap().get_ids().to_vec();
        let expected = Minilm.embed(&ids).unwrap();

        // TEI: a string, and a list.
        let a = c.post("/embed", json!({ "inputs": text })).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.content_type.as_deref(), Some("application/json"));
        assert_eq!(bits(&rows(&a.json())[0]), bits(&expected));
        let a = c
            .post("/embed", json!({ "inputs": [text, "hi"], "normalize": true, "truncate": false }))
            .await;
        let r = rows(&a.json());
        assert_eq!(r.len(), 2);
        assert_eq!(bits(&r[0]), bits(&expected));
        let hi = tok.encode("hi", true).unwrap().get_ids().to_vec();
        assert_eq!(bits(&r[1]), bits(&Minilm.embed(&hi).unwrap()));

        // OpenAI: float and base64, a string, strings, token ids, lists of token ids; usage.
        for format in [None, Some("float"), Some("base64")] {
            let mut body = json!({ "model": "minilm", "input": text });
            if let Some(f) = format {
                body["encoding_format"] = json!(f);
            }
            let v = c.post("/v1/embeddings", body).await.json();
            assert_eq!(v["object"], "list");
            assert_eq!(v["model"], "minilm");
            assert_eq!(v["usage"]["prompt_tokens"], ids.len());
            assert_eq!(v["usage"]["total_tokens"], ids.len());
            assert_eq!(bits(&openai_rows(&v)[0]), bits(&expected), "{format:?}");
        }
        let v = c
            .post(
                "/v1/embeddings",
                json!({ "input": [ids.clone(), hi.clone()], "encoding_format": "base64", "dimensions": 384 }),
            )
            .await
            .json();
        let r = openai_rows(&v);
        assert_eq!(bits(&r[0]), bits(&expected));
        assert_eq!(bits(&r[1]), bits(&Minilm.embed(&hi).unwrap()));
        assert_eq!(v["usage"]["prompt_tokens"], ids.len() + hi.len());
        let v = c
            .post("/v1/embeddings", json!({ "input": ids.clone(), "encoding_format": "base64" }))
            .await
            .json();
        assert_eq!(bits(&openai_rows(&v)[0]), bits(&expected));
        let v = c
            .post("/v1/embeddings", json!({ "input": ["hi", text], "user": "u1" }))
            .await
            .json();
        assert_eq!(bits(&openai_rows(&v)[1]), bits(&expected));

        // health, info, metrics.
        let a = c.get("/health").await;
        assert_eq!(a.status, 200);
        let info = c.get("/info").await.json();
        assert_eq!(info["model_id"], "minilm");
        assert_eq!(info["model_type"], "embedding");
        assert_eq!(info["family"], "bert");
        assert_eq!(info["dims"], 384);
        assert_eq!(info["precision"], "int8");
        assert_eq!(info["max_input_length"], Minilm::MAX_SEQ_LEN);
        assert_eq!(info["build_hash"].as_str().unwrap().len(), 64);
        assert!(info["kernel"].is_string());
        assert_eq!(info["routes"], json!(["/v1/embeddings", "/embed"]));
        let m = c.get("/metrics").await;
        assert_eq!(m.status, 200);
        let m = String::from_utf8(m.body).unwrap();
        for name in [
            "dynq_http_requests_total{",
            "dynq_request_duration_seconds_bucket",
            "dynq_queue_duration_seconds_bucket",
            "dynq_inference_duration_seconds_bucket",
            "dynq_batch_inputs_bucket",
            "dynq_batch_tokens_bucket",
            "dynq_tokens_total",
            "dynq_requests_in_flight",
        ] {
            assert!(m.contains(name), "{name} missing from /metrics:\n{m}");
        }
        assert!(m.contains(r#"route="/embed",status="200""#), "{m}");
    });
    server.shutdown();
}

#[test]
fn every_refusal_is_a_json_error() {
    let server = Server::minilm(HttpOptions {
        max_inputs: 4,
        max_body_bytes: 4096,
        ..HttpOptions::default()
    });
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::connect(server.addr).await.unwrap();
        let post = |b: &'static [u8]| b.to_vec();
        // Malformed JSON and wrong types: 422 naming the field.
        let e = c
            .raw("POST", "/embed", post(b"{\"inputs\": "))
            .await
            .unwrap()
            .error(422);
        assert!(e.contains("invalid JSON"), "{e}");
        let e = c
            .raw("POST", "/embed", post(b"[1, 2]"))
            .await
            .unwrap()
            .error(422);
        assert!(e.contains("expected a JSON object"), "{e}");
        let e = c.post("/embed", json!({ "inputs": 3 })).await.error(422);
        assert!(
            e.contains("`inputs`") && e.contains("found a number"),
            "{e}"
        );
        let e = c
            .post("/embed", json!({ "inputs": ["a", {"x": 1}] }))
            .await
            .error(422);
        assert!(e.contains("`inputs`[1]") && e.contains("an object"), "{e}");
        let e = c
            .post("/embed", json!({ "inputs": "a", "normalize": "yes" }))
            .await
            .error(422);
        assert!(e.contains("`normalize`"), "{e}");
        let e = c.post("/embed", json!({ "text": "a" })).await.error(422);
        assert!(e.contains("unknown field `text`"), "{e}");
        let e = c.post("/embed", json!({})).await.error(422);
        assert!(e.contains("missing field `inputs`"), "{e}");
        let e = c.post("/embed", json!({ "inputs": [] })).await.error(422);
        assert!(e.contains("empty"), "{e}");
        let e = c
            .post("/v1/embeddings", json!({ "input": [[1, -2]] }))
            .await
            .error(422);
        assert!(e.contains("`input`[0][1]") && e.contains("token id"), "{e}");
        let e = c
            .post(
                "/v1/embeddings",
                json!({ "input": "a", "encoding_format": "int8" }),
            )
            .await
            .error(422);
        assert!(e.contains("`encoding_format`"), "{e}");
        let e = c
            .post("/v1/embeddings", json!({ "input": "a", "dimensions": 128 }))
            .await
            .error(422);
        assert!(e.contains("384"), "{e}");
        let e = c
            .post(
                "/embed",
                json!({ "inputs": "a", "truncation_direction": "Left" }),
            )
            .await
            .error(422);
        assert!(e.contains("truncation_direction"), "{e}");
        // An OpenAI route answers OpenAI's error shape.
        let v = c.post("/v1/embeddings", json!({ "input": 1.5 })).await;
        assert_eq!(v.status, 422);
        assert_eq!(v.json()["error"]["type"], "invalid_request_error");

        // Not UTF-8: 400.
        let e = c
            .raw("POST", "/embed", b"{\"inputs\": \"\xff\xfe\"}".to_vec())
            .await
            .unwrap()
            .error(400);
        assert!(e.contains("UTF-8"), "{e}");
        // A token id past the vocabulary: 400 naming the input.
        let e = c
            .post("/v1/embeddings", json!({ "input": [[101, 999999, 102]] }))
            .await
            .error(400);
        assert!(e.contains("`input`"), "{e}");
        // The model normalizes itself.
        let e = c
            .post("/embed", json!({ "inputs": "a", "normalize": false }))
            .await
            .error(400);
        assert!(e.contains("normalize"), "{e}");

        // Limits: 413 for too many inputs, too long an input, too large a body.
        let e = c
            .post("/embed", json!({ "inputs": ["a", "b", "c", "d", "e"] }))
            .await
            .error(413);
        assert!(e.contains("5 inputs") && e.contains("--max-inputs"), "{e}");
        let long = "word ".repeat(700);
        let e = c
            .post("/embed", json!({ "inputs": long.clone() }))
            .await
            .error(413);
        assert!(e.contains("truncate"), "{e}");
        let ids = vec![101u32; Minilm::MAX_SEQ_LEN + 1];
        let e = c
            .post("/v1/embeddings", json!({ "input": ids }))
            .await
            .error(413);
        assert!(e.contains("token ids"), "{e}");
        // (On a connection of its own: the server may close one whose body it did not read.)
        let big = json!({ "inputs": "x".repeat(5000) });
        let mut once = Client::connect(server.addr).await.unwrap();
        let e = once.post("/embed", big).await.error(413);
        assert!(e.contains("--max-body-bytes"), "{e}");
        // ... unless truncation is asked for: then the text is cut at the model's maximum.
        let a = c
            .post(
                "/embed",
                json!({ "inputs": "word ".repeat(600), "truncate": true }),
            )
            .await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));

        // Routes: one this model cannot serve, one that does not exist, a wrong method.
        let e = c
            .post("/rerank", json!({ "query": "a", "texts": ["b"] }))
            .await
            .error(404);
        assert!(e.contains("/embed"), "{e}");
        let e = c
            .post("/predict", json!({ "inputs": "a" }))
            .await
            .error(404);
        assert!(e.contains("embedding"), "{e}");
        let e = c
            .post("/embed_all", json!({ "inputs": "a" }))
            .await
            .error(404);
        assert!(!e.is_empty());
        let e = c.get("/nope").await.error(404);
        assert!(e.contains("/nope"), "{e}");
        let e = c.get("/embed").await.error(405);
        assert!(!e.is_empty());

        // After all that the server still answers.
        assert_eq!(c.get("/health").await.status, 200);
    });
    server.shutdown();
}

#[test]
fn many_clients_get_the_single_input_result_bit_for_bit() {
    // A small token budget and a short wait, so requests share and split batches.
    let server = Server::minilm(HttpOptions {
        max_batch_tokens: 96,
        max_wait: Duration::from_millis(1),
        ..HttpOptions::default()
    });
    let sentences = Arc::new(sentences());
    let tok = tokenizer();
    let rt = runtime();
    rt.block_on(async {
        // The single-input results, one request each, and the in-process forward.
        let mut c = Client::connect(server.addr).await.unwrap();
        let mut single = Vec::new();
        for s in sentences.iter().take(32) {
            let r = rows(&c.post("/embed", json!({ "inputs": s })).await.json()).remove(0);
            let ids = tok.encode(s.as_str(), true).unwrap().get_ids().to_vec();
            assert_eq!(bits(&r), bits(&Minilm.embed(&ids).unwrap()), "{s}");
            single.push(r);
        }
        let single = Arc::new(single);

        // 32 clients, 8 requests each, 1 to 4 sentences per request, both routes.
        let tasks: Vec<_> = (0..32)
            .map(|t| {
                let (single, sentences) = (Arc::clone(&single), Arc::clone(&sentences));
                let addr = server.addr;
                tokio::spawn(async move {
                    let mut c = Client::connect(addr).await.unwrap();
                    let mut checked = 0;
                    for r in 0..8usize {
                        let n = 1 + (t + r) % 4;
                        let picks: Vec<usize> =
                            (0..n).map(|k| (t * 7 + r * 5 + k * 3) % 32).collect();
                        let texts: Vec<&str> =
                            picks.iter().map(|&i| sentences[i].as_str()).collect();
                        let got = if (t + r) % 2 == 0 {
                            rows(&c.post("/embed", json!({ "inputs": texts })).await.json())
                        } else {
                            let body = json!({ "input": texts, "encoding_format": "base64" });
                            openai_rows(&c.post("/v1/embeddings", body).await.json())
                        };
                        assert_eq!(got.len(), n);
                        for (g, &i) in got.iter().zip(&picks) {
                            assert_eq!(
                                bits(g),
                                bits(&single[i]),
                                "client {t}, request {r}: sentence {i}"
                            );
                            checked += 1;
                        }
                    }
                    checked
                })
            })
            .collect();
        let mut checked = 0;
        for t in tasks {
            checked += t.await.unwrap();
        }
        assert!(checked >= 256);
        // The batcher did batch: some forward held more than one input.
        let m = String::from_utf8(c.get("/metrics").await.body).unwrap();
        let batches = metric(&m, "dynq_batch_inputs_count");
        let inputs = metric(&m, "dynq_inputs_total");
        assert!(
            batches < inputs,
            "no batching: {batches} batches for {inputs} inputs"
        );
    });
    server.shutdown();
}

/// A metric's value in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

/// One request on a connection of its own.
async fn post_once(addr: SocketAddr, path: &'static str, body: Value) -> Answer {
    Client::connect(addr).await.unwrap().post(path, body).await
}

/// Polls `/info` until `requests_in_flight` reaches `n` (the polling request included).
async fn wait_in_flight(addr: SocketAddr, n: u64) {
    let mut c = Client::connect(addr).await.unwrap();
    let start = Instant::now();
    loop {
        let v = c.get("/info").await.json();
        if v["requests_in_flight"].as_u64().unwrap() >= n {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "stuck at {v}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn shutdown_answers_every_accepted_request() {
    let cross = Arc::new(Cross {
        hold: Mutex::new(()),
    });
    let model = Arc::clone(&cross);
    let server = Server::start(HttpOptions::default(), move |l, o, stop| {
        serve_encoder(&*model, l, o, async {
            let _ = stop.await;
        })
    });
    let addr = server.addr;
    let rt = runtime();
    // The model is held: 32 requests are accepted and wait.
    let held = cross.hold.lock().unwrap();
    let tasks: Vec<_> = (0..32usize)
        .map(|t| {
            rt.spawn(async move {
                let mut c = Client::connect(addr).await.unwrap();
                let texts: Vec<String> = (0..=t % 5).map(|k| "word ".repeat(k + 1)).collect();
                let a = c
                    .post("/rerank", json!({ "query": "q", "texts": texts }))
                    .await;
                (t, a)
            })
        })
        .collect();
    rt.block_on(wait_in_flight(addr, 33));
    // Stop: the listener closes at once, the accepted requests are still answered.
    let Server {
        mut stop, thread, ..
    } = server;
    stop.take().unwrap().send(()).unwrap();
    let start = Instant::now();
    loop {
        if std::net::TcpStream::connect(addr).is_err() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "still accepting");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(held);
    for task in tasks {
        let (t, a) = rt.block_on(task).unwrap();
        assert_eq!(
            a.status,
            200,
            "request {t}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let v = a.json();
        let ranked = v.as_array().unwrap();
        assert_eq!(ranked.len(), t % 5 + 1);
        // The longest text first: "word " x (k + 1) is k + 1 tokens.
        assert_eq!(ranked[0]["index"], t % 5);
    }
    thread.unwrap().join().unwrap().unwrap();
}

#[test]
fn classifier_and_reranker_routes() {
    let server = Server::start(HttpOptions::default(), |l, o, stop| {
        serve_encoder(&Moods, l, o, async {
            let _ = stop.await;
        })
    });
    let cross = Server::start(
        HttpOptions {
            max_queue: 1,
            ..HttpOptions::default()
        },
        |l, o, stop| {
            let model = Cross {
                hold: Mutex::new(()),
            };
            serve_encoder(&model, l, o, async {
                let _ = stop.await;
            })
        },
    );
    let tok = tokenizer();
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::connect(server.addr).await.unwrap();
        let text = "a fine day";
        let ids = tok.encode(text, true).unwrap().get_ids().to_vec();
        let logits = Moods::logits(&ids, ids.len());
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let e: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        for route in ["/predict", "/classify"] {
            let v = c.post(route, json!({ "inputs": text })).await.json();
            let got = v.as_array().unwrap();
            assert_eq!(got.len(), 3);
            for w in got.windows(2) {
                assert!(w[0]["score"].as_f64() >= w[1]["score"].as_f64(), "{v}");
            }
            for g in got {
                let i = Moods::LABELS
                    .iter()
                    .position(|l| *l == g["label"].as_str().unwrap())
                    .unwrap();
                let score: f32 = g["score"].to_string().parse().unwrap();
                assert_eq!(score, e[i] / sum, "{v}");
            }
        }
        // raw_scores, a batch of a text and a pair.
        let v = c
            .post("/predict", json!({ "inputs": [[text], ["a", "b"]], "raw_scores": true }))
            .await
            .json();
        let batch = v.as_array().unwrap();
        assert_eq!(batch.len(), 2);
        let neutral = batch[0]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["label"] == "neutral")
            .unwrap();
        assert_eq!(neutral["score"], 1.0);
        let e = c.post("/predict", json!({ "inputs": ["a", "b", "c"] })).await.error(422);
        assert!(e.contains("ambiguous") || e.contains("neither"), "{e}");
        let e = c.post("/predict", json!({ "inputs": "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen" })).await.error(413);
        assert!(e.contains("16 tokens"), "{e}");
        // /rerank needs one logit.
        let e = c.post("/rerank", json!({ "query": "a", "texts": ["b"] })).await.error(400);
        assert!(e.contains("/predict"), "{e}");
        let e = c.post("/embed", json!({ "inputs": "a" })).await.error(404);
        assert!(e.contains("classifier"), "{e}");
        // Token ids, alone and in a batch (what a model without a tokenizer takes).
        let v = c.post("/predict", json!({ "inputs": ids, "raw_scores": true })).await.json();
        let top = &v.as_array().unwrap_or_else(|| panic!("{v}"))[0];
        let best = logits.iter().copied().fold(f32::MIN, f32::max);
        assert_eq!(top["score"].to_string().parse::<f32>().unwrap(), best, "{v}");
        let v = c
            .post("/classify", json!({ "inputs": [ids, [text]] }))
            .await
            .json();
        assert_eq!(v[0], v[1], "{v}");
        let e = c.post("/predict", json!({ "inputs": [101, -1] })).await.error(422);
        assert!(e.contains("`inputs`[1]") && e.contains("token id"), "{e}");
        let info = c.get("/info").await.json();
        assert_eq!(info["routes"], json!(["/predict", "/classify"]));
        assert_eq!(info["model_type"], "classifier");
        assert_eq!(info["id2label"]["2"], "positive");

        // The reranker: the pair encoding (token type 1 for the text) decides the order.
        let mut r = Client::connect(cross.addr).await.unwrap();
        let texts = ["two words", "one", "three more words", ""];
        let v = r
            .post("/rerank", json!({ "query": "what", "texts": texts, "return_text": true, "raw_scores": true }))
            .await
            .json();
        let order: Vec<u64> = v.as_array().unwrap().iter().map(|x| x["index"].as_u64().unwrap()).collect();
        assert_eq!(order, [2, 0, 1, 3], "{v}");
        for x in v.as_array().unwrap() {
            let i = x["index"].as_u64().unwrap() as usize;
            assert_eq!(x["text"], texts[i]);
            let words = texts[i].split_whitespace().count() as f64;
            // The second text's tokens and its [SEP].
            assert_eq!(x["score"].as_f64().unwrap(), words + 1.0 - 4.0, "{v}");
        }
        let v = r.post("/rerank", json!({ "query": "what", "texts": ["one"] })).await.json();
        let s: f32 = v[0]["score"].to_string().parse().unwrap();
        assert_eq!(s, 1.0 / (1.0 + 2.0f32.exp()));
        let e = r.post("/rerank", json!({ "query": "q", "texts": "b" })).await.error(422);
        assert!(e.contains("`texts`"), "{e}");
        let e = r.post("/rerank", json!({ "query": "q", "texts": ["a", 1] })).await.error(422);
        assert!(e.contains("`texts`[1]"), "{e}");
        let e = r.post("/rerank", json!({ "texts": ["a"] })).await.error(422);
        assert!(e.contains("`query`"), "{e}");
        let e = r.post("/v1/embeddings", json!({ "input": "a" })).await.error(404);
        assert!(!e.is_empty());
    });

    // A full queue: 429 with Retry-After. `Cross` is held by a request in the model; a second
    // fills the queue of one.
    drop(cross);
    let gate = Arc::new(Cross {
        hold: Mutex::new(()),
    });
    let model = Arc::clone(&gate);
    let busy = Server::start(
        HttpOptions {
            max_queue: 1,
            ..HttpOptions::default()
        },
        move |l, o, stop| {
            serve_encoder(&*model, l, o, async {
                let _ = stop.await;
            })
        },
    );
    let addr = busy.addr;
    let held = gate.hold.lock().unwrap();
    let first = rt.spawn(post_once(
        addr,
        "/rerank",
        json!({ "query": "a", "texts": ["b"] }),
    ));
    rt.block_on(async {
        // The first is in the model once the queue is empty again with it in flight.
        wait_in_flight(addr, 2).await;
        let mut c = Client::connect(addr).await.unwrap();
        loop {
            let m = String::from_utf8(c.get("/metrics").await.body).unwrap();
            if metric(&m, "dynq_queue_depth") == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let second = rt.spawn(post_once(
        addr,
        "/rerank",
        json!({ "query": "a", "texts": ["c"] }),
    ));
    rt.block_on(async {
        wait_in_flight(addr, 3).await;
        let mut c = Client::connect(addr).await.unwrap();
        let a = c
            .post("/rerank", json!({ "query": "a", "texts": ["d"] }))
            .await;
        let e = a.error(429);
        assert!(e.contains("--max-queue"), "{e}");
        assert_eq!(a.retry_after.as_deref(), Some("1"));
    });
    drop(held);
    assert_eq!(rt.block_on(first).unwrap().status, 200);
    assert_eq!(rt.block_on(second).unwrap().status, 200);
    busy.shutdown();
    server.shutdown();
}

#[test]
fn dense_predict_matches_the_in_process_forward() {
    let server = Server::start(HttpOptions::default(), |l, o, stop| {
        serve_dense(&GoldenMlp, l, o, async {
            let _ = stop.await;
        })
    });
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::connect(server.addr).await.unwrap();
        let input: Vec<f32> = (0..GoldenMlp::INPUT_SIZE)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let mut expected = vec![0.0; GoldenMlp::OUTPUT_SIZE];
        GoldenMlp.forward(&input, 1, &mut expected).unwrap();
        let v = c.post("/predict", json!({ "input": input })).await.json();
        let got: Vec<f32> = v["output"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(bits(&got), bits(&expected));
        let e = c
            .post("/predict", json!({ "input": [1.0, 2.0] }))
            .await
            .error(422);
        assert!(e.contains("24"), "{e}");
        let e = c
            .post("/predict", json!({ "inputs": "a" }))
            .await
            .error(422);
        assert!(e.contains("`inputs`"), "{e}");
        let e = c.post("/embed", json!({ "inputs": "a" })).await.error(404);
        assert!(e.contains("dense"), "{e}");
        let info = c.get("/info").await.json();
        assert_eq!(info["model_type"], "dense");
        assert_eq!(info["routes"], json!(["/predict"]));
    });
    server.shutdown();
}

/// The process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A bounded soak on loopback: 64 clients on the golden sentences for `DYNQ_SOAK_SECS` seconds
/// (3 unless set; CI runs 60) in slices, every answer checked bit for bit against the
/// single-input result. No errors, and in a soak of 20 s or more the resident set does not grow
/// over the second half (it holds the clients too, which are as bounded as the server).
#[test]
fn soak_at_concurrency_64_without_errors_or_memory_growth() {
    let secs: u64 = std::env::var("DYNQ_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let slices = if secs >= 20 { (secs / 5) as usize } else { 3 };
    let slice = Duration::from_secs_f64(secs as f64 / slices as f64);
    let server = Server::minilm(HttpOptions {
        max_wait: Duration::from_millis(1),
        ..HttpOptions::default()
    });
    let tok = tokenizer();
    // The golden sentences that fit the model (one of them is longer on purpose).
    let (sentences, single): (Vec<String>, Vec<Vec<u32>>) = sentences()
        .into_iter()
        .filter_map(|s| {
            let ids = tok.encode(s.as_str(), true).unwrap().get_ids().to_vec();
            let e = Minilm.embed(&ids).ok()?;
            Some((s, bits(&e)))
        })
        .unzip();
    assert!(sentences.len() >= 16);
    let (sentences, single) = (Arc::new(sentences), Arc::new(single));
    let rt = runtime();
    // 64 clients on keep-alive connections for the whole soak; the RSS is sampled after each
    // slice while they run.
    let answered = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + slice * slices as u32;
    let tasks: Vec<_> = (0..64usize)
        .map(|t| {
            let (single, sentences) = (Arc::clone(&single), Arc::clone(&sentences));
            let answered = Arc::clone(&answered);
            let addr = server.addr;
            rt.spawn(async move {
                let mut bad = Vec::new();
                let mut c = match Client::connect(addr).await {
                    Ok(c) => c,
                    Err(e) => return vec![format!("connect: {e}")],
                };
                let mut r = 0usize;
                while Instant::now() < end {
                    let i = (t * 13 + r * 7) % sentences.len();
                    r += 1;
                    let body = json!({ "inputs": sentences[i] }).to_string().into_bytes();
                    match c.raw("POST", "/embed", body).await {
                        Ok(a) if a.status == 200 => match rows(&a.json()).first() {
                            Some(g) if bits(g) == single[i] => {
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => bad.push(format!("sentence {i}: a different embedding")),
                        },
                        Ok(a) => bad.push(format!(
                            "sentence {i}: {} {}",
                            a.status,
                            String::from_utf8_lossy(&a.body)
                        )),
                        Err(e) => bad.push(format!("sentence {i}: {e}")),
                    }
                }
                bad
            })
        })
        .collect();
    let mut rss = Vec::new();
    for k in 0..slices {
        std::thread::sleep(slice);
        rss.push(rss_kib());
        eprintln!(
            "soak slice {k}: {} answered, RSS {} KiB",
            answered.load(Ordering::Relaxed),
            rss[k]
        );
    }
    let mut errors = Vec::new();
    for task in tasks {
        errors.extend(rt.block_on(task).unwrap());
    }
    let answered = answered.load(Ordering::Relaxed);
    server.shutdown();
    assert!(
        errors.is_empty(),
        "{} errors; the first: {}",
        errors.len(),
        errors[0]
    );
    assert!(
        answered >= 64,
        "only {answered} requests answered in {secs} s"
    );
    // The resident set settles (allocator arenas, buffers: the first minute of a debug build
    // grows it by about 2.4 MiB, ever more slowly; 0.7 MiB over its second half), then stays
    // put: over the second half it may not grow by 2 MiB, the growth a leak of 700 bytes per
    // request would cause (3000 requests in that half of a 60 s debug soak).
    // (A run of a few seconds is all warm-up: it checks the answers only.)
    let mid = rss[slices / 2 - 1];
    let last = *rss.last().unwrap();
    assert!(
        secs < 20 || last <= mid + 2048,
        "RSS grew from {mid} KiB at half time to {last} KiB: {rss:?}"
    );
}
