#!/usr/bin/env bash
# The per-op profile of all-MiniLM-L6-v2 for S in {16, 128, 384} x threads in {1, 2}.
#
#   bench/profile.sh [--runs N]
#
# Builds the embed example (release), runs `embed --profile S --threads T --runs N` (default
# N: 200 / 100 / 30 at S = 16 / 128 / 384) for every configuration, and writes
# target/bench/profile.md: the six tables, then a summary of each configuration's total, its
# limit and their ratio, and two threads' speed-up over one. See dynq_runtime::profile.
set -euo pipefail

RUNS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="${2:?--runs needs a number}"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "profile.sh: unknown argument '$1' (expected --runs N)" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"
cargo build --release --example embed
EMBED="$ROOT/target/release/examples/embed"
MD="$OUT/profile.md"
CPU="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || echo unknown)"
{
    echo "# Per-op profile: all-MiniLM-L6-v2, batch 1"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M') UTC, $CPU ($(nproc) cores). \`embed --profile S --threads T\`."
} >"$MD"
SUMMARY=()
for s in 16 128 384; do
    runs="$RUNS"
    if [ -z "$runs" ]; then
        case "$s" in 16) runs=200 ;; 128) runs=100 ;; *) runs=30 ;; esac
    fi
    declare -A TOTAL=()
    for t in 1 2; do
        table="$("$EMBED" --profile "$s" --threads "$t" --runs "$runs")"
        printf '\n```text\n%s\n```\n' "$table" >>"$MD"
        echo "$table"
        echo
        # total: A ms per forward profiled (B ms without the accounting); limit C ms; D x the limit
        line="$(grep '^total:' <<<"$table")"
        plain="$(sed -E 's/.*\(([0-9.]+) ms without.*/\1/' <<<"$line")"
        limit="$(sed -E 's/.*limit ([0-9.]+) ms;.*/\1/' <<<"$line")"
        ratio="$(awk -v a="$plain" -v b="$limit" 'BEGIN { printf "%.2f", a / b }')"
        TOTAL[$t]="$plain"
        SUMMARY+=("| $s | $t | $plain | $limit | $ratio |")
    done
    SPEEDUP+=("| $s | $(awk -v a="${TOTAL[1]}" -v b="${TOTAL[2]}" 'BEGIN { printf "%.2f", a / b }') |")
done
{
    echo
    echo "| S | threads | ms per forward (without the accounting) | sum of per-op limits, ms | x the limit |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${SUMMARY[@]}"
    echo
    echo "| S | 2 threads' speed-up over 1 (forwards without the accounting) |"
    echo "|---|---|"
    printf '%s\n' "${SPEEDUP[@]}"
} >>"$MD"
tail -n 16 "$MD"
echo "Wrote $MD"
