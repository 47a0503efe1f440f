"""Summarize target/bench/serve-raw.jsonl (bench/serve.sh) into serve.json, serve.md, serve.svg.

    python bench/serve_report.py RAW [--serve-bytes N --embed-bytes N]

The table: per corpus and concurrency, each engine's requests/s, p50 and p99 latency, errors,
and dynq's RSS after the run. Below it: concurrency 1 on one sentence against the in-process
forward, the soak (RSS per 10 s slice, errors), and the server's share of the binary. The last
lines printed are the issue's ratios: at concurrency 64, dynq/infinity requests/s and
dynq/infinity p99, per corpus; the c=1 p50 gap; peak RSS; soak RSS growth and errors.
"""

import argparse
import json
import os

MIB = 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--serve-bytes", type=int)
    ap.add_argument("--embed-bytes", type=int)
    args = ap.parse_args()
    out_dir = os.path.dirname(os.path.abspath(args.raw))
    rows = [json.loads(l) for l in open(args.raw) if l.strip()]
    load = [r for r in rows if r.get("label") in ("short", "passages")]
    one = {r["engine"]: r for r in rows if r.get("label") == "one"}
    inproc = next((r for r in rows if r.get("label") == "in-process"), None)
    soak = [r for r in rows if str(r.get("label", "")).startswith("soak-")]
    engines = sorted({r["engine"] for r in load}, key=lambda e: e != "dynq")

    def get(engine, corpus, c):
        return next(
            (r for r in load if r["engine"] == engine and r["label"] == corpus and r["concurrency"] == c),
            None,
        )

    md = ["| corpus | clients | engine | req/s | p50 ms | p99 ms | errors | server RSS MiB |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for corpus in ("short", "passages"):
        for c in (1, 8, 64):
            for e in engines:
                r = get(e, corpus, c)
                if r is None:
                    continue
                rss = f"{r['rss_kib'] / MIB:.1f}" if r.get("rss_kib") else ""
                md.append(
                    f"| {corpus} | {c} | {e} | {r['rps']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {rss} |"
                )
    summary = {"runs": load, "one": one, "in_process": inproc, "soak": soak}
    lines = []
    for corpus in ("short", "passages"):
        d, i = get("dynq", corpus, 64), get("infinity", corpus, 64)
        if d and i:
            rps = d["rps"] / i["rps"]
            p99 = d["p99_ms"] / i["p99_ms"]
            summary[f"{corpus}_c64"] = {"rps_ratio": rps, "p99_ratio": p99}
            lines.append(
                f"{corpus}, 64 clients: dynq/infinity requests/s {rps:.2f}x (goal >= 3), p99 {p99:.3f}x (goal <= 0.333)"
            )
    md.append("")
    if inproc and "dynq" in one:
        gap = one["dynq"]["p50_ms"] - inproc["bench"]["median_ms"]
        summary["c1_gap_ms"] = gap
        md.append(
            f"One sentence ({inproc['tokens']} tokens), 1 client: dynq p50 {one['dynq']['p50_ms']:.3f} ms over HTTP, "
            f"{inproc['bench']['median_ms']:.3f} ms in process (`embed --bench`): {gap:+.3f} ms."
        )
        if "infinity" in one:
            md.append(f"infinity-emb on the same sentence: p50 {one['infinity']['p50_ms']:.3f} ms.")
        lines.append(f"1 client, one sentence: HTTP p50 - in-process median = {gap:+.3f} ms (goal <= 0.3)")
    peak = max((r.get("hwm_kib") or 0) for r in rows if r.get("engine") != "infinity")
    inf_peak = max((r.get("hwm_kib") or 0) for r in rows if r.get("engine") == "infinity")
    if inf_peak:
        summary["infinity_peak_rss_mib"] = inf_peak / MIB
        md.append(f"infinity-emb peak RSS (VmHWM of its process): {inf_peak / MIB:.1f} MiB.")
    if peak:
        summary["peak_rss_mib"] = peak / MIB
        md.append(f"dynq peak RSS (VmHWM) over the whole run: {peak / MIB:.1f} MiB.")
        lines.append(f"dynq peak RSS {peak / MIB:.1f} MiB (goal <= 64)")
    if soak:
        errors = sum(r["errors"] for r in soak)
        first, last = soak[0]["rss_kib"] / MIB, soak[-1]["rss_kib"] / MIB
        secs = sum(r["seconds"] for r in soak)
        reqs = sum(r["requests"] for r in soak)
        summary["soak"] = {"seconds": secs, "requests": reqs, "errors": errors, "rss_first_mib": first, "rss_last_mib": last}
        md.append(
            f"Soak: {secs:.0f} s at 64 clients, {reqs} requests, {errors} errors; RSS after each 10 s slice: "
            + ", ".join(f"{r['rss_kib'] / MIB:.1f}" for r in soak)
            + " MiB."
        )
        lines.append(f"soak {secs:.0f}s: {errors} errors, RSS {first:.1f} -> {last:.1f} MiB")
    if args.serve_bytes and args.embed_bytes:
        growth = (args.serve_bytes - args.embed_bytes) / 1e6
        summary["binary_growth_mb"] = growth
        md.append(
            f"Binary: `serve` example {args.serve_bytes / 1e6:.1f} MB, `embed` example (no server) "
            f"{args.embed_bytes / 1e6:.1f} MB: the server adds {growth:.2f} MB."
        )
        lines.append(f"server binary growth {growth:.2f} MB (goal <= 5)")
    with open(os.path.join(out_dir, "serve.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out_dir, "serve.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    plot(load, engines, os.path.join(out_dir, "serve.svg"))
    print("\n".join(md))
    print()
    print("\n".join(lines))


def plot(load, engines, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no serve.svg")
        return
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    colors = {"dynq": "#1f77b4", "infinity": "#ff7f0e"}
    names = {"dynq": "dynq serve (INT8)", "infinity": "infinity-emb (ONNX, optimum)"}
    for col, corpus in enumerate(("short", "passages")):
        for row, (key, title) in enumerate((("rps", "requests/s"), ("p99_ms", "p99 latency, ms"))):
            ax = axes[row][col]
            width = 0.8 / max(len(engines), 1)
            for k, e in enumerate(engines):
                xs, ys = [], []
                for j, c in enumerate((1, 8, 64)):
                    r = next((r for r in load if r["engine"] == e and r["label"] == corpus and r["concurrency"] == c), None)
                    if r:
                        xs.append(j + k * width)
                        ys.append(r[key])
                bars = ax.bar(xs, ys, width, label=names.get(e, e), color=colors.get(e))
                ax.bar_label(bars, fmt="%.0f" if key == "rps" else "%.1f", fontsize=7)
            ax.set_xticks([j + width * (len(engines) - 1) / 2 for j in range(3)], ["1", "8", "64"])
            ax.set_xlabel("concurrent clients")
            ax.set_title(f"{corpus}: {title}")
            if key == "p99_ms":
                ax.set_yscale("log")
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.suptitle("all-MiniLM-L6-v2 over HTTP, 2 cores (bench/serve.sh)")
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
