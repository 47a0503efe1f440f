#!/usr/bin/env bash
# HTTP serving: dynq's `serve` against infinity-emb on all-MiniLM-L6-v2, same machine, same
# inputs, one run.
#
#   bench/serve.sh [--quick] [--no-infinity] [--soak SECONDS]
#
# 1. release builds of the `serve`, `loadgen` and `embed` examples (copied to target/bench/)
# 2. infinity-emb's venv and model folder (bench/infinity.sh setup; skipped with --no-infinity)
# 3. both servers up at once, each pinned to the same 2 cores (taskset -c 0-1; the load
#    generator shares them), 2 compute threads each; dynq on 127.0.0.1:8471, infinity on :7997
# 4. for each corpus (target/bench/corpus/{short,passages}.txt, made by bench/corpus.sh) and
#    concurrency 1, 8, 64: loadgen against each server in turn (order alternating), 10 s after
#    2 s of warm-up (4 s with --quick), every answer checked; dynq's RSS sampled after each
# 5. concurrency 1 on one fixed sentence against the in-process forward of the same tokens
#    (`embed --bench`), the p50 gap in ms
# 6. a soak (--soak SECONDS, default 60; 0 skips it): concurrency 64 on the short corpus in
#    10 s slices, dynq's RSS after each slice, errors counted
# 7. target/bench/serve.{json,md,svg} (bench/serve_report.py); the last lines printed are the
#    issue's ratios
# See bench/README.md.
set -euo pipefail

QUICK=0
INFINITY=1
SOAK=60
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-infinity) INFINITY=0 ;;
        --soak) SOAK="$2"; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "serve.sh: unknown argument '$1' (expected --quick, --no-infinity, --soak SECONDS)" >&2; exit 2 ;;
    esac
    shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# OUT, VENV, PY and ensure_venv.
# shellcheck source=bench/venv.sh
. "$ROOT/bench/venv.sh"
step() { echo; echo "== $*"; }
die() { echo "serve.sh: $*" >&2; exit 1; }

RAW="$OUT/serve-raw.jsonl"
CORPUS="$OUT/corpus"
DYNQ_PORT=8471
INF_PORT=7997
DURATION=10
WARMUP=2
DRAIN=3
[ "$QUICK" = 1 ] && DURATION=4
mkdir -p "$OUT"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

step "release builds: serve, loadgen, embed"
cargo build --release -p dynq-examples --example serve --example loadgen --example embed
for b in serve loadgen embed; do cp "target/release/examples/$b" "$OUT/$b-http"; done
SERVE_BYTES=$(stat -c %s "$OUT/serve-http")
EMBED_BYTES=$(stat -c %s "$OUT/embed-http")
echo "serve example: $SERVE_BYTES bytes; embed example (no server): $EMBED_BYTES bytes"

[ -f "$CORPUS/short.txt" ] && [ -f "$CORPUS/passages.txt" ] \
    || die "no corpora in $CORPUS: run bench/corpus.sh --quick once (it makes them)"
ensure_venv >/dev/null

