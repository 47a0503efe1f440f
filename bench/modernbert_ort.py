"""ONNX Runtime INT8 baseline for a ModernBERT-base-shaped random checkpoint.

    python bench/modernbert_ort.py make [--force]
    python bench/modernbert_ort.py export [--force]
    python bench/modernbert_ort.py time --seq S [--threads T] [--runs N] [--warmup W]

Everything lives under target/bench/modernbert-base/:

  make    a random transformers.ModernBertModel with ModernBERT-base's shape (22 layers, hidden
          768, 12 heads, GeGLU MLP 1152, vocab 50368; every third layer global attention, the
          others a 128-token sliding window; rotary bases 160000 / 10000; no biases),
          torch.manual_seed(0) and transformers' default init, eval mode, eager attention:
            model.safetensors    the f32 state dict (no prefix: `embeddings.tok_embeddings...`)
            config.json          config.to_json_string()
            modernbert-base.toml the dynq model file (preset encoder, mean pooled, 2048 tokens,
                                 asymmetric INT8)
  export  that model (input_ids, attention_mask -> last_hidden_state; int64 inputs with dynamic
          batch and sequence axes) to ONNX, TorchScript exporter first (opset 17), else the
          dynamo exporter; checks ONNX Runtime FP32 against PyTorch at S = 128, 512 and 2048 (the
          sliding-window mask must come from the sequence length, not be baked in for the
          traced one: the export traces S = 200 to make sure), plus batch 2 with padding; then
          quantize_dynamic (QInt8 weights, per channel; quant_pre_process first, as
          bench/export_onnx.py does for MiniLM):
            model.onnx           FP32
            model.int8.onnx      INT8 weights, MatMulInteger
            export.json          exporter, opset, the check errors, versions, sizes
  time    one ONNX Runtime session of model.int8.onnx (intra_op_num_threads=T, inter_op 1,
          sequential, all graph optimizations, CPU provider) on batch 1, S random token ids
          (numpy seed 0, below the special tokens), mask all ones; W warm-up runs, N timed runs;
          prints one JSON line {"engine", "variant", "seq", "threads", "median_ms", "runs"}.

make and export skip files that already exist (unless --force). Export holds PyTorch and ONNX
Runtime at S = 2048 at once: a few GiB of memory.
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

DIR = common.OUT_DIR / "modernbert-base"
WEIGHTS = DIR / "model.safetensors"
CONFIG = DIR / "config.json"
TOML = DIR / "modernbert-base.toml"
ONNX_F32 = DIR / "model.onnx"
ONNX_INT8 = DIR / "model.int8.onnx"
EXPORT_JSON = DIR / "export.json"

CONFIG_ARGS = dict(
    vocab_size=50368,
    hidden_size=768,
    num_hidden_layers=22,
    num_attention_heads=12,
    intermediate_size=1152,
    hidden_activation="gelu",
    max_position_embeddings=8192,
    local_attention=128,
    global_attn_every_n_layers=3,
    global_rope_theta=160000.0,
    local_rope_theta=10000.0,
    norm_eps=1e-5,
    pad_token_id=50283,
)

TOML_TEXT = """\
[model]
name = "modernbert_base"
preset = "encoder"
weights = "model.safetensors"
config = "config.json"

[encoder]
prefix = ""
output = "mean_pooled"
max_seq_len = 2048

