"""ONNX Runtime INT8 peers for all-mpnet-base-v2: export, accuracy on the STS sentences, timing.

    python bench/mpnet_ort.py export [--force]
    python bench/mpnet_ort.py accuracy
    python bench/mpnet_ort.py time --variant V --seq S [--threads T] [--runs N] [--warmup W]

The model is target/all-mpnet-base-v2 (scripts/fetch_mpnet.py): transformers' MPNetModel, FP32,
eager attention. Everything is written under target/bench/mpnet/:

  export    model.onnx: input_ids, attention_mask (int64, dynamic batch and sequence axes) ->
            last_hidden_state, TorchScript exporter, opset 17, checked against PyTorch at S = 16,
            128 and 384 and on a padded batch of 2 (max abs error on real tokens <= 1e-3).
            model_opt.onnx: onnxruntime.transformers.optimizer (model_type bert, 12 heads, 768)
            of it, kept only if it still matches PyTorch (export.json records the fused ops, or
            why it was dropped). Then quantize_dynamic (QInt8 weights, quant_pre_process first,
            as bench/export_onnx.py does for MiniLM) of the optimized graph (else the plain one):
            model.int8_per_tensor.onnx and model.int8_per_channel.onnx, and
            model.int8_per_channel_rr.onnx with reduce_range=True (7-bit weights): ONNX Runtime's
            advice for CPUs without VNNI, where its u8 x s8 kernel (vpmaddubsw) saturates 16-bit
            pair sums; without it, per-channel weights give garbage on such a CPU (STS cosine
            to FP32 0.02 on an AVX2 EPYC). export.json.
  accuracy  each INT8 variant on the 1652 STS test sentences of target/mpnet-sts
            (scripts/mpnet_reference.py: the ids and the PyTorch FP32 embeddings), one sentence
            at a time (no padding), mean-pooled and L2-normalized as sentence-transformers does:
            cosine to FP32 (mean, worst) and STS Spearman x100. Prints one JSON line per
            variant and writes accuracy.json.
  time      one ONNX Runtime session of model.<V>.onnx (V: f32, int8_per_tensor,
            int8_per_channel; intra_op_num_threads=T, inter_op 1, sequential, all graph
            optimizations, CPU provider) on batch 1, S token ids (numpy seed 0, between 3 and
            30000, so no special token), mask all ones; W warm-up runs, N timed runs; prints one
            JSON line {"engine", "variant", "seq", "threads", "median_ms", "runs"}.
"""

import argparse
import json
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import common  # noqa: E402

MODEL_DIR = common.ROOT / "target" / "all-mpnet-base-v2"
STS_DIR = common.ROOT / "target" / "mpnet-sts"
STS_TSV = common.ROOT.parent / "shared" / "data" / "sts-test.tsv"
DIR = common.OUT_DIR / "mpnet"
ONNX_F32 = DIR / "model.onnx"
ONNX_OPT = DIR / "model_opt.onnx"
VARIANTS = {
    "f32": ONNX_F32,
    "int8_per_tensor": DIR / "model.int8_per_tensor.onnx",
    "int8_per_channel": DIR / "model.int8_per_channel.onnx",
    "int8_per_channel_rr": DIR / "model.int8_per_channel_rr.onnx",
}
EXPORT_JSON = DIR / "export.json"
ACCURACY_JSON = DIR / "accuracy.json"
OPSET = 17
EXPORT_SEQ = 40
CHECK_SEQS = [16, 128, 384]
TOLERANCE = 1e-3
PAD_ID = 1


def log(msg):
    print(f"[mpnet] {msg}", flush=True)


