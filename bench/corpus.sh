#!/usr/bin/env bash
# Corpus throughput of dynq vs ONNX Runtime INT8 vs PyTorch INT8 on all-MiniLM-L6-v2.
#
#   bench/corpus.sh [--quick] [--peers-only]
#
# 1. virtualenv target/bench/venv and the ONNX models under target/bench/onnx/, made as
#    bench/peers.sh makes them; reused when present
# 2. the corpora, target/bench/corpus/{short,passages}.txt (bench/make_corpus.py): the unique
#    STS test sentences, and passages of 150-250 tokens joined from them
# 3. the dynq side: cargo build --release --example embed --features rayon, copied to
#    target/bench/embed-corpus (skipped with --peers-only)
# 4. PyTorch FP32 reference embeddings (batch 1) for the cosines
# 5. every engine/config for both corpora x threads in {1,2}, each engine/thread/corpus in its
#    own process, alternating rounds (3; 1 with --quick)
# 6. target/bench/corpus.{json,md,svg}; the last lines printed give, per corpus, dynq/best-ORT
#    INT8 at 1T, dynq 2T/1T and dynq batched/one-at-a-time (sentences/s ratios)
# See bench/README.md.
set -euo pipefail

QUICK=()
PEERS_ONLY=()
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=(--quick) ;;
        --peers-only) PEERS_ONLY=(--no-dynq) ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "corpus.sh: unknown argument '$arg' (expected --quick, --peers-only)" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# OUT, VENV, PY and ensure_venv.
# shellcheck source=bench/venv.sh
. "$ROOT/bench/venv.sh"
EMBED="$OUT/embed-corpus"
CORPUS="$OUT/corpus"
START=$(date +%s)
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*"; }
die() { printf 'corpus.sh: %s\n' "$*" >&2; exit 1; }

ensure_venv

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ ${#PEERS_ONLY[@]} -eq 0 ]; then
    step "dynq: cargo build --release --example embed --features rayon -> $EMBED"
    command -v cargo >/dev/null || die "cargo not found"
    cargo build --release --example embed --features rayon || die "cargo build failed"
    [ -x "$ROOT/target/release/examples/embed" ] || die "target/release/examples/embed missing after the build"
    cp "$ROOT/target/release/examples/embed" "$EMBED" || die "cannot copy the embed binary to $EMBED"
    "$EMBED" --help 2>&1 | grep -q -- --bench-corpus \
        || echo "corpus.sh: warning: this embed has no --bench-corpus; the dynq rows will be n/a" >&2
else
    step "dynq: skipped (--peers-only)"
fi

step "ONNX export and ONNX Runtime variants (target/bench/onnx/)"
"$PY" bench/export_onnx.py || die "ONNX export failed (rerun with: $PY bench/export_onnx.py --force)"

step "Corpora (target/bench/corpus/)"
"$PY" bench/make_corpus.py "$CORPUS" || die "making the corpora failed"

step "PyTorch FP32 reference embeddings (batch 1)"
STALE=()
for c in short passages; do
    # Reused while newer than its corpus (make_corpus.py leaves an unchanged file alone).
    if [ ! -s "$CORPUS/ref-$c.npy" ] || [ "$CORPUS/$c.txt" -nt "$CORPUS/ref-$c.npy" ]; then
        STALE+=("$CORPUS/$c.txt")
    else
        echo "target/bench/corpus/ref-$c.npy is up to date, reusing it"
    fi
done
if [ ${#STALE[@]} -gt 0 ]; then
    "$PY" bench/corpus_peers.py ref "${STALE[@]}" || die "reference embeddings failed"
fi

step "Timing (each engine/thread/corpus in its own process${QUICK:+; quick})"
"$PY" bench/corpus_peers.py run "${QUICK[@]}" "${PEERS_ONLY[@]}" --embed "$EMBED" \
    "$CORPUS/short.txt" "$CORPUS/passages.txt" || die "benchmark driver failed"

step "Report"
"$PY" bench/corpus_peers.py report "${QUICK[@]}" --elapsed "$(( $(date +%s) - START ))" \
    || die "report failed"
