"""Corpus throughput of dynq, ONNX Runtime INT8 and PyTorch INT8 on all-MiniLM-L6-v2
(bench/corpus.sh runs the subcommands in order; see bench/README.md).

    python bench/corpus_peers.py ref CORPUS...                   # PyTorch FP32 reference embeddings
    python bench/corpus_peers.py one ENGINE THREADS CORPUS [--batches 1,8,32,128] [--passes N]
    python bench/corpus_peers.py run [--quick] [--rounds R] --embed PATH [CORPUS...]
    python bench/corpus_peers.py report [--quick] [--elapsed SECONDS]

ENGINE (peers): ort-int8-per-tensor, ort-int8-per-channel (the quantize_dynamic models that
bench/export_onnx.py makes), torch-int8 (torch.ao.quantization.quantize_dynamic of nn.Linear,
qint8), torch-fp32 (the reference). Every peer pass is what a careful user runs, timed end to end:
tokenize the whole corpus (models/minilm/tokenizer.json with the `tokenizers` package,
truncation at 256 tokens like sentence-transformers, no padding), sort by token count, cut into
batches of B, pad each batch to its longest sequence (pad id 0, attention mask 0, token types
0), run the model (mean pooling and L2 normalization are in the model), put each embedding back
at its input's position. Before each batch size: a warm-up pass over the longest texts (not
timed). Then `--passes` timed passes over the whole corpus; the reported time is their median.

`one` prints one JSON line per batch size: {"engine", "corpus", "threads", "batch",
"sentences", "tokens" (real tokens, [CLS] and [SEP] included, no padding), "padded_tokens",
"seconds", "sentences_per_s", "tokens_per_s", "cos_mean", "cos_min" (cosine of each
embedding to the PyTorch FP32 reference, batch 1, in input order), "pass_seconds", "version"}.

`run` times every configuration over alternating rounds, each engine/thread/corpus in its own
process, dynq included (`EMBED --bench-corpus FILE [--batch-tokens 1] --threads T`, which
prints one JSON line; repeated `--passes` times per round, the median kept), and gets dynq's
embeddings for the cosine from `EMBED --threads 2 < FILE`. Writes
target/bench/corpus-raw.jsonl. `report` aggregates it (best of the round values per
configuration) into target/bench/corpus.{json,md,svg}.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import common  # noqa: E402

CORPUS_DIR = common.OUT_DIR / "corpus"
CORPORA = ["short.txt", "passages.txt"]
PEERS = ["ort-int8-per-tensor", "ort-int8-per-channel", "torch-int8", "torch-fp32"]
ORT_VARIANT = {"ort-int8-per-tensor": "int8_per_tensor", "ort-int8-per-channel": "int8_per_channel"}
BATCHES = [1, 8, 32, 128]
THREADS = [1, 2]
TRUNCATE_AT = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2
# dynq configurations: name -> extra arguments
DYNQ = {"dynq": [], "dynq-one": ["--batch-tokens", "1"]}
LABELS = {
    "dynq": "dynq INT8, batched",
    "dynq-one": "dynq INT8, one at a time",
    "ort-int8-per-tensor": "ONNX Runtime INT8 per tensor",
    "ort-int8-per-channel": "ONNX Runtime INT8 per channel",
    "torch-int8": "PyTorch INT8 (quantize_dynamic)",
    "torch-fp32": "PyTorch FP32 (reference)",
}
ENGINES = ["dynq", "dynq-one"] + PEERS
TIMEOUT_S = 1800
RAW = common.OUT_DIR / "corpus-raw.jsonl"


def ref_path(corpus):
    """The reference embeddings of `corpus`: ref-NAME.npy next to it."""
    from pathlib import Path

    p = Path(corpus).resolve()
    return p.parent / f"ref-{p.stem}.npy"


def read_corpus(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def corpus_tokenizer():
    tok = common.tokenizer()  # padding and truncation off
    tok.enable_truncation(max_length=TRUNCATE_AT)  # special tokens included, as in dynq
    return tok


def cosines(a, b):
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    c = (a * b).sum(1)
    return round(float(c.mean()), 5), round(float(c.min()), 5)


# ---------------------------------------------------------------------------------------------
# Peers: one engine, one thread count, in this process


def set_torch_threads(threads):
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def make_model(engine, threads):
    """(run(ids, mask, types) -> float32 [batch, 384] numpy, version)."""
    if engine in ORT_VARIANT:
        import onnxruntime as ort

        sess, names = common.ort_session(ORT_VARIANT[engine], threads)

        def run(ids, mask, types):
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            return sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]

        return run, f"onnxruntime {ort.__version__}"
    if engine in ("torch-int8", "torch-fp32"):
        import torch

        set_torch_threads(threads)
        model = common.torch_model()
        if engine == "torch-int8":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                           dtype=torch.qint8)
        model.eval()

        def run(ids, mask, types):
            with torch.inference_mode():
                return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                             token_type_ids=torch.from_numpy(types)).numpy()

        return run, f"torch {torch.__version__} ({torch.backends.quantized.engine})"
    raise SystemExit(f"unknown engine {engine!r} (expected one of {', '.join(PEERS)})")


def embed_corpus(run, tok, texts, batch):
    """The timed pipeline: (embeddings in input order, real tokens, padded tokens)."""
    import numpy as np

    encs = tok.encode_batch(texts)
    lens = [len(e.ids) for e in encs]
    order = sorted(range(len(texts)), key=lens.__getitem__)
    out = None
    padded = 0
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        width = lens[idx[-1]]  # sorted: the last is the longest
        ids = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for r, i in enumerate(idx):
            ids[r, :lens[i]] = encs[i].ids
            mask[r, :lens[i]] = 1
        y = run(ids, mask, np.zeros_like(ids))
        if out is None:
            out = np.empty((len(texts), y.shape[1]), dtype=np.float32)
        out[idx] = y
        padded += ids.size
    return out, sum(lens), padded


def cmd_one(a):
    import numpy as np

    texts = read_corpus(a.corpus)
    if not texts:
        raise SystemExit(f"{a.corpus}: empty")
    tok = corpus_tokenizer()
    run, version = make_model(a.engine, a.threads)
    ref = np.load(ref_path(a.corpus)) if ref_path(a.corpus).exists() else None
    batches = [int(b) for b in a.batches.split(",")]
    # Warm-up texts: the longest ones (the largest shapes first), at least two batches' worth.
    by_len = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    for b in batches:
        warm = [texts[i] for i in by_len[:min(len(texts), max(2 * b, 32))]]
        embed_corpus(run, tok, warm, b)
        times, emb = [], None
        for _ in range(a.passes):
            t = time.perf_counter()
            emb, tokens, padded = embed_corpus(run, tok, texts, b)
            times.append(time.perf_counter() - t)
        sec = statistics.median(times)
        rec = {"engine": a.engine, "corpus": os.path.basename(a.corpus), "threads": a.threads,
               "batch": b, "sentences": len(texts), "tokens": tokens, "padded_tokens": padded,
               "seconds": round(sec, 4), "sentences_per_s": round(len(texts) / sec, 2),
               "tokens_per_s": round(tokens / sec, 1),
               "pass_seconds": [round(x, 4) for x in times], "version": version}
        if ref is not None and ref.shape == emb.shape:
            rec["cos_mean"], rec["cos_min"] = cosines(emb, ref)
        print(json.dumps(rec), flush=True)


def cmd_ref(a):
    """PyTorch FP32, batch 1 (no padding), 2 threads: the reference embeddings."""
    import numpy as np

    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(k, "2")  # before torch loads
    tok = corpus_tokenizer()
    run, version = make_model("torch-fp32", 2)
    for c in a.corpus:
        texts = read_corpus(c)
        t = time.time()
        emb, tokens, _ = embed_corpus(run, tok, texts, 1)
        np.save(ref_path(c), emb)
        print(f"reference ({version}, batch 1): {ref_path(c)}: "
              f"{len(texts)} texts, {tokens} tokens, {time.time() - t:.1f} s", flush=True)


# ---------------------------------------------------------------------------------------------
# Driver


# GNU time measures a command's own peak RSS. wait4's ru_maxrss (the fallback) also counts the
# pages the child shared with this Python process between fork and exec, so it is only an upper
# bound: with numpy loaded it reads ~86 MiB even for a binary that peaks at 37 MiB.
GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


def run_process(cmd, env, stdin=None):
    """(exit status, stdout, stderr, peak RSS in MiB of the command itself, wall seconds)."""
    import tempfile

    t = time.time()
    rss_file = None
    if GNU_TIME:
        fd, rss_file = tempfile.mkstemp(suffix=".rss")
        os.close(fd)
        cmd = [GNU_TIME, "-f", "%M", "-o", rss_file, *cmd]
    p = common.RusagePopen(cmd, env=env,
                           stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           cwd=common.ROOT)
    try:
        out, err = p.communicate(input=stdin, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        err += f"\ntimed out after {TIMEOUT_S} s"
    peak = p.peak_rss_mib
    if rss_file:
        try:
            with open(rss_file) as f:
                kib = [line for line in f.read().split("\n") if line.strip().isdigit()]
            peak = round(int(kib[-1]) / 1024, 1) if kib else None
        finally:
            os.unlink(rss_file)
    return p.returncode, out, err, peak, time.time() - t


def json_lines(out):
    recs = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return recs


def last_error(out, err, rc):
    return ((err.strip().splitlines() or out.strip().splitlines() or [f"exit {rc}"])[-1])[:300]


def peer_env(threads):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               RAYON_NUM_THREADS="1")  # the tokenizers crate's pool, unused with parallelism off
    return env


def corpus_stats(path):
    tok = corpus_tokenizer()
    texts = read_corpus(path)
    return len(texts), sum(len(e.ids) for e in tok.encode_batch(texts))


def dynq_embeddings(embed, corpus):
    """dynq's embeddings of every line of `corpus` (`embed --threads 2 < corpus`)."""
    import numpy as np

    with open(corpus, encoding="utf-8") as f:
        text = f.read()
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    rc, out, err, peak, wall = run_process([embed, "--threads", "2"], env, stdin=text)
    if rc != 0:
        raise RuntimeError(last_error(out, err, rc))
    rows = [json.loads(line) for line in out.strip().splitlines() if line.strip()]
    emb = np.array(rows, dtype=np.float64)
    n = len(read_corpus(corpus))
    if emb.shape != (n, 384):
        raise RuntimeError(f"expected {n} x 384 floats, got shape {emb.shape}")
    norms = np.linalg.norm(emb, axis=1)
    extra = {"norm_min": round(float(norms.min()), 5), "norm_max": round(float(norms.max()), 5),
             "wall_s": round(wall, 2), "stream_peak_rss_mib": peak}
    # Memory: the same binary on the corpus's first line alone, for the streaming bound (the
    # whole corpus through stdin must not need much more than one input does).
    first = text.split("\n", 1)[0] + "\n"
    rc, out, err, single, _ = run_process([embed, "--threads", "2"], env, stdin=first)
    if rc != 0:
        raise RuntimeError(last_error(out, err, rc))
    extra["single_peak_rss_mib"] = single
    return emb, extra


