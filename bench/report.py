"""Summarize target/bench/peers-raw.jsonl into peers.json, peers.md and peers.svg.

    python bench/report.py [--quick] [--embed PATH] [--elapsed SECONDS]

Per configuration: median_ms is the best (lowest) of the round medians, min_ms the overall
minimum, peak_rss_mib the largest peak RSS of its processes. Prints the markdown table and,
as the very last line, `dynq/ORT int8 ratio at S=128 1T: R` (R = dynq INT8 median / the faster
of ONNX Runtime INT8 per tensor and per channel; `n/a` if either is missing). With `--embed`
(the plain `--features rayon` INT8 binary), peers.md gives its size under the table.
"""

import argparse
import datetime
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from run_peers import INT8_VARIANTS, SEQ_LENS, THREADS, VARIANTS  # noqa: E402

LABELS = {
    ("dynq", "int8"): "dynq INT8",
    ("dynq", "f32"): "dynq f32",
    ("onnxruntime", "f32"): "ONNX Runtime FP32",
    ("onnxruntime", "int8_per_tensor"): "ONNX Runtime INT8 per tensor",
    ("onnxruntime", "int8_per_channel"): "ONNX Runtime INT8 per channel",
    ("pytorch", "f32"): "PyTorch FP32",
    ("pytorch", "int8"): "PyTorch INT8 (quantize_dynamic)",
}
COLUMNS = [(s, t) for t in THREADS for s in SEQ_LENS]  # 1T row block first, as in peers.md
FINAL_S, FINAL_T = 128, 1


def cpu_info():
    model, flags = platform.processor() or "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("?", "", "x86_64"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
           if f in flags]
    return {"model": model, "cores": os.cpu_count(), "isa": isa}


def aggregate(raw):
    out = []
    for s in SEQ_LENS:
        for t in THREADS:
            for e, v in VARIANTS:
                recs = [r for r in raw if (r["engine"], r["variant"], r["seq_len"], r["threads"]) == (e, v, s, t)]
                ok = [r for r in recs if r.get("median_ms") is not None]
                rec = {"engine": e, "variant": v, "seq_len": s, "threads": t,
                       "median_ms": None, "min_ms": None}
                if ok:
                    rec["median_ms"] = round(min(r["median_ms"] for r in ok), 3)
                    rec["min_ms"] = round(min(r["min_ms"] for r in ok), 3)
                    rss = [r["peak_rss_mib"] for r in ok if r.get("peak_rss_mib") is not None]
                    if rss:
                        rec["peak_rss_mib"] = max(rss)
                    rec["round_medians_ms"] = [round(r["median_ms"], 3) for r in ok]
                    rec["runs_per_round"] = ok[0].get("runs")
                    for k in ("kernel", "version"):
                        if k in ok[0]:
                            rec[k] = ok[0][k]
                elif recs:
                    rec["error"] = recs[-1].get("error", "failed")
                else:
                    rec["error"] = "not run"
                out.append(rec)
    return out


def lookup(results, e, v, s, t):
    for r in results:
        if (r["engine"], r["variant"], r["seq_len"], r["threads"]) == (e, v, s, t):
            return r
    return None


def ms(results, e, v, s, t):
    r = lookup(results, e, v, s, t)
    return r["median_ms"] if r else None


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def best_ort_int8(results, s, t):
    c = [(ms(results, "onnxruntime", v, s, t), v) for v in ("int8_per_tensor", "int8_per_channel")]
    c = [x for x in c if x[0] is not None]
    return min(c) if c else (None, None)


def fmt(x, nd=1):
    if x is None:
        return "n/a"
    return f"{x:.{nd}f}" if x < 100 or nd == 0 else f"{x:.0f}"


def binary_line(size):
    """The line under the table on the INT8 embed binary's size, or None."""
    if size is None:
        return None
    return (f"dynq INT8 binary (`cargo build --release --example embed --features rayon`: "
            f"runtime, tokenizer and INT8 MiniLM in one file): {size} bytes "
            f"({size / 1e6:.1f} MB). The dynq f32 rows run a second build with "
            f"`--features rayon,f32-model`.")


