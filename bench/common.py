"""Shared by the bench/ helpers: paths, the benchmark token ids, the PyTorch model.

The token ids are built exactly as `examples/embed --bench S` builds them: the same fixed
English text encoded without special tokens and repeated until long enough, then
[CLS] + the first S-2 word pieces + [SEP]. Every engine therefore sees the same S ids.
"""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "models" / "minilm"
OUT_DIR = ROOT / "target" / "bench"
ONNX_DIR = OUT_DIR / "onnx"

# Same text as `bench_ids` in examples/embed/main.rs (the Rust string continuations strip the
# line breaks and leading indentation, leaving one space between sentences).
TEXT = (
    "A man is playing a guitar on a stage while a crowd of people watches him. "
    "The stock market fell sharply on Tuesday after the central bank raised interest rates again. "
    "Three children are building a sandcastle on the beach near the old lighthouse. "
    "Scientists have discovered a new species of frog in the rainforests of South America. "
)

ONNX_FILES = {
    "f32": "minilm_f32_opt.onnx",
    "int8_per_tensor": "minilm_int8_per_tensor.onnx",
    "int8_per_channel": "minilm_int8_per_channel.onnx",
}


def tokenizer():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    # The shipped tokenizer.json pads and truncates to 128: turn both off.
    tok.no_padding()
    tok.no_truncation()
    return tok


def bench_ids(seq_len: int) -> list[int]:
    """Exactly `seq_len` token ids: [CLS], word pieces of real sentences, [SEP]."""
    tok = tokenizer()
    piece = tok.encode(TEXT, add_special_tokens=False).ids
    body: list[int] = []
    while len(body) < seq_len:
        body.extend(piece)
    special = tok.encode("", add_special_tokens=True).ids  # [CLS] [SEP]
    ids = [special[0]] + body[: max(seq_len - 2, 0)] + [special[-1]]
    return ids[:seq_len]


def bench_inputs(seq_len: int):
    """numpy int64 arrays (input_ids, attention_mask, token_type_ids), batch 1."""
    import numpy as np

    ids = np.array([bench_ids(seq_len)], dtype=np.int64)
    return ids, np.ones_like(ids), np.zeros_like(ids)


def torch_model(attn_implementation=None):
    """all-MiniLM-L6-v2 as an f32 PyTorch module taking keyword arguments and returning the
    mean-pooled, L2-normalized sentence embedding (what the dynq `embed` example returns).

    attn_implementation: None for transformers' default (sdpa), "eager" for the ONNX export
    (ONNX Runtime's transformer optimizer only recognizes the eager attention pattern)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import warnings

    import torch
    import transformers
    from transformers import BertModel

    # Quiet: the load report (unused pooler weights), progress bars, deprecation notices
    # (torch.ao.quantization) would bury the benchmark output.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)

    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    bert = BertModel.from_pretrained(
        str(MODEL_DIR), dtype=torch.float32, add_pooling_layer=False, **kw
    )
    bert = bert.float().eval()

    class Embedder(torch.nn.Module):
        # transformers 5's BertModel.forward fails under torch.onnx.export with positional
        # inputs ("got multiple values for argument 'use_cache'"): call it with keywords.
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return Embedder(bert).eval()


def last_hidden_state(model):
    """`model` (a transformers encoder) as a module called with (input_ids, attention_mask),
    by keyword inside, returning last_hidden_state: the signature the ONNX exports take."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return Encoder(model).eval()


def ort_session_at(path, threads):
    """An ONNX Runtime CPU session of the model at `path` on `threads` intra-op threads (one
    inter-op thread, sequential, all graph optimizations): how every peer script runs it."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_session(variant, threads):
    """An ONNX Runtime CPU session of the exported `variant` (a key of ONNX_FILES) on `threads`
    intra-op threads (see ort_session_at), and the names of its inputs."""
    path = ONNX_DIR / ONNX_FILES[variant]
    if not path.exists():
        raise SystemExit(f"{path} is missing: run bench/export_onnx.py")
    sess = ort_session_at(path, threads)
    return sess, {i.name for i in sess.get_inputs()}


def median_ms(sess, feeds, runs, warmup):
    """Median wall time in ms of `runs` calls of `sess` on `feeds`, after `warmup` calls."""
    import statistics
    import time

    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return round(statistics.median(times), 4)


def print_ort_time(path, variant, ids, threads, runs, warmup, script):
    """Times an ONNX Runtime session of `path` (batch `ids`, mask all ones; see median_ms) and
    prints one JSON line {"engine", "variant", "seq", "threads", "median_ms", "runs"}."""
    import json

    import numpy as np

    if not path.exists():
        raise SystemExit(f"{path} is missing: run `python bench/{script} export`")
    sess = ort_session_at(path, threads)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    print(json.dumps({"engine": "onnxruntime", "variant": variant, "seq": ids.shape[1],
                      "threads": threads, "median_ms": median_ms(sess, feeds, runs, warmup),
                      "runs": runs}), flush=True)


def op_counts(path):
    """{op type: count} of the ONNX graph at `path`, sorted by op type."""
    import collections

    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return dict(sorted(collections.Counter(n.op_type for n in m.graph.node).items()))


def quantize_int8(src, dst, per_channel, reduce_range=False, log=print):
    """`quantize_dynamic` of `src` into `dst` (QInt8 weights, other tensors float), after
    `quant_pre_process(skip_symbolic_shape=True)` when that succeeds; returns what was done
    before quantizing, for the export record."""
    import onnx
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    pre = dst.with_name(dst.stem + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        inp, note = pre, "quant_pre_process(skip_symbolic_shape=True)"
    except Exception as e:  # noqa: BLE001 - quantize the graph as is
        log(f"quant_pre_process failed ({type(e).__name__}: {e}); quantizing the graph as is")
        inp, note = src, f"quant_pre_process failed: {type(e).__name__}: {e}"
    quantize_dynamic(str(inp), str(dst), per_channel=per_channel, reduce_range=reduce_range,
                     weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    if pre.exists():
        pre.unlink()
    return note


class RusagePopen(subprocess.Popen):
    """Popen that reaps with wait4 and keeps the child's ru_maxrss (which also counts the pages
    it shared with this process between fork and exec: an upper bound for a small binary)."""

    peak_rss_mib = None

    def _try_wait(self, wait_flags):
        try:
            pid, sts, ru = os.wait4(self.pid, wait_flags)
        except ChildProcessError:
            pid, sts = self.pid, 0
        else:
            if pid == self.pid:
                self.peak_rss_mib = round(ru.ru_maxrss / 1024, 1)  # KiB on Linux
        return (pid, sts)