def cmd_run(a):
    import numpy as np

    rounds = a.rounds or (1 if a.quick else 3)
    passes = a.passes or 1
    corpora = a.corpus or [str(CORPUS_DIR / c) for c in CORPORA]
    me = os.path.abspath(__file__)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    t0 = time.time()
    with open(a.out, "w") as f:
        def write(rec):
            f.write(json.dumps(rec) + "\n")
            f.flush()

        # Corpus facts and dynq's embeddings, before any timing.
        for c in corpora:
            name = os.path.basename(c)
            n, tokens = corpus_stats(c)
            write({"kind": "corpus", "corpus": name, "sentences": n, "tokens": tokens})
            print(f"{name}: {n} texts, {tokens} tokens (truncated at {TRUNCATE_AT})", flush=True)
            rec = {"kind": "fidelity", "engine": "dynq", "corpus": name}
            if a.no_dynq:
                continue
            try:
                emb, extra = dynq_embeddings(a.embed, c)
                ref = np.load(ref_path(c))
                rec["cos_mean"], rec["cos_min"] = cosines(emb, ref)
                rec.update(extra)
                r = ref / np.linalg.norm(ref, axis=1, keepdims=True)
                e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
                per = (r * e).sum(1)
                worst = np.argsort(per)[:3]
                rec["worst"] = [{"line": int(i) + 1, "cos": round(float(per[i]), 5)} for i in worst]
                print(f"dynq embeddings of {name} (embed --threads 2 < {name}): cos to PyTorch "
                      f"FP32 mean {rec['cos_mean']:.4f}, min {rec['cos_min']:.4f}; peak RSS "
                      f"{rec.get('stream_peak_rss_mib')} MiB (its first line alone: "
                      f"{rec.get('single_peak_rss_mib')} MiB)", flush=True)
            except Exception as e:  # noqa: BLE001 - report it, keep timing
                rec["error"] = f"{type(e).__name__}: {e}"[:300]
                print(f"dynq embeddings of {name}: FAILED ({rec['error']})", flush=True)
            write(rec)

        engines = ["dynq", "ort-int8-per-tensor", "dynq-one", "ort-int8-per-channel",
                   "torch-int8", "torch-fp32"]
        if a.no_dynq:
            engines = [e for e in engines if e not in DYNQ]
        configs = [(c, t, e) for c in corpora for t in THREADS for e in engines]
        total = rounds * len(configs)
        n = 0
        for r in range(rounds):
            order = configs if r % 2 == 0 else configs[::-1]
            batches = BATCHES if r % 2 == 0 else BATCHES[::-1]
            for c, t, e in order:
                n += 1
                name = os.path.basename(c)
                label = f"[{n:>2}/{total}] round {r + 1}/{rounds} {name:<12} T={t} {e:<20}"
                if e in DYNQ:
                    env = dict(os.environ, RAYON_NUM_THREADS=str(t), DYNQ_THREADS=str(t))
                    cmd = [a.embed, "--bench-corpus", c, *DYNQ[e], "--threads", str(t)]
                    got, errs, rss = [], [], []
                    for _ in range(passes):
                        rc, out, err, peak, wall = run_process(cmd, env)
                        recs = json_lines(out)
                        if rc == 0 and len(recs) == 1 and recs[0].get("seconds"):
                            got.append(recs[0])
                            if peak is not None:
                                rss.append(peak)
                        else:
                            errs.append(last_error(out, err, rc) if rc != 0 or not recs else
                                        f"expected one JSON line with seconds, got {out.strip()[:200]!r}")
                    rec = {"kind": "time", "round": r, "engine": e, "corpus": name, "threads": t,
                           "batch": None}
                    if got:
                        secs = [g["seconds"] for g in got]
                        mid = sorted(got, key=lambda g: g["seconds"])[(len(got) - 1) // 2]
                        rec.update({k: v for k, v in mid.items() if k not in rec})
                        rec["engine"] = e
                        rec["dynq_engine_field"] = mid.get("engine")
                        rec["dynq_threads_field"] = mid.get("threads")
                        rec["pass_seconds"] = secs
                        rec["cmd"] = " ".join(["embed"] + cmd[1:])
                        if rss:
                            rec["peak_rss_mib"] = max(rss)
                        print(f"{label}: {rec['sentences_per_s']:9.1f} sent/s "
                              f"{rec['tokens_per_s']:10.0f} tok/s  (batch_tokens "
                              f"{rec.get('batch_tokens')}, {len(got)} process(es))", flush=True)
                    else:
                        rec["error"] = errs[-1]
                        print(f"{label}: FAILED ({errs[-1][:160]})", flush=True)
                    if errs and got:
                        rec["errors"] = errs
                    write(rec)
                    continue
                cmd = [sys.executable, me, "one", e, str(t), c, "--passes", str(passes),
                       "--batches", ",".join(map(str, batches))]
                rc, out, err, peak, wall = run_process(cmd, peer_env(t))
                recs = json_lines(out)
                for rec in recs:
                    rec.update(kind="time", round=r)
                    if peak is not None:
                        rec["peak_rss_mib"] = peak
                    write(rec)
                if recs:
                    cells = "  ".join(f"b{x['batch']}: {x['sentences_per_s']:.1f}" for x in
                                      sorted(recs, key=lambda x: x["batch"]))
                    print(f"{label}: sent/s {cells}  ({wall:.0f} s)", flush=True)
                if rc != 0 or len(recs) != len(batches):
                    msg = last_error(out, err, rc)
                    done = {x["batch"] for x in recs}
                    for b in batches:
                        if b not in done:
                            write({"kind": "time", "round": r, "engine": e, "corpus": name,
                                   "threads": t, "batch": b, "error": msg})
                    print(f"{label}: FAILED ({msg[:160]})", flush=True)
    print(f"{total} configurations in {time.time() - t0:.0f} s; raw results in {a.out}", flush=True)


# ---------------------------------------------------------------------------------------------
# Report


def cpu_info():
    from report import cpu_info as ci

    return ci()


def aggregate(raw):
    """One row per (corpus, engine, threads, batch): the best of the round values."""
    facts = {r["corpus"]: r for r in raw if r.get("kind") == "corpus"}
    fid = {(r["engine"], r["corpus"]): r for r in raw if r.get("kind") == "fidelity"}
    times = [r for r in raw if r.get("kind") == "time"]
    keys = []
    for r in times:
        k = (r["corpus"], r["engine"], r["threads"], r.get("batch"))
        if k not in keys:
            keys.append(k)
    rows = []
    for k in keys:
        recs = [r for r in times if (r["corpus"], r["engine"], r["threads"], r.get("batch")) == k]
        ok = [r for r in recs if r.get("sentences_per_s")]
        row = {"corpus": k[0], "engine": k[1], "threads": k[2], "batch": k[3]}
        if not ok:
            row["error"] = recs[-1].get("error", "failed")
            rows.append(row)
            continue
        best = max(ok, key=lambda r: r["sentences_per_s"])
        for key in ("sentences", "tokens", "padded_tokens", "batch_tokens", "seconds",
                    "dynq_threads_field",
                    "sentences_per_s", "tokens_per_s", "cos_mean", "cos_min", "version",
                    "kernel", "cmd", "variant"):
            if key in best:
                row[key] = best[key]
        row["round_sentences_per_s"] = [r["sentences_per_s"] for r in ok]
        rss = [r["peak_rss_mib"] for r in ok if r.get("peak_rss_mib") is not None]
        if rss:
            row["peak_rss_mib"] = max(rss)
        if k[1] in DYNQ:
            f = fid.get(("dynq", k[0]), {})
            for key in ("cos_mean", "cos_min"):
                if key in f:
                    row[key] = f[key]
            fact = facts.get(k[0])
            if fact:
                row["expected_sentences"] = fact["sentences"]
                row["expected_tokens"] = fact["tokens"]
        rows.append(row)
    return rows, facts, fid


def config_label(row):
    if row["engine"] in DYNQ:
        bt = row.get("batch_tokens")
        return f"batch_tokens {bt}" if bt is not None else ("default budget" if row["engine"] == "dynq"
                                                             else "--batch-tokens 1")
    return f"batch {row['batch']}"


def best_of(rows, corpus, engines, threads):
    c = [r for r in rows if r["corpus"] == corpus and r["engine"] in engines
         and r["threads"] == threads and r.get("sentences_per_s")]
    return max(c, key=lambda r: r["sentences_per_s"]) if c else None


def sps(row):
    return row["sentences_per_s"] if row and row.get("sentences_per_s") else None


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def f2(x):
    return "n/a" if x is None else f"{x:.2f}"


def ratios(rows, corpus):
    """(dynq / best ORT INT8 at 1T, dynq 2T / 1T, dynq batched / one at a time at 1T and 2T)."""
    ort = list(ORT_VARIANT)
    d1 = sps(best_of(rows, corpus, ["dynq"], 1))
    d2 = sps(best_of(rows, corpus, ["dynq"], 2))
    o1 = sps(best_of(rows, corpus, ort, 1))
    one1 = sps(best_of(rows, corpus, ["dynq-one"], 1))
    one2 = sps(best_of(rows, corpus, ["dynq-one"], 2))
    return ratio(d1, o1), ratio(d2, d1), ratio(d1, one1), ratio(d2, one2)


def markdown(rows, facts, fid, meta):
    lines = [
        "# Corpus throughput: dynq vs ONNX Runtime vs PyTorch, all-MiniLM-L6-v2",
        "",
        f"{meta['date']}, {meta['cpu']['model']} ({meta['cpu']['cores']} cores; "
        f"{', '.join(meta['cpu']['isa'])}). {meta['mode']}: {meta['rounds']} round(s), "
        f"{meta['passes']} timed pass(es) over the whole corpus per configuration and round "
        f"(peers: median pass after a warm-up, in one process per engine/threads/corpus; dynq: "
        f"median of {meta['passes']} `--bench-corpus` process(es)); best round kept. "
        f"Tokenization included; sentences/s and tokens/s (real tokens, [CLS] and [SEP] "
        f"included, no padding); higher is better. Cosine: each embedding to PyTorch FP32 "
        f"(batch 1), in input order.",
    ]
    for corpus in sorted({r["corpus"] for r in rows}, key=lambda c: (CORPORA + [c]).index(c)):
        fact = facts.get(corpus, {})
        n, tok = fact.get("sentences"), fact.get("tokens")
        lines += ["", f"## {corpus}: {n} texts, {tok} tokens"
                  f" ({tok / n:.1f} per text)" if n and tok else f"## {corpus}", "",
                  "| engine | config | threads | sentences/s | tokens/s | cos mean | cos min |",
                  "|---|---|---|---|---|---|---|"]
        for t in THREADS:
            for e in ENGINES:
                rs = [r for r in rows if (r["corpus"], r["engine"], r["threads"]) == (corpus, e, t)]
                rs.sort(key=lambda r: r["batch"] or 0)
                bestrow = best_of(rows, corpus, [e], t)
                for r in rs:
                    if r.get("sentences_per_s") is None:
                        lines.append(f"| {LABELS[e]} | {config_label(r)} | {t} | n/a | n/a | | |")
                        continue
                    mark = "**" if r is bestrow and e not in DYNQ and len(rs) > 1 else ""
                    cm = "" if r.get("cos_mean") is None else f"{r['cos_mean']:.4f}"
                    cn = "" if r.get("cos_min") is None else f"{r['cos_min']:.4f}"
                    lines.append(f"| {LABELS[e]} | {config_label(r)} | {t} | "
                                 f"{mark}{r['sentences_per_s']:.1f}{mark} | "
                                 f"{r['tokens_per_s']:.0f} | {cm} | {cn} |")
        lines.append("")
        lines.append("Bold: the engine's best batch size. Best ONNX Runtime INT8 configuration: " + "; ".join(
            f"{t}T: " + (f"{LABELS[b['engine']]} batch {b['batch']} ({b['sentences_per_s']:.1f} "
                         f"sentences/s)" if (b := best_of(rows, corpus, list(ORT_VARIANT), t))
                         else "n/a") for t in THREADS) + ".")
        r1, r21, rb1, rb2 = ratios(rows, corpus)
        lines += ["", "| ratio (sentences/s over sentences/s; above 1: the first is faster) | value |",
                  "|---|---|",
                  f"| dynq batched / best ONNX Runtime INT8, 1 thread | {f2(r1)} |",
                  f"| dynq batched 2 threads / 1 thread | {f2(r21)} |",
                  f"| dynq batched / dynq one at a time, 1 thread | {f2(rb1)} |",
                  f"| dynq batched / dynq one at a time, 2 threads | {f2(rb2)} |"]
        checks = []
        for r in rows:
            if r["corpus"] != corpus or r["engine"] not in DYNQ or not r.get("sentences_per_s"):
                continue
            if r.get("expected_sentences") is not None and r.get("sentences") != r["expected_sentences"]:
                checks.append(f"{LABELS[r['engine']]} {r['threads']}T reports {r.get('sentences')} "
                              f"sentences, the corpus has {r['expected_sentences']}")
            if "dynq_threads_field" in r and r["dynq_threads_field"] != r["threads"]:
                checks.append(f"{LABELS[r['engine']]} run with --threads {r['threads']} reports "
                              f"threads {r['dynq_threads_field']}")
            if r.get("expected_tokens") is not None and r.get("tokens") != r["expected_tokens"]:
                checks.append(f"{LABELS[r['engine']]} {r['threads']}T reports {r.get('tokens')} "
                              f"tokens, the `tokenizers` package counts {r['expected_tokens']}")
        f = fid.get(("dynq", corpus))
        if f and f.get("stream_peak_rss_mib") and f.get("single_peak_rss_mib"):
            lines += [f"| dynq peak RSS, `embed < {corpus}` / `embed <` its first line only "
                      f"({f['stream_peak_rss_mib']:.1f} / {f['single_peak_rss_mib']:.1f} MiB) | "
                      f"{f2(ratio(f['stream_peak_rss_mib'], f['single_peak_rss_mib']))} |"]
        if f and f.get("error"):
            checks.append(f"dynq embeddings (`embed < {corpus}`) failed: {f['error']}")
        elif f and f.get("worst"):
            checks.append("dynq's lowest cosines to PyTorch FP32: " + ", ".join(
                f"line {w['line']}: {w['cos']:.4f}" for w in f["worst"]))
        if checks:
            lines += [""] + [f"- {c}" for c in sorted(set(checks), key=checks.index)]
    dyn = next((r for r in rows if r["engine"] in DYNQ and r.get("kernel")), None)
    versions = sorted({r["version"] for r in rows if r.get("version")})
    lines += ["", f"dynq kernel: {dyn['kernel'] if dyn else 'n/a'}; peers: {', '.join(versions) or 'n/a'}. "
              "dynq's cosine comes from `embed --threads 2 < FILE` (its stdin path), its throughput "
              "from `embed --bench-corpus FILE`.",
              "", "Rounds on a shared 2-core VM drift by tens of percent: compare engines within one "
              "run. `target/bench/corpus.json` has every row (with the per-round values); "
              "`corpus-raw.jsonl` every process."]
    missing = [r for r in rows if r.get("sentences_per_s") is None]
    if missing:
        lines += ["", "Missing (n/a):"] + [
            f"- {r['corpus']} {LABELS[r['engine']]} {config_label(r)} {r['threads']}T: "
            f"{r.get('error', 'failed')}" for r in missing]
    return "\n".join(lines) + "\n"


def chart(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = [c for c in CORPORA if any(r["corpus"] == c for r in rows)]
    fig, axes = plt.subplots(1, len(corpora), figsize=(7 * len(corpora), 5.5), squeeze=False)
    colors = ["#1f5fa8", "#7fa9d8", "#d6641e", "#f2a35e", "#2e8b57", "#8fcf9f"]
    n = len(ENGINES)
    width = 0.8 / n
    for ax, corpus in zip(axes[0], corpora):
        for i, e in enumerate(ENGINES):
            for j, t in enumerate(THREADS):
                b = best_of(rows, corpus, [e], t)
                x = j + (i - (n - 1) / 2) * width
                if not b:
                    ax.text(x, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize=7,
                            transform=ax.get_xaxis_transform())
                    continue
                ax.bar(x, b["sentences_per_s"], width, color=colors[i],
                       label=LABELS[e] if j == 0 else None,
                       hatch="//" if e in DYNQ else None,
                       edgecolor="black" if e in DYNQ else "white", linewidth=0.5)
                if e not in DYNQ:
                    ax.text(x, b["sentences_per_s"], f"b{b['batch']}", ha="center", va="bottom",
                            fontsize=6)
        ax.set_xticks(range(len(THREADS)))
        ax.set_xticklabels([f"{t} thread{'s' if t > 1 else ''}" for t in THREADS])
        ax.set_ylabel("sentences/s (best configuration; higher is better)")
        ax.set_title(corpus)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cmd_report(a):
    with open(a.raw) as f:
        raw = [json.loads(line) for line in f if line.strip()]
    rows, facts, fid = aggregate(raw)
    cpu = cpu_info()
    times = [r for r in raw if r.get("kind") == "time"]
    passes = max((len(r.get("pass_seconds") or [1]) for r in times), default=1)
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu,
            "mode": "quick run (--quick)" if a.quick else "full run",
            "rounds": 1 + max((r["round"] for r in times), default=0), "passes": passes}
    with open(common.OUT_DIR / "corpus.json", "w") as f:
        json.dump({"meta": meta, "corpora": list(facts.values()),
                   "fidelity": list(fid.values()), "rows": rows}, f, indent=1)
    md = markdown(rows, facts, fid, meta)
    if a.elapsed is not None:
        md += f"\nWhole run (setup, build, corpora, benchmark): {a.elapsed:.0f} s.\n"
    with open(common.OUT_DIR / "corpus.md", "w") as f:
        f.write(md)
    try:
        chart(rows, common.OUT_DIR / "corpus.svg",
              f"all-MiniLM-L6-v2 corpus throughput, {cpu['model']}, {meta['mode']}")
        svg = "target/bench/corpus.svg"
    except Exception as e:  # noqa: BLE001 - the numbers matter more than the picture
        svg = f"(no chart: {type(e).__name__}: {e})"
    print(md)
    print(f"Wrote target/bench/corpus.json, target/bench/corpus.md, {svg}")
    for corpus in [c for c in CORPORA if c in {r["corpus"] for r in rows}]:
        r1, r21, rb1, _ = ratios(rows, corpus)
        print(f"{corpus}: dynq/best-ORT int8 at 1T: {f2(r1)}; dynq 2T/1T: {f2(r21)}; "
              f"dynq batched/one-at-a-time at 1T: {f2(rb1)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ref")
    p.add_argument("corpus", nargs="+")
    p = sub.add_parser("one")
    p.add_argument("engine", choices=PEERS)
    p.add_argument("threads", type=int)
    p.add_argument("corpus")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--passes", type=int, default=1)
    p = sub.add_parser("run")
    p.add_argument("corpus", nargs="*")
    p.add_argument("--quick", action="store_true", help="1 round (default 3)")
    p.add_argument("--no-dynq", action="store_true", help="peers only (no dynq binary)")
    p.add_argument("--rounds", type=int)
    p.add_argument("--passes", type=int)
    p.add_argument("--embed", default=str(common.OUT_DIR / "embed-corpus"))
    p.add_argument("--out", default=str(RAW))
    p = sub.add_parser("report")
    p.add_argument("--raw", default=str(RAW))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--elapsed", type=float)
    a = ap.parse_args()
    {"ref": cmd_ref, "one": cmd_one, "run": cmd_run, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
