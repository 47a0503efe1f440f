#!/usr/bin/env bash
# Benchmark dynq against ONNX Runtime and PyTorch on all-MiniLM-L6-v2 (batch 1), side by side.
#
#   bench/peers.sh [--quick] [--model all-minilm-l6-v2|all-mpnet-base-v2]
#
# --model all-mpnet-base-v2 runs bench/peers_mpnet.sh instead (dynq INT8 against ONNX Runtime
# INT8 per tensor and per channel, S in {16,128,384} x {1,2} threads, target/bench/peers-mpnet.md).
# The default, all-MiniLM-L6-v2:
#
# 1. virtualenv target/bench/venv (onnxruntime, torch, transformers, onnx, ...); reused
# 2. the dynq side, two builds of the embed example, copied under target/bench/:
#    --features rayon (INT8 only: the binary users get, timed for dynq INT8, its size reported)
#    and --features rayon,f32-model (also the f32 build, timed for dynq f32)
# 3. ONNX export + ONNX Runtime transformer fusions + dynamic INT8 (per tensor, per channel)
#    under target/bench/onnx/; reused when present
# 4. embedding cosine on the benchmark inputs (dynq INT8 vs f32, peers vs PyTorch FP32)
# 5. every engine/variant for S in {16,128,384} x threads in {1,2}, each in its own process,
#    alternating rounds (3; 1 with --quick)
# 6. the same INT8 timings with AMX hidden from dynq and ONNX Runtime alike (bench/noamx.c,
#    built with cc): a second table in peers.md, raw results in peers-noamx-raw.jsonl
# 7. target/bench/peers.{json,md,svg}; the last line printed is
#    `dynq/ORT int8 ratio at S=128 1T: R`
# See bench/README.md.
set -euo pipefail

QUICK=()
MODEL=all-minilm-l6-v2
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=(--quick); shift ;;
        --model) MODEL="${2:?--model needs a name}"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "peers.sh: unknown argument '$1' (expected --quick, --model NAME)" >&2; exit 2 ;;
    esac
done
case "$MODEL" in
    all-minilm-l6-v2) ;;
    all-mpnet-base-v2) exec "$(dirname "${BASH_SOURCE[0]}")/peers_mpnet.sh" "${QUICK[@]}" ;;
    *) echo "peers.sh: --model: expected all-minilm-l6-v2 or all-mpnet-base-v2, found '$MODEL'" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# OUT, VENV, PY and ensure_venv.
# shellcheck source=bench/venv.sh
. "$ROOT/bench/venv.sh"
EMBED="$OUT/embed"          # --features rayon: INT8, the binary the README's commands build
EMBED_F32="$OUT/embed-f32"  # --features rayon,f32-model: INT8 and the f32 reference
START=$(date +%s)
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*"; }
die() { printf 'peers.sh: %s\n' "$*" >&2; exit 1; }

ensure_venv

command -v cargo >/dev/null || die "cargo not found"
# Both builds write target/release/examples/embed: each is copied before the next build.
build_embed() {  # FEATURES DEST
    step "dynq: cargo build --release --example embed --features $1 -> $2"
    cargo build --release --example embed --features "$1" || die "cargo build --features $1 failed"
    [ -x "$ROOT/target/release/examples/embed" ] || die "target/release/examples/embed missing after the build"
    cp "$ROOT/target/release/examples/embed" "$2" || die "cannot copy the embed binary to $2"
}
build_embed rayon "$EMBED"
build_embed rayon,f32-model "$EMBED_F32"
echo "INT8 binary: $(stat -c %s "$EMBED") bytes; with the f32 model: $(stat -c %s "$EMBED_F32") bytes"

step "ONNX export and ONNX Runtime variants (target/bench/onnx/)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PY" bench/export_onnx.py || die "ONNX export failed (rerun with: $PY bench/export_onnx.py --force)"

step "Embedding cosine on the benchmark inputs"
rm -f "$OUT/fidelity.json"
"$PY" bench/fidelity.py --embed "$EMBED" --embed-f32 "$EMBED_F32" \
    || echo "peers.sh: fidelity check failed; continuing without it" >&2

step "Timing (each configuration in its own process${QUICK:+; quick})"
"$PY" bench/run_peers.py "${QUICK[@]}" --embed "$EMBED" --embed-f32 "$EMBED_F32" \
    || die "benchmark driver failed"

step "Timing without AMX (bench/noamx.c: ONNX Runtime and dynq on their AVX-512 VNNI code)"
NOAMX_RAW="$OUT/peers-noamx-raw.jsonl"
rm -f "$NOAMX_RAW"
if cc -O2 -o "$OUT/noamx" bench/noamx.c; then
    "$PY" bench/run_peers.py "${QUICK[@]}" --int8-only --wrap "$OUT/noamx" --out "$NOAMX_RAW" \
        --embed "$EMBED" --embed-f32 "$EMBED_F32" \
        || echo "peers.sh: the run under noamx failed; its table is left out" >&2
else
    echo "peers.sh: cannot build bench/noamx.c (cc); the table without AMX is left out" >&2
fi

step "Report"
"$PY" bench/report.py "${QUICK[@]}" --embed "$EMBED" --noamx-raw "$NOAMX_RAW" \
    --elapsed "$(( $(date +%s) - START ))" \
    || die "report failed"
