#!/usr/bin/env bash
# dynq INT8 against ONNX Runtime INT8 on a ModernBERT-base-shaped random checkpoint (22 layers,
# hidden 768, GeGLU 1152, window 128, 2 of every 3 layers local), batch 1, one thread, at
# S = 128, 512 and 2048.
#
#   bench/modernbert.sh [--rounds R]
#
# Makes the checkpoint and its ONNX Runtime INT8 model with bench/modernbert_ort.py (`make`,
# `export`: TorchScript exporter, opset 17, `quantize_dynamic` per channel; reused when they
# exist), builds the dynq standalone binary of target/bench/modernbert-base/modernbert-base.toml
# (`dynq build`), then alternates the engines R times (default 2) per length, each in its own
# process: `modernbert_base --profile S --threads 1 --runs N` (dynq's per-op profile: the
# attention of global and local layers on their own rows) and `modernbert_ort.py time`.
# Writes target/bench/modernbert.md: the medians, their ratio, and dynq's profiles.
set -euo pipefail

ROUNDS=2
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="${2:?--rounds needs a number}"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "modernbert.sh: unknown argument '$1' (expected --rounds R)" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
step() { echo "== $*"; }
die() { echo "modernbert.sh: $*" >&2; exit 1; }
. bench/venv.sh
ensure_venv
DIR="$OUT/modernbert-base"
"$PY" bench/modernbert_ort.py make
"$PY" bench/modernbert_ort.py export
step "dynq build"
cargo run --release -p dynq-cli --bin dynq -- build "$DIR/modernbert-base.toml" -o "$OUT/mb-bin" \
    --target-dir target/dynq-standalone-release
BIN="$OUT/mb-bin/modernbert_base"
MD="$OUT/modernbert.md"
CPU="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || echo unknown)"
{
    echo "# ModernBERT-base shape, random weights: dynq INT8 vs ONNX Runtime INT8, 1 thread"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M') UTC, $CPU ($(nproc) cores), $ROUNDS rounds, engines alternated."
} >"$MD"
ROWS=()
PROFILES=()
for s in 128 512 2048; do
    case "$s" in 128) runs=10 ;; 512) runs=4 ;; *) runs=2 ;; esac
    dq=(); ort=()
    for r in $(seq "$ROUNDS"); do
        table="$("$BIN" --profile "$s" --threads 1 --runs "$runs")"
        line="$(grep '^total:' <<<"$table")"
        dq+=("$(sed -E 's/.*\(([0-9.]+) ms without.*/\1/' <<<"$line")")
        [ "$r" = 1 ] && PROFILES+=("$table")
        json="$("$PY" bench/modernbert_ort.py time --seq "$s" --threads 1 --runs "$runs")"
        ort+=("$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["median_ms"])' "$json")")
        echo "S=$s round $r: dynq ${dq[-1]} ms, onnxruntime ${ort[-1]} ms"
    done
    med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
    d="$(med "${dq[@]}")"; o="$(med "${ort[@]}")"
    ROWS+=("| $s | $d | $o | $(awk -v a="$d" -v b="$o" 'BEGIN { printf "%.2f", a / b }') |")
done
{
    echo
    echo "| S | dynq INT8, ms | ONNX Runtime INT8, ms | dynq / ORT |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    for p in "${PROFILES[@]}"; do printf '\n```text\n%s\n```\n' "$p"; done
} >>"$MD"
cat "$MD"
