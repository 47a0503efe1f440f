//! A bounded HTTP load generator for embedding servers (dynq's `serve`, infinity-emb,
//! text-embeddings-inference): `--concurrency` clients, each on one keep-alive connection,
//! send one line of a corpus per request for `--duration` seconds (after `--warmup`), and the
//! run ends with one JSON line: requests/s, latency percentiles, errors.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8080/v1/embeddings \
//!     --corpus target/bench/corpus/short.txt --concurrency 64 --duration 20
//! ```
//!
//! A request is counted once its whole answer has arrived; a status other than 200, an answer
//! that is not JSON with one embedding (`--check`), or a broken connection is an error (the
//! client then reconnects). It only talks to loopback addresses unless `--any-host` is given.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// The request body shape.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Api {
    /// `{"model": M, "input": "text"}` (OpenAI; dynq `/v1/embeddings`, infinity `/embeddings`).
    Openai,
    /// `{"inputs": "text"}` (text-embeddings-inference; dynq `/embed`).
    Tei,
}

#[derive(Debug, Parser)]
#[command(about = "Bounded HTTP load against an embedding server; prints one JSON line")]
struct Args {
    /// The endpoint, e.g. http://127.0.0.1:8080/v1/embeddings.
    #[arg(long)]
    url: String,
    /// Text corpus, one input per line (blank lines skipped); requests cycle through it.
    #[arg(long)]
    corpus: std::path::PathBuf,
    /// Clients sending at once, each waiting for its answer before the next request.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before the measurement (not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Request body shape.
    #[arg(long, value_enum, default_value_t = Api::Openai)]
    api: Api,
    /// `model` field of OpenAI requests.
    #[arg(long, default_value = "minilm")]
    model: String,
    /// Lines per request (a batch request).
    #[arg(long, default_value_t = 1)]
    inputs: usize,
    /// Parse every answer and check it holds `--inputs` embeddings.
    #[arg(long)]
    check: bool,
    /// Worker threads of the client (kept small: it shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Label copied into the JSON line (engine, corpus, ...).
    #[arg(long, default_value = "")]
    label: String,
    /// Allow a non-loopback address.
    #[arg(long)]
    any_host: bool,
}