wait_http() { # url seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        curl -sf "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

step "dynq serve on 127.0.0.1:$DYNQ_PORT (2 threads)"
DYNQ_LOG=warn taskset -c 0-1 "$OUT/serve-http" --port "$DYNQ_PORT" --threads 2 --http-threads 2 \
    >"$OUT/serve-dynq.log" 2>&1 &
DYNQ_PID=$!
PIDS+=("$DYNQ_PID")
START_NS=$(date +%s%N)
wait_http "http://127.0.0.1:$DYNQ_PORT/health" 30 || die "dynq serve did not start (log: $OUT/serve-dynq.log)"
echo "ready after $(( ($(date +%s%N) - START_NS) / 1000000 )) ms; idle RSS $(rss_kib "$DYNQ_PID") KiB"

ENGINES=(dynq)
if [ "$INFINITY" = 1 ]; then
    step "infinity-emb on 127.0.0.1:$INF_PORT (2 threads, optimum engine)"
    bench/infinity.sh setup
    PORT=$INF_PORT THREADS=2 bench/infinity.sh serve >"$OUT/serve-infinity.log" 2>&1 &
    INF_PID=$!
    PIDS+=("$INF_PID")
    wait_http "http://127.0.0.1:$INF_PORT/health" 180 || die "infinity did not start (log: $OUT/serve-infinity.log)"
    ENGINES+=(infinity)
fi

url_of() {
    case "$1" in
        dynq) echo "http://127.0.0.1:$DYNQ_PORT/v1/embeddings" ;;
        infinity) echo "http://127.0.0.1:$INF_PORT/embeddings" ;;
    esac
}
load() { # engine corpus-file concurrency label [extra loadgen args]
    local engine=$1 file=$2 c=$3 label=$4
    shift 4
    local line
    line=$(taskset -c 0-1 "$OUT/loadgen-http" --url "$(url_of "$engine")" --corpus "$file" \
        --concurrency "$c" --duration "$DURATION" --warmup "$WARMUP" --check --label "$label" "$@")
    # The server's resident set after the run (infinity's: its main process, as exec'd).
    local pid=$DYNQ_PID
    [ "$engine" = infinity ] && pid=$INF_PID
    local rss hwm
    rss=$(rss_kib "$pid")
    hwm=$(hwm_kib "$pid")
    line=$(echo "$line" | "$PY" -c "import json,sys; d=json.load(sys.stdin); d.update(engine='$engine', rss_kib=$rss, hwm_kib=$hwm); print(json.dumps(d))")
    echo "$line" >>"$RAW"
    echo "$line" | "$PY" -c "import json,sys; d=json.load(sys.stdin); print(f\"{d['engine']:9} {d['label']:9} c={d['concurrency']:<3} {d['rps']:8.1f} req/s  p50 {d['p50_ms']:8.2f} ms  p99 {d['p99_ms']:8.2f} ms  errors {d['errors']}  rss {d['rss_kib']}\")"
}

: >"$RAW"
step "load: corpora x concurrency 1, 8, 64 x engines (${DURATION}s each after ${WARMUP}s warm-up)"
round=0
for corpus in short passages; do
    for c in 1 8 64; do
        order=("${ENGINES[@]}")
        if [ $((round % 2)) = 1 ] && [ "${#ENGINES[@]}" = 2 ]; then order=(infinity dynq); fi
        for e in "${order[@]}"; do
            load "$e" "$CORPUS/$corpus.txt" "$c" "$corpus"
            # The server just measured may still be finishing requests the load generator
            # dropped at the deadline (infinity's queue at 64 clients holds seconds of
            # passages): let it drain before the other one is measured.
            sleep "$DRAIN"
        done
        round=$((round + 1))
    done
done

step "concurrency 1, one sentence, against the in-process forward"
ONE="$OUT/serve-one.txt"
SENTENCE="A man is playing a guitar on the street."
echo "$SENTENCE" >"$ONE"
TOKENS=$("$PY" -c "
import sys; sys.path.insert(0, 'bench'); import common
print(len(common.tokenizer().encode(sys.argv[1]).ids))" "$SENTENCE")
for e in "${ENGINES[@]}"; do load "$e" "$ONE" 1 one; done
INPROC=$(taskset -c 0-1 "$OUT/embed-http" --threads 2 --bench "$TOKENS" --runs 2000 2>&1 | tail -1)
echo "in-process ($TOKENS tokens): $INPROC"
echo "{\"label\": \"in-process\", \"tokens\": $TOKENS, \"bench\": $INPROC}" >>"$RAW"

if [ "$SOAK" -gt 0 ]; then
    step "soak: ${SOAK}s at concurrency 64, short corpus, dynq"
    slices=$(( (SOAK + 9) / 10 ))
    for ((i = 0; i < slices; i++)); do
        line=$(taskset -c 0-1 "$OUT/loadgen-http" --url "$(url_of dynq)" --corpus "$CORPUS/short.txt" \
            --concurrency 64 --duration 10 --warmup 0 --check --label "soak-$i")
        echo "$line" | "$PY" -c "import json,sys; d=json.load(sys.stdin); d.update(engine='dynq', rss_kib=$(rss_kib "$DYNQ_PID"), hwm_kib=$(hwm_kib "$DYNQ_PID")); print(json.dumps(d))" \
            | tee -a "$RAW" | "$PY" -c "import json,sys; d=json.load(sys.stdin); print(f\"{d['label']:8} {d['rps']:8.1f} req/s  p99 {d['p99_ms']:7.2f} ms  errors {d['errors']}  rss {d['rss_kib']} KiB\")"
    done
fi

step "report"
"$PY" bench/serve_report.py "$RAW" --serve-bytes "$SERVE_BYTES" --embed-bytes "$EMBED_BYTES"
