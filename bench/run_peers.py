"""Run every engine/variant/S/T configuration, each in its own process, over alternating
rounds, and write the raw results.

    python bench/run_peers.py [--quick] [--rounds R] [--embed PATH] [--embed-f32 PATH]
                              [--int8-only] [--wrap PROGRAM] [--out PATH]

dynq runs as `RAYON_NUM_THREADS=T EMBED --bench S --runs N` for INT8 and `EMBED_F32 --bench S
--runs N --precision f32` for f32: `--embed` is the plain INT8 binary and `--embed-f32` one
built with `--features f32-model` (bench/peers.sh builds both; default: the `--embed` binary,
which must then have the f32 model for the f32 rows); ONNX Runtime and PyTorch as `python bench/peer_one.py ...`. Each process
prints one JSON line; its peak RSS comes from wait4. Every round runs all configurations (in
reverse order on odd rounds, so drift hits all alike). Writes target/bench/peers-raw.jsonl
(one line per process, errors included) for bench/report.py.

`--wrap PROGRAM` runs every process as `PROGRAM CMD ...`: bench/peers.sh passes bench/noamx.c's
binary, which hides AMX from dynq and ONNX Runtime alike (both then run their AVX-512 VNNI
code), with `--int8-only` (dynq INT8 and the two ONNX Runtime INT8 variants) and
`--out target/bench/peers-noamx-raw.jsonl`.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SEQ_LENS = [16, 128, 384]
THREADS = [1, 2]
VARIANTS = [
    ("dynq", "int8"),
    ("dynq", "f32"),
    ("onnxruntime", "f32"),
    ("onnxruntime", "int8_per_tensor"),
    ("onnxruntime", "int8_per_channel"),
    ("pytorch", "f32"),
    ("pytorch", "int8"),
]
INT8_VARIANTS = [
    ("dynq", "int8"),
    ("onnxruntime", "int8_per_tensor"),
    ("onnxruntime", "int8_per_channel"),
]
RUNS = {16: 200, 128: 100, 384: 50}
QUICK_RUNS = {16: 30, 128: 15, 384: 8}
TIMEOUT_S = 600


def command(engine, variant, seq_len, threads, runs, embed, embed_f32):
    env = dict(os.environ)
    if engine == "dynq":
        env["RAYON_NUM_THREADS"] = str(threads)
        binary = embed if variant == "int8" else embed_f32
        cmd = [binary, "--bench", str(seq_len), "--runs", str(runs)]
        if variant != "int8":
            cmd += ["--precision", variant]
    else:
        # Keep library thread pools from oversubscribing the cores beyond T.
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[k] = str(threads)
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
        env["TOKENIZERS_PARALLELISM"] = "false"
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_one.py"),
               engine, variant, str(seq_len), str(threads), "--runs", str(runs)]
    return cmd, env


def run_process(cmd, env):
    """Run cmd; return (rc, stdout, stderr, peak_rss_mib, wall_s)."""
    t = time.time()
    p = common.RusagePopen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, cwd=common.ROOT)
    try:
        out, err = p.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        err += f"\ntimed out after {TIMEOUT_S} s"
    return p.returncode, out, err, p.peak_rss_mib, time.time() - t


def parse(out):
    """The last line of stdout that parses as a JSON object, or None."""
    for line in reversed(out.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                pass
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 round, few runs")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--embed", default=str(common.ROOT / "target/release/examples/embed"))
    ap.add_argument("--embed-f32", default=None,
                    help="embed binary built with --features f32-model (default: --embed)")
    ap.add_argument("--out", default=str(common.OUT_DIR / "peers-raw.jsonl"))
    ap.add_argument("--int8-only", action="store_true",
                    help="only dynq INT8 and the ONNX Runtime INT8 variants")
    ap.add_argument("--wrap", default=None, help="run every process under this program")
    a = ap.parse_args()
    rounds = a.rounds or (1 if a.quick else 3)
    runs = QUICK_RUNS if a.quick else RUNS

    variants = INT8_VARIANTS if a.int8_only else VARIANTS
    configs = [(e, v, s, t) for s in SEQ_LENS for t in THREADS for e, v in variants]
    total = rounds * len(configs)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    n = 0
    t0 = time.time()
    with open(a.out, "w") as f:
        for r in range(rounds):
            order = configs if r % 2 == 0 else configs[::-1]
            for engine, variant, seq_len, threads in order:
                n += 1
                cmd, env = command(engine, variant, seq_len, threads, runs[seq_len], a.embed,
                                   a.embed_f32 or a.embed)
                if a.wrap:
                    cmd = [a.wrap] + cmd
                rc, out, err, rss, wall = run_process(cmd, env)
                res = parse(out) if rc == 0 else None
                rec = {"round": r, "engine": engine, "variant": variant, "seq_len": seq_len,
                       "threads": threads, "runs": runs[seq_len], "wall_s": round(wall, 2)}
                label = f"[{n:>3}/{total}] round {r + 1}/{rounds} {engine:<11} {variant:<16} S={seq_len:<3} T={threads}"
                if res is None or "median_ms" not in res:
                    msg = (err.strip().splitlines() or out.strip().splitlines() or [f"exit {rc}"])[-1]
                    rec.update({"median_ms": None, "min_ms": None, "error": msg[:300]})
                    print(f"{label}: FAILED ({msg[:160]})", flush=True)
                else:
                    for k, v in res.items():
                        if k not in ("engine", "variant", "seq_len", "threads"):
                            rec[k] = v
                    if rss is not None:
                        rec["peak_rss_mib"] = rss
                    print(f"{label}: median {res['median_ms']:8.2f} ms  min {res['min_ms']:8.2f} ms"
                          f"  rss {rss if rss is not None else '?'} MiB  ({wall:.1f} s)", flush=True)
                f.write(json.dumps(rec) + "\n")
                f.flush()
    print(f"{total} processes in {time.time() - t0:.0f} s; raw results in {a.out}", flush=True)


if __name__ == "__main__":
    main()
