"""Time one peer configuration in this process and print one JSON line.

    python bench/peer_one.py ENGINE VARIANT SEQ_LEN THREADS [--runs N] [--warmup W]

ENGINE onnxruntime: VARIANT f32 | int8_per_tensor | int8_per_channel (files made by
bench/export_onnx.py under target/bench/onnx/).
ENGINE pytorch: VARIANT f32 | int8 (torch.ao.quantization.quantize_dynamic of nn.Linear, qint8).

Same input as `examples/embed --bench S`: batch 1, exactly S token ids, mask all ones,
token_type_ids zeros. Prints {"engine", "variant", "seq_len", "threads", "median_ms",
"min_ms", "runs", "peak_rss_mib", "version"}; peak RSS is this process's, model included.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import common  # noqa: E402


def onnxruntime_runner(variant, threads):
    import onnxruntime as ort

    sess, names = common.ort_session(variant, threads)

    def make(seq_len):
        ids, mask, types = common.bench_inputs(seq_len)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feeds = {k: v for k, v in feeds.items() if k in names}
        return lambda: sess.run(None, feeds)

    return make, f"onnxruntime {ort.__version__}"


def pytorch_runner(variant, threads):
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    model = common.torch_model()
    if variant == "int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    elif variant != "f32":
        raise SystemExit(f"pytorch: unknown variant {variant!r} (f32 or int8)")
    model.eval()

    def make(seq_len):
        ids, mask, types = (torch.from_numpy(a) for a in common.bench_inputs(seq_len))

        def run():
            with torch.inference_mode():
                return model(input_ids=ids, attention_mask=mask, token_type_ids=types)

        return run

    return make, f"torch {torch.__version__} ({torch.backends.quantized.engine})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=["onnxruntime", "pytorch"])
    ap.add_argument("variant")
    ap.add_argument("seq_len", type=int)
    ap.add_argument("threads", type=int)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    a = ap.parse_args()

    if a.engine == "onnxruntime":
        if a.variant not in common.ONNX_FILES:
            raise SystemExit(f"onnxruntime: unknown variant {a.variant!r}")
        make, version = onnxruntime_runner(a.variant, a.threads)
    else:
        make, version = pytorch_runner(a.variant, a.threads)

    run = make(a.seq_len)
    for _ in range(a.warmup):
        run()
    times = []
    for _ in range(a.runs):
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) * 1e3)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "engine": a.engine,
        "variant": a.variant,
        "seq_len": a.seq_len,
        "threads": a.threads,
        "median_ms": round(statistics.median(times), 4),
        "min_ms": round(min(times), 4),
        "runs": a.runs,
        "peak_rss_mib": round(rss_kib / 1024, 1),
        "version": version,
    }), flush=True)


if __name__ == "__main__":
    main()