/// What one client measured.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let url: hyper::Uri = args
        .url
        .parse()
        .map_err(|e| format!("--url {}: {e}", args.url))?;
    if url.scheme_str() != Some("http") {
        return Err(format!("--url {}: only http:// is supported", args.url));
    }
    let host = url.host().ok_or("--url: no host")?.to_owned();
    let port = url.port_u16().unwrap_or(80);
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .map_err(|e| format!("--url {}: {e}", args.url))?
        .next()
        .ok_or_else(|| format!("--url {}: no address", args.url))?;
    if !addr.ip().is_loopback() && !args.any_host {
        return Err(format!(
            "--url {}: {addr} is not a loopback address (--any-host allows it)",
            args.url
        ));
    }
    let path = url
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let text = std::fs::read_to_string(&args.corpus)
        .map_err(|e| format!("--corpus {}: {e}", args.corpus.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return Err(format!("--corpus {}: no lines", args.corpus.display()));
    }
    if args.concurrency == 0 || args.inputs == 0 {
        return Err("--concurrency and --inputs must be at least 1".into());
    }
    // Every body made up front: the clients only send.
    let bodies: Vec<Bytes> = (0..lines.len())
        .map(|i| {
            let texts: Vec<&str> = (0..args.inputs)
                .map(|k| lines[(i + k) % lines.len()])
                .collect();
            let input = if args.inputs == 1 {
                serde_json::json!(texts[0])
            } else {
                serde_json::json!(texts)
            };
            let body = match args.api {
                Api::Openai => serde_json::json!({ "model": args.model, "input": input }),
                Api::Tei => serde_json::json!({ "inputs": input }),
            };
            Bytes::from(body.to_string())
        })
        .collect();
    let bodies = Arc::new(bodies);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicUsize::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let host_header = format!("{host}:{port}");
    let (tallies, seconds) = runtime.block_on(async {
        let clients: Vec<_> = (0..args.concurrency)
            .map(|_| {
                let (bodies, next, measuring, stop) = (
                    Arc::clone(&bodies),
                    Arc::clone(&next),
                    Arc::clone(&measuring),
                    Arc::clone(&stop),
                );
                let (path, host, api, inputs, check) = (
                    path.clone(),
                    host_header.clone(),
                    args.api,
                    args.inputs,
                    args.check,
                );
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let mut conn = None;
                    while !stop.load(Ordering::Relaxed) {
                        let body =
                            bodies[next.fetch_add(1, Ordering::Relaxed) % bodies.len()].clone();
                        let start = Instant::now();
                        let result =
                            one_request(&mut conn, addr, &path, &host, body, api, inputs, check)
                                .await;
                        let elapsed = start.elapsed();
                        if !measuring.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
                            continue;
                        }
                        match result {
                            Ok(()) => tally.latencies.push(elapsed),
                            Err(e) => {
                                tally.errors += 1;
                                tally.first_error.get_or_insert(e);
                                conn = None;
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
        measuring.store(true, Ordering::Relaxed);
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
        stop.store(true, Ordering::Relaxed);
        let seconds = start.elapsed().as_secs_f64();
        let mut tallies = Vec::new();
        for c in clients {
            tallies.push(c.await.map_err(|e| e.to_string())?);
        }
        Ok::<_, String>((tallies, seconds))
    })?;
    let mut latencies: Vec<Duration> = tallies
        .iter()
        .flat_map(|t| t.latencies.iter().copied())
        .collect();
    latencies.sort_unstable();
    let errors: usize = tallies.iter().map(|t| t.errors).sum();
    let first_error = tallies.iter().find_map(|t| t.first_error.clone());
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        latencies[i.clamp(1, latencies.len()) - 1].as_secs_f64() * 1e3
    };
    let ms = |x: f64| (x * 1000.0).round() / 1000.0;
    let line = serde_json::json!({
        "label": args.label,
        "url": args.url,
        "corpus": args.corpus.file_name().map(|f| f.to_string_lossy().into_owned()),
        "concurrency": args.concurrency,
        "inputs_per_request": args.inputs,
        "seconds": ms(seconds),
        "requests": latencies.len(),
        "errors": errors,
        "first_error": first_error,
        "rps": ms(latencies.len() as f64 / seconds),
        "p50_ms": ms(pct(50.0)),
        "p90_ms": ms(pct(90.0)),
        "p99_ms": ms(pct(99.0)),
        "max_ms": ms(pct(100.0)),
        "mean_ms": ms(latencies.iter().map(Duration::as_secs_f64).sum::<f64>()
            / latencies.len().max(1) as f64 * 1e3),
    });
    println!("{line}");
    Ok(())
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Sends one request on `conn` (connecting first if there is none) and reads the whole answer.
#[allow(clippy::too_many_arguments)]
async fn one_request(
    conn: &mut Option<Sender>,
    addr: SocketAddr,
    path: &str,
    host: &str,
    body: Bytes,
    api: Api,
    inputs: usize,
    check: bool,
) -> Result<(), String> {
    if conn.is_none() {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        *conn = Some(send);
    }
    let send = conn.as_mut().ok_or("no connection")?;
    send.ready().await.map_err(|e| format!("connection: {e}"))?;
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = send
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("answer: {e}"))?
        .to_bytes();
    if status != hyper::StatusCode::OK {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ));
    }
    if check {
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("answer is not JSON: {e}"))?;
        let n = match api {
            Api::Openai => v["data"].as_array().map(Vec::len),
            Api::Tei => v.as_array().map(Vec::len),
        };
        if n != Some(inputs) {
            return Err(format!("expected {inputs} embeddings, found {n:?}"));
        }
    }
    Ok(())
}
