"""Export all-MiniLM-L6-v2 (models/minilm) to ONNX and make the ONNX Runtime variants.

    python bench/export_onnx.py [--force]

Writes under target/bench/onnx/:
  minilm_f32.onnx               plain torch.onnx.export (TorchScript exporter, opset 17)
  minilm_f32_opt.onnx           after onnxruntime.transformers.optimizer (bert, 12 heads, 384)
  minilm_int8_per_tensor.onnx   quantize_dynamic(QInt8 weights, per_channel=False) of the above
  minilm_int8_per_channel.onnx  quantize_dynamic(QInt8 weights, per_channel=True) of the above
Skips files that already exist (unless --force), so reruns are cheap.
"""

import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import common  # noqa: E402


def log(msg):
    print(f"[export] {msg}", flush=True)


def export_f32(path):
    import torch

    # Eager attention: with sdpa the optimizer fuses no Attention nor EmbedLayerNormalization.
    model = common.torch_model(attn_implementation="eager")
    ids, mask, types = (torch.from_numpy(a) for a in common.bench_inputs(16))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (),
            str(path),
            kwargs={"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "token_type_ids": {0: "batch", 1: "seq"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )


def optimize(src, dst):
    from onnxruntime.transformers import optimizer

    # opt_level=0: the Python fusions only (Attention, EmbedLayerNormalization,
    # SkipLayerNormalization, BiasGelu, ...); ONNX Runtime applies its own graph
    # optimizations again when the session loads.
    opt = optimizer.optimize_model(
        str(src), model_type="bert", num_heads=12, hidden_size=384, opt_level=0
    )
    stats = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
    log(f"fused ops: {stats}")
    if not stats.get("Attention"):
        log("WARNING: no Attention fused; ONNX Runtime runs unfused attention")
    opt.save_model_to_file(str(dst))


def quantize(src, dst, per_channel):
    import onnx
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    pre = dst.with_name(dst.stem + ".pre.onnx")
    try:
        # Symbolic shape inference fails on this graph: skip it.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        inp = pre
    except Exception as e:  # noqa: BLE001 - fall back to the unprocessed graph
        log(f"quant_pre_process failed ({type(e).__name__}: {e}); quantizing the graph as is")
        inp = src
    quantize_dynamic(
        str(inp),
        str(dst),
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
        # The transformer-optimized graph has tensors whose type inference cannot tell.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    if pre.exists():
        pre.unlink()


def check(path):
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids, mask, types = common.bench_inputs(16)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    names = {i.name for i in sess.get_inputs()}
    out = sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]
    assert out.shape == (1, 384) and np.isfinite(out).all(), out.shape


def main():
    force = "--force" in sys.argv[1:]
    common.ONNX_DIR.mkdir(parents=True, exist_ok=True)
    raw = common.ONNX_DIR / "minilm_f32.onnx"
    opt = common.ONNX_DIR / common.ONNX_FILES["f32"]
    per_tensor = common.ONNX_DIR / common.ONNX_FILES["int8_per_tensor"]
    per_channel = common.ONNX_DIR / common.ONNX_FILES["int8_per_channel"]
    steps = [
        (raw, export_f32),
        (opt, lambda dst: optimize(raw, dst)),
        (per_tensor, lambda dst: quantize(opt, dst, per_channel=False)),
        (per_channel, lambda dst: quantize(opt, dst, per_channel=True)),
    ]
    for i, (path, make) in enumerate(steps):
        if path.exists() and not force:
            log(f"{path.relative_to(common.ROOT)} exists, reusing it")
            continue
        # A fresh file invalidates everything made from it.
        for later, _ in steps[i + 1:]:
            if later.exists():
                later.unlink()
        t = time.time()
        tmp = path.with_name(path.stem + ".tmp.onnx")
        make(tmp)
        check(tmp)
        os.replace(tmp, path)  # only complete, checked files get the final name
        log(f"wrote {path.relative_to(common.ROOT)} "
            f"({path.stat().st_size / 2**20:.1f} MiB, {time.time() - t:.1f} s)")


if __name__ == "__main__":
    main()