[quantize]
scheme = "asymmetric"
"""

EXPORT_SEQ = 200  # traced length: above the 128-token window, and none of the checked ones
CHECK_SEQS = [128, 512, 2048]
TOLERANCE = 1e-3
OPSET = 17
# Token ids for the checks and the timing: below ModernBERT's special tokens (50280..).
ID_HIGH = 50280


def log(msg):
    print(f"[modernbert] {msg}", flush=True)


def quiet():
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def random_ids(seq_len, batch=1, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.integers(0, ID_HIGH, size=(batch, seq_len), dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# make


def cmd_make(force):
    import torch
    from safetensors.torch import save_file
    from transformers import ModernBertConfig, ModernBertModel

    quiet()
    DIR.mkdir(parents=True, exist_ok=True)
    if WEIGHTS.exists() and CONFIG.exists() and not force:
        log(f"{WEIGHTS.relative_to(common.ROOT)} exists, reusing it")
    else:
        # Anything exported from an older checkpoint is stale now.
        for p in (ONNX_F32, ONNX_INT8, EXPORT_JSON):
            if p.exists():
                p.unlink()
        config = ModernBertConfig(**CONFIG_ARGS)
        config._attn_implementation = "eager"
        torch.manual_seed(0)
        model = ModernBertModel(config).float().eval()
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        n = sum(v.numel() for v in state.values())
        tmp = WEIGHTS.with_suffix(".tmp")
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, WEIGHTS)
        CONFIG.write_text(config.to_json_string())
        log(f"wrote {WEIGHTS.relative_to(common.ROOT)} ({len(state)} tensors, {n / 1e6:.1f} M "
            f"params, {WEIGHTS.stat().st_size / 2**20:.1f} MiB) and {CONFIG.name}")
    TOML.write_text(TOML_TEXT)
    log(f"wrote {TOML.relative_to(common.ROOT)}")


# ---------------------------------------------------------------------------------------------
# export


def torch_model():
    """The checkpoint `make` wrote, as an f32 eager-attention module taking keyword arguments
    (input_ids, attention_mask) and returning last_hidden_state."""
    from safetensors.torch import load_file
    from transformers import ModernBertConfig, ModernBertModel

    quiet()
    if not (WEIGHTS.exists() and CONFIG.exists()):
        raise SystemExit(f"{WEIGHTS} is missing: run `python bench/modernbert_ort.py make`")
    config = ModernBertConfig.from_json_file(str(CONFIG))
    config._attn_implementation = "eager"
    model = ModernBertModel(config)
    model.load_state_dict(load_file(str(WEIGHTS)), strict=True)
    model = model.float().eval()
    return common.last_hidden_state(model)


def export(model, path, dynamo):
    import torch

    ids = torch.from_numpy(random_ids(EXPORT_SEQ, batch=2, seed=1))
    mask = torch.ones_like(ids)
    kw = dict(
        kwargs={"input_ids": ids, "attention_mask": mask},
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        opset_version=OPSET,
    )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
            torch.onnx.export(
                model, (), str(path), dynamo=True, external_data=False,
                dynamic_shapes={"input_ids": {0: batch, 1: seq},
                                "attention_mask": {0: batch, 1: seq}},
                **kw,
            )
        else:
            torch.onnx.export(
                model, (), str(path), dynamo=False, do_constant_folding=True,
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "seq"},
                    "attention_mask": {0: "batch", 1: "seq"},
                    "last_hidden_state": {0: "batch", 1: "seq"},
                },
                **kw,
            )


def ort_session(path, threads):
    return common.ort_session_at(path, threads)


def verify(model, path, threads):
    """Max abs error of ONNX Runtime (FP32 model at `path`) against PyTorch at every checked
    length (batch 1, mask all ones), and at batch 2 with the second row padded (compared on its
    real tokens only). Returns {case: error}; raises if any is above TOLERANCE."""
    import numpy as np
    import torch

    sess = ort_session(path, threads)
    cases = [(f"S={s}", random_ids(s, seed=s), None) for s in CHECK_SEQS]
    ids = random_ids(300, batch=2, seed=300)
    mask = np.ones_like(ids)
    mask[1, 180:] = 0  # row 1: 180 real tokens, then padding
    cases.append(("S=300,batch=2,padded", ids, mask))
    errors = {}
    for name, ids, mask in cases:
        if mask is None:
            mask = np.ones_like(ids)
        t = time.time()
        with torch.inference_mode():
            ref = model(input_ids=torch.from_numpy(ids),
                        attention_mask=torch.from_numpy(mask)).numpy()
        out = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        if out.shape != ref.shape:
            raise RuntimeError(f"{name}: ONNX output {out.shape}, PyTorch {ref.shape}")
        real = mask.astype(bool)  # padded positions' outputs are not meaningful
        err = float(np.abs(out - ref)[real].max())
        errors[name] = err
        log(f"  {name}: max abs error {err:.3g} ({time.time() - t:.1f} s)")
        del ref, out
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    if bad:
        raise RuntimeError(f"ONNX Runtime differs from PyTorch above {TOLERANCE}: {bad}")
    return errors


def quantize(src, dst):
    return common.quantize_int8(src, dst, per_channel=True, log=log)


def op_counts(path):
    return common.op_counts(path)


def cmd_export(force, threads):
    import numpy as np
    import onnxruntime as ort
    import torch

    if ONNX_INT8.exists() and ONNX_F32.exists() and EXPORT_JSON.exists() and not force:
        log(f"{ONNX_INT8.relative_to(common.ROOT)} exists, reusing it")
        return
    for p in (ONNX_F32, ONNX_INT8, EXPORT_JSON):
        if p.exists():
            p.unlink()
    model = torch_model()
    record = {"torch": torch.__version__, "onnxruntime": ort.__version__,
              "traced_shape": [2, EXPORT_SEQ], "tolerance": TOLERANCE, "attempts": []}
    tmp = ONNX_F32.with_name("model.tmp.onnx")
    for dynamo in (False, True):
        exporter = "dynamo" if dynamo else "torchscript"
        t = time.time()
        log(f"exporting with the {exporter} exporter, opset {OPSET}")
        try:
            export(model, tmp, dynamo)
            log(f"exported ({time.time() - t:.1f} s, {tmp.stat().st_size / 2**20:.1f} MiB); "
                "checking against PyTorch")
            errors = verify(model, tmp, threads)
        except Exception as e:  # noqa: BLE001 - record it, try the other exporter
            msg = f"{type(e).__name__}: {e}"
            log(f"{exporter} failed: {msg[:2000]}")
            record["attempts"].append({"exporter": exporter, "opset": OPSET, "error": msg[:4000]})
            for p in DIR.glob("model.tmp.onnx*"):
                p.unlink()
            continue
        record["attempts"].append({"exporter": exporter, "opset": OPSET, "error": None})
        record.update(exporter=exporter, opset=OPSET, f32_max_abs_error=errors)
        break
    else:
        EXPORT_JSON.write_text(json.dumps(record, indent=2) + "\n")
        raise SystemExit(f"no exporter worked: see {EXPORT_JSON}")
    os.replace(tmp, ONNX_F32)
    record["f32_ops"] = op_counts(ONNX_F32)

    t = time.time()
    tmp = ONNX_INT8.with_name("model.int8.tmp.onnx")
    record["quant_pre_process"] = quantize(ONNX_F32, tmp)
    # Not a fidelity check (random weights, INT8): only that it runs and stays finite. The
    # error to FP32 goes to export.json for reference.
    sess = ort_session(tmp, threads)
    ids = random_ids(128, seed=128)
    out = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
    assert out.shape == (1, 128, 768) and np.isfinite(out).all(), out.shape
    ref = ort_session(ONNX_F32, threads).run(
        None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
    num = (out * ref).sum(-1)
    den = np.linalg.norm(out, axis=-1) * np.linalg.norm(ref, axis=-1)
    cos = float((num / den).mean())
    os.replace(tmp, ONNX_INT8)
    record["int8"] = {
        "quantize_dynamic": "QInt8 weights, per_channel=True, DefaultTensorType FLOAT",
        "vs_f32_at_S=128": {"max_abs_error": float(np.abs(out - ref).max()),
                            "mean_token_cosine": cos},
        "ops": op_counts(ONNX_INT8),
    }
    record["sizes_mib"] = {p.name: round(p.stat().st_size / 2**20, 1)
                           for p in (WEIGHTS, ONNX_F32, ONNX_INT8)}
    EXPORT_JSON.write_text(json.dumps(record, indent=2) + "\n")
    log(f"wrote {ONNX_INT8.relative_to(common.ROOT)} "
        f"({ONNX_INT8.stat().st_size / 2**20:.1f} MiB, {time.time() - t:.1f} s) and "
        f"{EXPORT_JSON.name}")


# ---------------------------------------------------------------------------------------------
# time


def cmd_time(seq, threads, runs, warmup):
    common.print_ort_time(ONNX_INT8, "int8_per_channel", random_ids(seq), threads, runs, warmup,
                          "modernbert_ort.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make")
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("export")
    p.add_argument("--force", action="store_true")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="intra-op threads of the ONNX Runtime check sessions")
    p = sub.add_parser("time")
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    if a.cmd == "make":
        cmd_make(a.force)
    elif a.cmd == "export":
        cmd_export(a.force, a.threads)
    else:
        cmd_time(a.seq, a.threads, a.runs, a.warmup)


if __name__ == "__main__":
    main()