def random_ids(seq_len, batch=1, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 30000, size=(batch, seq_len), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s>
    return ids


def torch_model():
    import transformers
    from transformers import MPNetModel

    transformers.logging.set_verbosity_error()
    if not (MODEL_DIR / "model.safetensors").exists():
        raise SystemExit(f"{MODEL_DIR} is missing: run scripts/fetch_mpnet.py")
    model = MPNetModel.from_pretrained(str(MODEL_DIR), local_files_only=True,
                                       attn_implementation="eager").float().eval()
    return common.last_hidden_state(model)


def ort_session(path, threads):
    return common.ort_session_at(path, threads)


def verify(model, path, threads):
    """Max abs error of ONNX Runtime at `path` against PyTorch on real tokens; raises above
    TOLERANCE."""
    import numpy as np
    import torch

    sess = ort_session(path, threads)
    cases = [(f"S={s}", random_ids(s, seed=s), None) for s in CHECK_SEQS]
    ids = random_ids(60, batch=2, seed=60)
    mask = np.ones_like(ids)
    ids[1, 37:] = PAD_ID
    mask[1, 37:] = 0
    cases.append(("S=60,batch=2,padded", ids, mask))
    errors = {}
    for name, ids, mask in cases:
        if mask is None:
            mask = np.ones_like(ids)
        with torch.inference_mode():
            ref = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        out = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        if out.shape != ref.shape:
            raise RuntimeError(f"{name}: ONNX output {out.shape}, PyTorch {ref.shape}")
        errors[name] = float(np.abs(out - ref)[mask.astype(bool)].max())
        log(f"  {path.name} {name}: max abs error {errors[name]:.3g}")
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    if bad:
        raise RuntimeError(f"{path.name} differs from PyTorch above {TOLERANCE}: {bad}")
    return errors


def op_counts(path):
    return common.op_counts(path)


def quantize(src, dst, per_channel, reduce_range=False):
    return common.quantize_int8(src, dst, per_channel, reduce_range, log=log)


def cmd_export(force, threads):
    import onnxruntime as ort
    import torch

    if all(p.exists() for p in VARIANTS.values()) and EXPORT_JSON.exists() and not force:
        log(f"{DIR.relative_to(common.ROOT)} holds the exported models, reusing them")
        return
    if ONNX_F32.exists() and EXPORT_JSON.exists() and not force:
        # An export from before a variant was added: quantize the missing ones only.
        record = json.loads(EXPORT_JSON.read_text())
        source = DIR / record["quantized_from"]
        for variant in [v for v, p in VARIANTS.items() if not p.exists()]:
            record[f"{variant}_pre_process"] = quantize(source, VARIANTS[variant], True, True)
            record[f"{variant}_ops"] = op_counts(VARIANTS[variant])
            log(f"wrote {VARIANTS[variant].name}")
        EXPORT_JSON.write_text(json.dumps(record, indent=2) + "\n")
        return
    DIR.mkdir(parents=True, exist_ok=True)
    for p in [*VARIANTS.values(), ONNX_OPT, EXPORT_JSON]:
        if p.exists():
            p.unlink()
    model = torch_model()
    record = {"torch": torch.__version__, "onnxruntime": ort.__version__, "opset": OPSET,
              "exporter": "torchscript", "tolerance": TOLERANCE}
    ids = torch.from_numpy(random_ids(EXPORT_SEQ, batch=2, seed=1))
    t = time.time()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (ids, torch.ones_like(ids)), str(ONNX_F32), dynamo=False,
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                          "attention_mask": {0: "batch", 1: "seq"},
                          "last_hidden_state": {0: "batch", 1: "seq"}},
            opset_version=OPSET, do_constant_folding=True,
        )
    log(f"exported {ONNX_F32.name} ({time.time() - t:.1f} s); checking against PyTorch")
    record["f32_max_abs_error"] = verify(model, ONNX_F32, threads)
    record["f32_ops"] = op_counts(ONNX_F32)

    source = ONNX_F32
    try:
        from onnxruntime.transformers import optimizer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = optimizer.optimize_model(str(ONNX_F32), model_type="bert", num_heads=12,
                                           hidden_size=768, opt_level=0)
        opt.save_model_to_file(str(ONNX_OPT))
        record["optimized_max_abs_error"] = verify(model, ONNX_OPT, threads)
        record["optimized_ops"] = op_counts(ONNX_OPT)
        source = ONNX_OPT
    except Exception as e:  # noqa: BLE001 - keep the plain graph, say why
        record["optimizer"] = f"dropped: {type(e).__name__}: {str(e)[:2000]}"
        log(f"optimizer dropped: {type(e).__name__}: {str(e)[:300]}")
        if ONNX_OPT.exists():
            ONNX_OPT.unlink()
    record["quantized_from"] = source.name
    for variant, per_channel, rr in (("int8_per_tensor", False, False),
                                     ("int8_per_channel", True, False),
                                     ("int8_per_channel_rr", True, True)):
        t = time.time()
        record[f"{variant}_pre_process"] = quantize(source, VARIANTS[variant], per_channel, rr)
        record[f"{variant}_ops"] = op_counts(VARIANTS[variant])
        log(f"wrote {VARIANTS[variant].name} ({time.time() - t:.1f} s)")
    record["sizes_mib"] = {p.name: round(p.stat().st_size / 2**20, 1)
                           for p in [ONNX_F32, *VARIANTS.values()]}
    EXPORT_JSON.write_text(json.dumps(record, indent=2) + "\n")
    log(f"wrote {EXPORT_JSON.relative_to(common.ROOT)}")


