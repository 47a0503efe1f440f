#!/usr/bin/env bash
# dynq INT8 against ONNX Runtime INT8 on all-mpnet-base-v2, batch 1, side by side:
# `bench/peers.sh --model all-mpnet-base-v2 [--quick]` runs this.
#
# 1. the checkpoint target/all-mpnet-base-v2 (scripts/fetch_mpnet.py) and its description
#    target/mpnet-model/all_mpnet_base_v2.toml (`dynq init`, written when missing)
# 2. dynq: `dynq build` of that description (its defaults: every kernel of the machine's
#    architecture, the shared forward, embedded weights) into target/bench/mpnet-bin
# 3. ONNX Runtime: bench/mpnet_ort.py export (FP32, transformer fusions, quantize_dynamic per
#    tensor and per channel) under target/bench/mpnet/; reused when present
# 4. for S in {16,128,384} x threads in {1,2}, rounds alternating the engines, each in its own
#    process (3 rounds; 1 with --quick): dynq `--profile S --threads T --runs N` (the forward
#    time without the profiler's accounting) and `mpnet_ort.py time` for the INT8 variants
#    (per tensor, per channel, per channel with reduce_range)
# 5. accuracy of the ONNX Runtime INT8 variants on the STS sentences when target/mpnet-sts
#    exists (scripts/mpnet_reference.py)
# 6. target/bench/peers-mpnet.md: medians, dynq / the better ORT variant; the last line printed
#    is `dynq/ORT int8 ratio at S=128 1T: R`
set -euo pipefail

ROUNDS=3
for arg in "$@"; do
    case "$arg" in
        --quick) ROUNDS=1 ;;
        *) echo "peers_mpnet.sh: unknown argument '$arg' (expected --quick)" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/venv.sh
. "$ROOT/bench/venv.sh"
step() { printf '\n== %s\n' "$*"; }
die() { printf 'peers_mpnet.sh: %s\n' "$*" >&2; exit 1; }
ensure_venv
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

CKPT="$ROOT/target/all-mpnet-base-v2"
TOML="$ROOT/target/mpnet-model/all_mpnet_base_v2.toml"
[ -f "$CKPT/model.safetensors" ] || die "$CKPT is missing: run '$PY scripts/fetch_mpnet.py'"
DYNQ=(cargo run --release -q -p dynq-cli --bin dynq --)
if [ ! -f "$TOML" ]; then
    step "dynq init -> $TOML"
    "${DYNQ[@]}" init --hf-config "$CKPT/config.json" --weights "$CKPT/model.safetensors" -o "$TOML"
fi
step "dynq build $TOML"
"${DYNQ[@]}" build "$TOML" -o "$OUT/mpnet-bin" --target-dir target/dynq-standalone-release
BIN="$OUT/mpnet-bin/all_mpnet_base_v2"
[ -x "$BIN" ] || die "$BIN missing after dynq build"

step "ONNX Runtime variants (target/bench/mpnet/)"
"$PY" bench/mpnet_ort.py export || die "export failed (rerun with: $PY bench/mpnet_ort.py export --force)"

runs_for() { case "$1" in 16) echo 30 ;; 128) echo 10 ;; *) echo 4 ;; esac; }
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ort_ms() {  # VARIANT S T RUNS
    "$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["median_ms"])' \
        "$("$PY" bench/mpnet_ort.py time --variant "$1" --seq "$2" --threads "$3" --runs "$4")"
}
step "Timing: $ROUNDS round(s), engines alternated"
ROWS=()
RATIO_128_1=""
for t in 1 2; do
    for s in 16 128 384; do
        n="$(runs_for "$s")"
        dq=(); pt=(); pc=(); rr=()
        for r in $(seq "$ROUNDS"); do
            line="$("$BIN" --profile "$s" --threads "$t" --runs "$n" | grep '^total:')"
            dq+=("$(sed -E 's/.*\(([0-9.]+) ms without.*/\1/' <<<"$line")")
            pt+=("$(ort_ms int8_per_tensor "$s" "$t" "$n")")
            pc+=("$(ort_ms int8_per_channel "$s" "$t" "$n")")
            rr+=("$(ort_ms int8_per_channel_rr "$s" "$t" "$n")")
            echo "S=$s ${t}T round $r: dynq ${dq[-1]} ms, ORT per tensor ${pt[-1]} ms, per channel ${pc[-1]} ms, per channel 7-bit ${rr[-1]} ms"
        done
        d="$(med "${dq[@]}")"; a="$(med "${pt[@]}")"; b="$(med "${pc[@]}")"; c="$(med "${rr[@]}")"
        best="$(awk -v a="$a" -v b="$b" 'BEGIN { print (a < b ? a : b) }')"
        ratio="$(awk -v d="$d" -v o="$best" 'BEGIN { printf "%.2f", d / o }')"
        ratio_rr="$(awk -v d="$d" -v o="$c" 'BEGIN { printf "%.2f", d / o }')"
        [ "$s" = 128 ] && [ "$t" = 1 ] && RATIO_128_1="$ratio"
        ROWS+=("| $s | $t | $d | $a | $b | $c | **$ratio** | $ratio_rr |")
    done
done

ACC=""
if [ -f "$ROOT/target/mpnet-sts/fp32.safetensors" ]; then
    step "ONNX Runtime INT8 accuracy on the STS sentences"
    ACC="$("$PY" bench/mpnet_ort.py accuracy)" || { echo "peers_mpnet.sh: accuracy failed" >&2; ACC=""; }
fi

MD="$OUT/peers-mpnet.md"
CPU="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || echo unknown)"
{
    echo "# all-mpnet-base-v2, batch 1: dynq INT8 vs ONNX Runtime INT8"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M') UTC, $CPU ($(nproc) cores), $("$BIN" --profile 16 --runs 1 | grep -o 'kernel [a-z0-9_]*' | head -1 || true),"
    echo "$ROUNDS round(s), engines alternated, medians in ms. dynq: \`--profile S --threads T\`"
    echo "(forward without the profiler's accounting); ONNX Runtime $("$PY" -c 'import onnxruntime; print(onnxruntime.__version__)'):"
    echo "transformer fusions, quantize_dynamic QInt8 weights (bench/mpnet_ort.py)."
    echo
    echo "ORT per channel 7-bit: \`reduce_range=True\`, ONNX Runtime's advice for CPUs without VNNI"
    echo "(the accuracy below shows why). dynq / better ORT: against the faster of per tensor and per"
    echo "channel (8-bit weights), as the issue asks; the last column against the 7-bit variant."
    echo
    echo "| S | threads | dynq INT8 | ORT INT8 per tensor | ORT INT8 per channel | ORT INT8 per channel 7-bit | dynq / better ORT | dynq / ORT 7-bit |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    if [ -n "$ACC" ]; then
        echo
        echo "ONNX Runtime INT8 on the STS test sentences against PyTorch FP32 (one sentence at a time):"
        echo
        echo '```json'
        echo "$ACC"
        echo '```'
    fi
} >"$MD"
cat "$MD"
echo "dynq/ORT int8 ratio at S=128 1T: $RATIO_128_1"
