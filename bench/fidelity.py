"""Embedding agreement on the benchmark inputs: dynq INT8 vs dynq f32 (the headline), and
every engine/variant vs PyTorch FP32 for context.

    python bench/fidelity.py [--embed PATH] [--embed-f32 PATH]

Inputs: the benchmark token sequences for S = 16, 128 and 256 (decoded back to text; the
script checks that re-tokenizing gives the same ids, so dynq sees exactly the benchmark ids),
plus the four source sentences on their own. dynq embeds them through its `embed` example
(text on stdin, one JSON array per line): INT8 with `--embed`, f32 with `--embed-f32` (a binary
built with `--features f32-model`; default: the `--embed` binary); the other engines get the
same ids directly.
Writes target/bench/fidelity.json.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

import common  # noqa: E402

SEQ_LENS = [16, 128, 256]  # 256: dynq's max_seq_len


def inputs():
    tok = common.tokenizer()
    texts, exact = [], True
    for s in SEQ_LENS:
        ids = common.bench_ids(s)
        text = tok.decode(ids, skip_special_tokens=True)
        if tok.encode(text).ids != ids:
            exact = False
        texts.append(text)
    texts += [t.strip() + "." for t in common.TEXT.split(". ") if t.strip()]
    texts = [t.replace("..", ".") for t in texts]
    return texts, [tok.encode(t).ids for t in texts], exact


def dynq(embed, texts, precision):
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    out = subprocess.run([embed, "--precision", precision], input="\n".join(texts) + "\n",
                         capture_output=True, text=True, env=env, check=True).stdout
    vecs = np.array([json.loads(line) for line in out.strip().splitlines()], dtype=np.float64)
    assert vecs.shape == (len(texts), 384), vecs.shape
    return vecs


def feeds(ids):
    a = np.array([ids], dtype=np.int64)
    return a, np.ones_like(a), np.zeros_like(a)


def onnxruntime(variant, all_ids):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(common.ONNX_DIR / common.ONNX_FILES[variant]), so,
                                providers=["CPUExecutionProvider"])
    out = []
    for ids in all_ids:
        i, m, t = feeds(ids)
        out.append(sess.run(None, {"input_ids": i, "attention_mask": m, "token_type_ids": t})[0][0])
    return np.array(out, dtype=np.float64)


def pytorch(model, all_ids):
    import torch

    out = []
    with torch.inference_mode():
        for ids in all_ids:
            i, m, t = (torch.from_numpy(x) for x in feeds(ids))
            out.append(model(input_ids=i, attention_mask=m, token_type_ids=t)[0].numpy())
    return np.array(out, dtype=np.float64)


def cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    c = (a * b).sum(1)
    return {"mean": round(float(c.mean()), 5), "min": round(float(c.min()), 5)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--embed", default=str(common.ROOT / "target/release/examples/embed"))
    ap.add_argument("--embed-f32", default=None,
                    help="embed binary built with --features f32-model (default: --embed)")
    ap.add_argument("--out", default=str(common.OUT_DIR / "fidelity.json"))
    a = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    texts, all_ids, exact = inputs()
    emb = {("dynq", "int8"): dynq(a.embed, texts, "int8"),
           ("dynq", "f32"): dynq(a.embed_f32 or a.embed, texts, "f32")}
    model = common.torch_model()
    emb[("pytorch", "f32")] = pytorch(model, all_ids)
    emb[("pytorch", "int8")] = pytorch(
        torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8),
        all_ids)
    for v in common.ONNX_FILES:
        emb[("onnxruntime", v)] = onnxruntime(v, all_ids)

    ref = emb[("pytorch", "f32")]
    res = {
        "inputs": len(texts),
        "token_counts": [len(i) for i in all_ids],
        "bench_ids_exact": exact,
        "dynq_int8_vs_dynq_f32": cosines(emb[("dynq", "int8")], emb[("dynq", "f32")]),
        "vs_pytorch_f32": {f"{e} {v}": cosines(x, ref) for (e, v), x in emb.items()
                           if (e, v) != ("pytorch", "f32")},
    }
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    d = res["dynq_int8_vs_dynq_f32"]
    print(f"fidelity over {len(texts)} benchmark inputs ({', '.join(map(str, res['token_counts']))} tokens"
          f"{'' if exact else '; re-tokenized ids differ from the bench ids'}):")
    print(f"  dynq INT8 vs dynq f32: cos mean {d['mean']:.4f}, min {d['min']:.4f}")
    for k, c in res["vs_pytorch_f32"].items():
        print(f"  {k:<30} vs PyTorch f32: cos mean {c['mean']:.4f}, min {c['min']:.4f}")


if __name__ == "__main__":
    main()