def read_sts():
    rows = []
    for line in STS_TSV.read_text(encoding="utf-8").splitlines():
        if line:
            score, s1, s2 = line.split("\t")
            rows.append((float(score), s1, s2))
    return rows


def cmd_accuracy(threads):
    import numpy as np
    from safetensors.numpy import load_file
    from scipy.stats import spearmanr

    ref_path = STS_DIR / "fp32.safetensors"
    if not ref_path.exists():
        raise SystemExit(f"{ref_path} is missing: run scripts/mpnet_reference.py")
    ref = load_file(str(ref_path))
    fp32, flat, offsets = ref["embeddings"], ref["input_ids"], ref["offsets"]
    sentences = (STS_DIR / "sentences.txt").read_text(encoding="utf-8").split("\n")[:-1]
    index = {s: i for i, s in enumerate(sentences)}
    rows = read_sts()

    def spearman(emb):
        a = emb[[index[r[1]] for r in rows]]
        b = emb[[index[r[2]] for r in rows]]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        return 100 * float(spearmanr(cos, [r[0] for r in rows]).statistic)

    results = {"sentences": len(sentences), "pairs": len(rows),
               "fp32_spearman_x100": round(spearman(fp32), 2)}
    for variant in ("int8_per_tensor", "int8_per_channel", "int8_per_channel_rr"):
        sess = ort_session(VARIANTS[variant], threads)
        emb = np.empty_like(fp32)
        t = time.time()
        for i in range(len(sentences)):
            ids = flat[offsets[i]:offsets[i + 1]].astype(np.int64)[None, :]
            h = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
            e = h.mean(0)
            emb[i] = e / np.linalg.norm(e)
        cos = (emb * fp32).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(fp32, axis=1))
        results[variant] = {"cosine_mean": round(float(cos.mean()), 5),
                            "cosine_worst": round(float(cos.min()), 5),
                            "spearman_x100": round(spearman(emb), 2),
                            "seconds": round(time.time() - t, 1)}
        print(json.dumps({"variant": variant, **results[variant]}), flush=True)
    ACCURACY_JSON.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {ACCURACY_JSON.relative_to(common.ROOT)}")


def cmd_time(variant, seq, threads, runs, warmup):
    common.print_ort_time(VARIANTS[variant], variant, random_ids(seq), threads, runs, warmup,
                          "mpnet_ort.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("export")
    p.add_argument("--force", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("accuracy")
    p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("time")
    p.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    if args.cmd == "export":
        cmd_export(args.force, args.threads)
    elif args.cmd == "accuracy":
        cmd_accuracy(args.threads)
    else:
        cmd_time(args.variant, args.seq, args.threads, args.runs, args.warmup)


if __name__ == "__main__":
    main()