def markdown(results, meta, fidelity, binary_size=None):
    head = "| engine | " + " | ".join(f"S={s} {t}T" for s, t in COLUMNS) + " | peak RSS MiB |"
    lines = [
        "# dynq vs ONNX Runtime vs PyTorch: all-MiniLM-L6-v2, batch 1",
        "",
        f"{meta['date']}, {meta['cpu']['model']} ({meta['cpu']['cores']} cores; "
        f"{', '.join(meta['cpu']['isa'])}). {meta['mode']}: {meta['rounds']} round(s), "
        f"runs per process {meta['runs']} after 10 warm-ups; each configuration in its own "
        f"process. Median ms (best of the round medians); lower is better.",
        "",
        head,
        "|" + "---|" * (len(COLUMNS) + 2),
    ]
    for e, v in VARIANTS:
        rss = [r.get("peak_rss_mib") for r in results
               if (r["engine"], r["variant"]) == (e, v) and r.get("peak_rss_mib") is not None]
        cells = [fmt(ms(results, e, v, s, t)) for s, t in COLUMNS]
        lines.append(f"| {LABELS[(e, v)]} | " + " | ".join(cells)
                     + f" | {fmt(max(rss), 0) if rss else 'n/a'} |")
    if binary_line(binary_size):
        lines += ["", binary_line(binary_size)]
    lines += ["", "Ratios (median / median; below 1 means dynq is faster):", "",
              head.replace(" peak RSS MiB |", "").replace("| engine |", "| ratio |"),
              "|" + "---|" * (len(COLUMNS) + 1)]
    rows = [
        ("dynq INT8 / ONNX Runtime INT8 (faster of per tensor, per channel)",
         lambda s, t: ratio(ms(results, "dynq", "int8", s, t), best_ort_int8(results, s, t)[0])),
        ("dynq INT8 / ONNX Runtime INT8 per channel",
         lambda s, t: ratio(ms(results, "dynq", "int8", s, t), ms(results, "onnxruntime", "int8_per_channel", s, t))),
        ("dynq INT8 / PyTorch INT8",
         lambda s, t: ratio(ms(results, "dynq", "int8", s, t), ms(results, "pytorch", "int8", s, t))),
        ("dynq f32 / ONNX Runtime FP32",
         lambda s, t: ratio(ms(results, "dynq", "f32", s, t), ms(results, "onnxruntime", "f32", s, t))),
        ("dynq f32 / PyTorch FP32",
         lambda s, t: ratio(ms(results, "dynq", "f32", s, t), ms(results, "pytorch", "f32", s, t))),
    ]
    for name, f in rows:
        lines.append(f"| {name} | " + " | ".join(fmt(f(s, t), 2) for s, t in COLUMNS) + " |")
    faster = [f"S={s} {t}T: {best_ort_int8(results, s, t)[1] or 'n/a'}" for s, t in COLUMNS]
    lines += ["", "Faster ONNX Runtime INT8 variant: " + "; ".join(faster) + "."]

    missing = [r for r in results if r["median_ms"] is None]
    if missing:
        lines += ["", "Missing (n/a):"]
        for r in missing:
            lines.append(f"- {LABELS[(r['engine'], r['variant'])]} S={r['seq_len']} "
                         f"{r['threads']}T: {r.get('error', 'failed')}")
    kernel = next((r.get("kernel") for r in results if r["engine"] == "dynq" and r.get("kernel")), None)
    versions = sorted({r["version"] for r in results if r.get("version")})
    lines += ["", f"dynq kernel: {kernel or 'n/a'}; peers: {', '.join(versions) or 'n/a'}."]
    wide = [f for f in ("avx512_vnni", "amx_int8") if f in meta["cpu"]["isa"]]
    if wide and kernel and kernel not in wide and not kernel.startswith("avx512"):
        lines += ["", f"Note: this CPU has {' and '.join(wide)}, which ONNX Runtime (MLAS) and "
                  f"PyTorch (fbgemm/oneDNN) can use for their INT8 GEMMs, while dynq ran its "
                  f"`{kernel}` kernel: the INT8 ratios here are not comparable with those of an "
                  f"AVX2-only machine (such as the Zen 3 one in shared/peers.md)."]
    if fidelity:
        d = fidelity["dynq_int8_vs_dynq_f32"]
        lines += ["", f"Embedding cosine over the {fidelity['inputs']} benchmark inputs "
                  f"({', '.join(map(str, fidelity['token_counts']))} tokens):", "",
                  "| pair | cos mean | cos min |", "|---|---|---|",
                  f"| dynq INT8 vs dynq f32 | {d['mean']:.4f} | {d['min']:.4f} |"]
        for k, c in fidelity["vs_pytorch_f32"].items():
            e, v = k.split(" ", 1)
            lines.append(f"| {LABELS.get((e, v), k)} vs PyTorch FP32 | {c['mean']:.4f} | {c['min']:.4f} |")
    lines += ["", "Rounds on a shared 2-core VM drift by tens of percent: compare engines within one "
              "run, as ratios. `target/bench/peers.json` has every value (with round medians and "
              "peak RSS); `peers-raw.jsonl` has every process."]
    return "\n".join(lines) + "\n"


def noamx_markdown(results):
    """The second table: dynq INT8 and ONNX Runtime INT8 with AMX hidden from both."""
    head = "| engine | " + " | ".join(f"S={s} {t}T" for s, t in COLUMNS) + " |"
    lines = [
        "## Without AMX: both engines under bench/noamx.c",
        "",
        "The same processes run under `noamx`, a seccomp filter that makes "
        "`arch_prctl(ARCH_REQ_XCOMP_PERM)` fail, so ONNX Runtime (MLAS) and dynq both fall back "
        "to their AVX-512 VNNI code (on a CPU without AMX nothing changes). Median ms.",
        "",
        head,
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for e, v in INT8_VARIANTS:
        lines.append(f"| {LABELS[(e, v)]} | "
                     + " | ".join(fmt(ms(results, e, v, s, t)) for s, t in COLUMNS) + " |")
    lines.append("| dynq INT8 / ONNX Runtime INT8 (faster variant) | " + " | ".join(
        fmt(ratio(ms(results, "dynq", "int8", s, t), best_ort_int8(results, s, t)[0]), 2)
        for s, t in COLUMNS) + " |")
    kernel = next((r.get("kernel") for r in results if r["engine"] == "dynq" and r.get("kernel")), None)
    lines += ["", f"dynq kernel under noamx: {kernel or 'n/a'}."]
    missing = [r for r in results if r["median_ms"] is None and r.get("error") != "not run"]
    for r in missing:
        lines.append(f"- n/a: {LABELS[(r['engine'], r['variant'])]} S={r['seq_len']} "
                     f"{r['threads']}T: {r.get('error', 'failed')}")
    return "\n".join(lines) + "\n"


def chart(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(13, 5.5))
    n = len(VARIANTS)
    width = 0.8 / n
    colors = ["#1f5fa8", "#7fa9d8", "#555555", "#d6641e", "#f2a35e", "#2e8b57", "#8fcf9f"]
    for i, (e, v) in enumerate(VARIANTS):
        xs, ys = [], []
        for j, (s, t) in enumerate(COLUMNS):
            y = ms(results, e, v, s, t)
            x = j + (i - (n - 1) / 2) * width
            if y is None:
                ax.text(x, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize=7,
                        color=colors[i], transform=ax.get_xaxis_transform())
                continue
            xs.append(x)
            ys.append(y)
        ax.bar(xs, ys, width, label=LABELS[(e, v)], color=colors[i],
               hatch="//" if e == "dynq" else None, edgecolor="white" if e != "dynq" else "black",
               linewidth=0.5)
    ax.set_yscale("log")
    ax.set_xticks(range(len(COLUMNS)))
    ax.set_xticklabels([f"S={s}\n{t} thread{'s' if t > 1 else ''}" for s, t in COLUMNS])
    ax.set_ylabel("median ms per forward (log scale, lower is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=4, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", default=str(common.OUT_DIR / "peers-raw.jsonl"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--elapsed", type=float, default=None)
    ap.add_argument("--embed", default=None,
                    help="the INT8 embed binary (--features rayon) whose size peers.md gives")
    ap.add_argument("--noamx-raw", default=None,
                    help="raw results of the run under noamx (a second table)")
    a = ap.parse_args()

    with open(a.raw) as f:
        raw = [json.loads(line) for line in f if line.strip()]
    results = aggregate(raw)
    cpu = cpu_info()
    for r in results:
        r["cpu"] = cpu["model"]
    rounds = 1 + max((r["round"] for r in raw), default=0)
    runs = sorted({(r["seq_len"], r["runs"]) for r in raw})
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "mode": "quick run (--quick)" if a.quick else "full run",
        "rounds": rounds,
        "runs": ", ".join(f"{n} at S={s}" for s, n in runs),
    }
    fidelity = None
    fpath = common.OUT_DIR / "fidelity.json"
    if fpath.exists():  # bench/peers.sh deletes it before each run
        with open(fpath) as f:
            fidelity = json.load(f)

    with open(common.OUT_DIR / "peers.json", "w") as f:
        json.dump(results, f, indent=1)
    binary_size = os.path.getsize(a.embed) if a.embed and os.path.exists(a.embed) else None
    md = markdown(results, meta, fidelity, binary_size)
    if a.noamx_raw and os.path.exists(a.noamx_raw):
        with open(a.noamx_raw) as f:
            noamx = aggregate([json.loads(line) for line in f if line.strip()])
        with open(common.OUT_DIR / "peers-noamx.json", "w") as f:
            json.dump(noamx, f, indent=1)
        md += "\n" + noamx_markdown(noamx)
    if a.elapsed is not None:
        md += f"\nWhole run (setup, build, export, benchmark): {a.elapsed:.0f} s.\n"
    with open(common.OUT_DIR / "peers.md", "w") as f:
        f.write(md)
    try:
        chart(results, common.OUT_DIR / "peers.svg",
              f"all-MiniLM-L6-v2, batch 1, {cpu['model']}, {meta['mode']}")
        svg = "target/bench/peers.svg"
    except Exception as e:  # noqa: BLE001 - the numbers matter more than the picture
        svg = f"(no chart: {type(e).__name__}: {e})"

    print(md)
    print(f"Wrote target/bench/peers.json, target/bench/peers.md, {svg}")
    r = ratio(ms(results, "dynq", "int8", FINAL_S, FINAL_T), best_ort_int8(results, FINAL_S, FINAL_T)[0])
    print(f"dynq/ORT int8 ratio at S={FINAL_S} {FINAL_T}T: {'n/a' if r is None else f'{r:.2f}'}")


if __name__ == "__main__":
    main()
