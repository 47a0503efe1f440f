"""Make the golden LSTM/GRU data checked by tests/golden_rnn.rs.

Run from the repository root:

    target/pyenv/bin/python scripts/make_rnn_goldens.py

(`scripts/setup_pyenv.sh` creates that virtualenv with torch, numpy and
safetensors.)

Writes into tests/golden/rnn/ eight cases `{kind}_{tag}`, kind `lstm` or
`gru`, all with input_size 10 and hidden_size 12:

    tag  num_layers  bidirectional  bias   batch_first
    a    1           false          true   true
    b    1           true           false  false
    c    2           false          false  true
    d    2           true           true   false

For each case:

* `{case}.toml` -- the dynq model description (preset `lstm` / `gru`, tensor
  prefix `rnn.`).
* `{case}.safetensors` -- float32, all contiguous:
  - the state dict of a module whose attribute `rnn` is the nn.LSTM / nn.GRU:
    `rnn.weight_ih_l{k}[_reverse]`, `rnn.weight_hh_l{k}[_reverse]` and, with
    bias, `rnn.bias_ih_l{k}[_reverse]`, `rnn.bias_hh_l{k}[_reverse]` (PyTorch
    gate order: LSTM i,f,g,o; GRU r,z,n). Default init, then every weight
    (not bias) multiplied by 2 so the gates leave their linear range.
  - eight test sequences `s0` .. `s7`:
      s0  unbatched, T=1,  randn
      s1  unbatched, T=7,  randn
      s2  unbatched, T=64, randn
      s3  unbatched, T=7,  0.01 * randn
      s4  unbatched, T=64, 30 * randn
      s5  unbatched, T=7,  randn, with initial state `s5.h0` (and `s5.c0`
          for LSTM), 0.5 * randn, shape [D*L, 12]
      s6  unbatched, T=64, first 32 steps 0.001 * randn, last 32 10 * randn
      s7  batched, batch 3, T=5, randn, [3,5,10] if batch_first else
          [5,3,10]; no initial state
    Unbatched inputs are [T, 10] with outputs [T, D*12] and h_n/c_n
    [D*L, 12], as PyTorch's unbatched call returns them; s7's outputs are
    [3,5,D*12] or [5,3,D*12] and h_n/c_n [D*L,3,12]. Per sequence j:
    `s{j}.input`, optional `s{j}.h0` / `s{j}.c0`, the FP32 PyTorch results
    `s{j}.fp32.output`, `s{j}.fp32.h_n`, `s{j}.fp32.c_n` (LSTM only), and the
    results of `torch.ao.quantization.quantize_dynamic(model, {nn.LSTM,
    nn.GRU}, dtype=torch.qint8)` (default qconfig, engine fbgemm) as
    `s{j}.qdyn.output`, `s{j}.qdyn.h_n`, `s{j}.qdyn.c_n`, and (all cases,
    with or without qdyn) `s{j}.w8.output`, `s{j}.w8.h_n`, `s{j}.w8.c_n`
    (LSTM only): the FP32 module run the same way as for `fp32` but with
    every weight matrix (`weight_ih_*`, `weight_hh_*`; biases untouched)
    replaced by its int8 round trip as dynq stores it -- per output row j,
    scale_j = max|w_j| / 127 in float32 (1.0 for an all-zero row), q =
    round_half_even(w / scale_j) (quotient in float64, as dynq's
    quantize_weights; the float32 quotient gives the same q here, checked)
    clamped to [-127, 127], dequantized as float32(q * scale_j).
    Activations stay float32, so `w8` is the error floor of any scheme with
    int8 per-channel weights.
  - metadata (all strings): kind, num_layers, bidirectional, bias,
    batch_first (booleans as "true"/"false"), input_size, hidden_size,
    sequences ("8"), torch (version), engine, and qdyn: "present", or
    "zero_bias_stand_in" for the bias-free cases b and c. PyTorch's dynamic
    quantized LSTM/GRU require bias=True (quantize_dynamic fails with
    "mod.bias must be True"), so for b and c the script quantizes instead a
    copy of the model built with bias=True, the same weights and every
    `bias_ih_*` / `bias_hh_*` set to zero -- the same function as the
    bias-free module (its FP32 results are checked against the bias-free
    ones) -- and runs it exactly like the other qdyn runs (same calls, s7
    batched, given h0/c0). Its results are stored as the usual `s{j}.qdyn.*`
    tensors; the zero biases are not stored.

PyTorch's dynamic quantized RNNs reject unbatched (2-D) input, so for them the
unbatched sequences are run as a batch of one and the batch dimension is
dropped again. Their scheme (printed and checked here for the weights):
int8 weights per tensor, symmetric, scale max|w|/127.5, values in
[-128,127]; activations quint8 per tensor, asymmetric, reduce_range (0..127),
qparams chosen per call -- the input projection W_ih x is one call over the
whole [T,B,I] sequence (one scale for all steps), W_hh h one call per step.
So s7's qdyn results are not those of its three rows run alone. The script checks every FP32 and w8 result against an independent
float64 numpy implementation of PyTorch's LSTM/GRU equations (with the
respective weights; max relative difference < 1e-5) and prints, per case and
sequence, the relative L2 errors ||w8.output - fp32.output|| /
||fp32.output|| and ||qdyn.output - fp32.output|| / ||fp32.output||.
The metadata keys are sorted after writing, so reruns on the same PyTorch
build give byte-identical files.
"""

import copy
import json
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.ao.quantization import quantize_dynamic

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "golden" / "rnn"

INPUT_SIZE = 10
HIDDEN_SIZE = 12
WEIGHT_GAIN = 2.0
NUMPY_TOL = 1e-5

# tag -> (num_layers, bidirectional, bias, batch_first)
TAGS = {
    "a": (1, False, True, True),
    "b": (1, True, False, False),
    "c": (2, False, False, True),
    "d": (2, True, True, False),
}
KINDS = ("lstm", "gru")

TOML = """\
# Golden {KIND}: made by scripts/make_rnn_goldens.py (PyTorch), \
checked by tests/golden_rnn.rs.
[model]
name = "golden_{case}"
preset = "{kind}"
weights = "{case}.safetensors"

[{kind}]
prefix = "rnn."
input_size = {input_size}
hidden_size = {hidden_size}
num_layers = {num_layers}
bidirectional = {bidirectional}
bias = {bias}
batch_first = {batch_first}
"""


def tbool(b):
    return "true" if b else "false"


class GoldenRnn(nn.Module):
    def __init__(self, kind, num_layers, bidirectional, bias, batch_first):
        super().__init__()
        cls = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = cls(
            INPUT_SIZE,
            HIDDEN_SIZE,
            num_layers=num_layers,
            bias=bias,
            batch_first=batch_first,
            bidirectional=bidirectional,
        )

    def forward(self, x, hx=None):
        return self.rnn(x, hx)


def make_sequences(kind, num_layers, bidirectional, batch_first, gen):
    """[(input, h0 or None, c0 or None, batched)] for s0..s7."""
    d = 2 if bidirectional else 1
    state_shape = (d * num_layers, HIDDEN_SIZE)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float32)

    seqs = [
        (rnd(1, INPUT_SIZE), None, None, False),
        (rnd(7, INPUT_SIZE), None, None, False),
        (rnd(64, INPUT_SIZE), None, None, False),
        (0.01 * rnd(7, INPUT_SIZE), None, None, False),
        (30.0 * rnd(64, INPUT_SIZE), None, None, False),
    ]
    x5 = rnd(7, INPUT_SIZE)
    h5 = 0.5 * rnd(*state_shape)
    c5 = 0.5 * rnd(*state_shape) if kind == "lstm" else None
    seqs.append((x5, h5, c5, False))
    x6 = torch.cat([0.001 * rnd(32, INPUT_SIZE), 10.0 * rnd(32, INPUT_SIZE)])
    seqs.append((x6, None, None, False))
    x7 = rnd(3, 5, INPUT_SIZE) if batch_first else rnd(5, 3, INPUT_SIZE)
    seqs.append((x7, None, None, True))
    return seqs


def run_torch(module, kind, x, h0, c0, batched, batch_first, add_batch_dim):
    """Run `module`; returns (output, h_n, c_n or None) in PyTorch's shapes
    for the (un)batched call. With add_batch_dim, an unbatched sequence is
    run as a batch of one (the dynamic quantized RNNs need 3-D input)."""
    unsq = add_batch_dim and not batched
    if unsq:
        x = x.unsqueeze(0 if batch_first else 1)
        h0 = None if h0 is None else h0.unsqueeze(1)
        c0 = None if c0 is None else c0.unsqueeze(1)
    if kind == "lstm":
        hx = None if h0 is None else (h0, c0)
    else:
        hx = h0
    with torch.no_grad():
        out, hn = module(x, hx)
    if kind == "lstm":
        hn, cn = hn
    else:
        cn = None
    if unsq:
        out = out.squeeze(0 if batch_first else 1)
        hn = hn.squeeze(1)
        cn = None if cn is None else cn.squeeze(1)
    return out, hn, cn


# ---------------------------------------------------------------- numpy ----


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_cell_seq(kind, xs, h, c, w_ih, w_hh, b_ih, b_hh, reverse):
    """One direction of one layer. xs [T,B,I] float64; h, c [B,H].
    Returns outputs [T,B,H], h_T, c_T (c None for GRU)."""
    steps = range(xs.shape[0] - 1, -1, -1) if reverse else range(xs.shape[0])
    outs = [None] * xs.shape[0]
    hs = HIDDEN_SIZE
    for t in steps:
        gi = xs[t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        if kind == "lstm":
            g = gi + gh
            i = sigmoid(g[:, 0 * hs:1 * hs])
            f = sigmoid(g[:, 1 * hs:2 * hs])
            gg = np.tanh(g[:, 2 * hs:3 * hs])
            o = sigmoid(g[:, 3 * hs:4 * hs])
            c = f * c + i * gg
            h = o * np.tanh(c)
        else:
            r = sigmoid(gi[:, 0:hs] + gh[:, 0:hs])
            z = sigmoid(gi[:, hs:2 * hs] + gh[:, hs:2 * hs])
            n = np.tanh(gi[:, 2 * hs:3 * hs] + r * gh[:, 2 * hs:3 * hs])
            h = (1.0 - z) * n + z * h
        outs[t] = h
    return np.stack(outs), h, c


def np_rnn(kind, sd, num_layers, bidirectional, bias, batch_first,
           x, h0, c0, batched):
    """PyTorch's LSTM/GRU in float64 numpy, same shapes as run_torch."""
    x = x.numpy().astype(np.float64)
    if not batched:
        x = x[:, None, :]            # [T,1,I]
    elif batch_first:
        x = x.transpose(1, 0, 2)     # [T,B,I]
    d = 2 if bidirectional else 1
    b = x.shape[1]
    gates = 4 if kind == "lstm" else 3

    def state(s):
        if s is None:
            return np.zeros((d * num_layers, b, HIDDEN_SIZE))
        s = s.numpy().astype(np.float64)
        return s[:, None, :] if not batched else s

    h0, c0 = state(h0), state(c0)
    hn, cn = [], []
    layer_in = x
    for layer in range(num_layers):
        dir_outs = []
        for direction in range(d):
            sfx = f"_l{layer}" + ("_reverse" if direction else "")
            w_ih = sd[f"rnn.weight_ih{sfx}"].numpy().astype(np.float64)
            w_hh = sd[f"rnn.weight_hh{sfx}"].numpy().astype(np.float64)
            if bias:
                b_ih = sd[f"rnn.bias_ih{sfx}"].numpy().astype(np.float64)
                b_hh = sd[f"rnn.bias_hh{sfx}"].numpy().astype(np.float64)
            else:
                b_ih = b_hh = np.zeros(gates * HIDDEN_SIZE)
            k = layer * d + direction
            out, h, c = np_cell_seq(kind, layer_in, h0[k], c0[k],
                                    w_ih, w_hh, b_ih, b_hh, direction == 1)
            dir_outs.append(out)
            hn.append(h)
            cn.append(c)
        layer_in = np.concatenate(dir_outs, axis=2)
    out = layer_in
    hn = np.stack(hn)
    cn = np.stack(cn) if kind == "lstm" else None
    if not batched:
        out = out[:, 0, :]
        hn = hn[:, 0, :]
        cn = None if cn is None else cn[:, 0, :]
    elif batch_first:
        out = out.transpose(1, 0, 2)
    return out, hn, cn


def max_rel(a, ref):
    """max |a - ref| / max |ref| (ref a torch tensor, a numpy float64)."""
    ref = ref.numpy().astype(np.float64)
    assert a.shape == ref.shape, (a.shape, ref.shape)
    scale = np.abs(ref).max()
    return float(np.abs(a - ref).max() / (scale if scale > 0 else 1.0))


def sort_metadata(path):
    """safetensors writes `__metadata__` in hash order; rewrite the header
    (same length) with the metadata keys sorted so reruns are
    byte-identical."""
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= n, (len(text), n)
    data[8:8 + n] = text.ljust(n, b" ")
    path.write_bytes(bytes(data))


def w8_round_trip(w):
    """int8 round trip of a float32 [n, k] weight matrix as dynq stores it
    (build-support quantize_weights, per channel): per row, scale =
    max|w| / 127 in float32 (1.0 for an all-zero row), q =
    round_half_even(w / scale) clamped to [-127, 127], back as q * scale in
    float32."""
    w = w.detach().numpy().astype(np.float32)
    assert w.ndim == 2
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(127.0),
                     np.float32(1.0)).astype(np.float32)[:, None]
    # dynq divides in float64; np.rint rounds half to even.
    q = np.clip(np.rint(w.astype(np.float64) / scale.astype(np.float64)),
                -127, 127)
    q32 = np.clip(np.rint(w / scale), -127, 127)  # float32 quotient
    assert np.array_equal(q, q32), "f32 and f64 quotients round differently"
    assert np.abs(q).max() == 127 or not amax.any()
    deq = (q.astype(np.float32) * scale).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(deq))


def w8_model(model):
    """Copy of `model` with every weight matrix (not bias) replaced by its
    int8 round trip."""
    m8 = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in m8.rnn.named_parameters():
            if name.startswith("weight_"):
                p.copy_(w8_round_trip(p))
    return m8


def zero_bias_stand_in(model):
    """Copy of the bias-free `model` built with bias=True: the same weights,
    every bias zero. It computes the same function, and PyTorch's
    quantize_dynamic accepts it (it refuses RNNs without bias). The global
    RNG is left as it was."""
    rnn = model.rnn
    assert not rnn.bias
    kind = "lstm" if isinstance(rnn, nn.LSTM) else "gru"
    with torch.random.fork_rng(devices=[]):
        stand_in = GoldenRnn(kind, rnn.num_layers, rnn.bidirectional, True,
                             rnn.batch_first).eval()
    params = dict(rnn.named_parameters())
    with torch.no_grad():
        for name, p in stand_in.rnn.named_parameters():
            if name.startswith("bias_"):
                p.zero_()
            else:
                p.copy_(params[name])
    names = {n for n, _ in stand_in.rnn.named_parameters()}
    assert set(params) == {n for n in names if n.startswith("weight_")}
    return stand_in


def rel_l2(a, ref):
    denom = ref.double().norm().item()
    err = (a.double() - ref.double()).norm().item()
    return err / denom if denom > 0 else float("nan")


# ----------------------------------------------------------------- main ----


def describe_qdyn(qmodel, model, kind):
    """Check the module really is PyTorch's dynamic quantized LSTM/GRU and
    return short descriptions of how its weights are quantized (compared
    with the float weights of `model`)."""
    qtype = type(qmodel.rnn)
    expect = (torch.ao.nn.quantized.dynamic.LSTM if kind == "lstm"
              else torch.ao.nn.quantized.dynamic.GRU)
    assert qtype is expect, qtype
    rnn = model.rnn
    d = 2 if rnn.bidirectional else 1
    names = [f"_l{layer}" + ("_reverse" if direction else "")
             for layer in range(rnn.num_layers) for direction in range(d)]
    assert len(names) == len(qmodel.rnn._all_weight_values)
    facts = set()
    for sfx, pv in zip(names, qmodel.rnn._all_weight_values):
        # state: ((kind, [bias_ih, bias_hh], doubles, longs, [packed_ih,
        # packed_hh]), class name); longs[0] is the activation reduce_range.
        (_, _, _, longs, packed), _ = pv.param.__getstate__()
        reduce_range = bool(longs[0]) if longs else None
        for which, p in zip(("ih", "hh"), packed):
            w, _b = p.unpack()
            wf = getattr(rnn, f"weight_{which}{sfx}").detach()
            amax = wf.abs().max().item()
            ir = w.int_repr()
            inv = torch.tensor(1.0 / w.q_scale(), dtype=torch.float32)
            same = torch.equal(
                ir, torch.clamp(torch.round(wf * inv), -128, 127)
                .to(torch.int8))
            facts.add(
                f"{w.qscheme()} zp={w.q_zero_point()} "
                f"scale=max|w|/{amax / w.q_scale():.4f}, int8 in [-128,127], "
                f"q == clamp(round_half_even(w * f32(1/scale))): {same}; "
                f"activations reduce_range={reduce_range}"
            )
    return qtype, sorted(facts)


def main():
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if "fbgemm" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "fbgemm"
    engine = torch.backends.quantized.engine
    print(f"torch {torch.__version__}, quantized engine {engine}")

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    errors = {}
    worst_np = 0.0
    worst_stand_in = 0.0
    for ki, kind in enumerate(KINDS):
        for ti, (tag, (num_layers, bidirectional, bias, batch_first)) in \
                enumerate(TAGS.items()):
            case = f"{kind}_{tag}"
            torch.manual_seed(1000 + 10 * ki + ti)
            model = GoldenRnn(kind, num_layers, bidirectional, bias,
                              batch_first).eval()
            with torch.no_grad():
                for name, p in model.rnn.named_parameters():
                    if name.startswith("weight_"):
                        p.mul_(WEIGHT_GAIN)
            sd = {k: v.detach().to(torch.float32).contiguous().clone()
                  for k, v in sorted(model.state_dict().items())}
            d = 2 if bidirectional else 1
            expected = []
            for layer in range(num_layers):
                for direction in range(d):
                    sfx = f"_l{layer}" + ("_reverse" if direction else "")
                    expected += [f"rnn.weight_ih{sfx}", f"rnn.weight_hh{sfx}"]
                    if bias:
                        expected += [f"rnn.bias_ih{sfx}", f"rnn.bias_hh{sfx}"]
            assert sorted(sd) == sorted(expected), sorted(sd)

            # PyTorch's dynamic quantized RNNs need bias=True; a bias-free
            # model is quantized through a stand-in with zero biases.
            qsource = model if bias else zero_bias_stand_in(model)
            qmodel = quantize_dynamic(qsource, {nn.LSTM, nn.GRU},
                                      dtype=torch.qint8)
            qtype, facts = describe_qdyn(qmodel, qsource, kind)
            print(f"{case}: quantized module {qtype.__module__}."
                  f"{qtype.__qualname__}"
                  + ("" if bias else " (of the zero-bias stand-in)"))
            for f in facts:
                print(f"    weights: {f}")
            # quantize_dynamic must copy, leaving the float model untouched.
            assert isinstance(model.rnn, (nn.LSTM, nn.GRU))
            model8 = w8_model(model)
            sd8 = {k: v.detach().to(torch.float32).contiguous().clone()
                   for k, v in sorted(model8.state_dict().items())}
            assert sorted(sd8) == sorted(sd)
            for k in sd:  # weights changed, biases not
                is_weight = k.startswith("rnn.weight_")
                assert torch.equal(sd8[k], sd[k]) != is_weight, k

            gen = torch.Generator().manual_seed(2000 + 10 * ki + ti)
            seqs = make_sequences(kind, num_layers, bidirectional,
                                  batch_first, gen)
            tensors = dict(sd)
            errors[case] = []
            for j, (x, h0, c0, batched) in enumerate(seqs):
                p = f"s{j}."
                tensors[p + "input"] = x.contiguous()
                if h0 is not None:
                    tensors[p + "h0"] = h0.contiguous()
                if c0 is not None:
                    tensors[p + "c0"] = c0.contiguous()
                out, hn, cn = run_torch(model, kind, x, h0, c0, batched,
                                        batch_first, add_batch_dim=False)
                res = {"fp32": (out, hn, cn)}
                res["w8"] = run_torch(model8, kind, x, h0, c0, batched,
                                      batch_first, add_batch_dim=False)
                res["qdyn"] = run_torch(qmodel, kind, x, h0, c0, batched,
                                        batch_first, add_batch_dim=True)
                if not bias:
                    # The stand-in computes the bias-free model's function.
                    so, sh, sc = run_torch(qsource, kind, x, h0, c0, batched,
                                           batch_first, add_batch_dim=False)
                    diff = max(max_rel(so.double().numpy(), out),
                               max_rel(sh.double().numpy(), hn),
                               max_rel(sc.double().numpy(), cn)
                               if kind == "lstm" else 0.0)
                    worst_stand_in = max(worst_stand_in, diff)
                    assert diff < NUMPY_TOL, (case, j, "stand-in", diff)
                for tag_, (o, h, c) in res.items():
                    assert o.shape == out.shape and h.shape == hn.shape
                    tensors[f"{p}{tag_}.output"] = o.float().contiguous()
                    tensors[f"{p}{tag_}.h_n"] = h.float().contiguous()
                    if kind == "lstm":
                        tensors[f"{p}{tag_}.c_n"] = c.float().contiguous()

                # Independent float64 check of the FP32 results.
                no, nh, nc = np_rnn(kind, sd, num_layers, bidirectional, bias,
                                    batch_first, x, h0, c0, batched)
                diff = max(max_rel(no, out), max_rel(nh, hn),
                           max_rel(nc, cn) if kind == "lstm" else 0.0)
                worst_np = max(worst_np, diff)
                assert diff < NUMPY_TOL, (case, j, diff)
                # ... and of the w8 results (numpy with the round-trip
                # weights).
                wo, wh, wc = res["w8"]
                no, nh, nc = np_rnn(kind, sd8, num_layers, bidirectional,
                                    bias, batch_first, x, h0, c0, batched)
                diff = max(max_rel(no, wo), max_rel(nh, wh),
                           max_rel(nc, wc) if kind == "lstm" else 0.0)
                worst_np = max(worst_np, diff)
                assert diff < NUMPY_TOL, (case, j, "w8", diff)
                errors[case].append((rel_l2(wo, out),
                                     rel_l2(res["qdyn"][0], out)))

            meta = {
                "kind": kind,
                "num_layers": str(num_layers),
                "bidirectional": tbool(bidirectional),
                "bias": tbool(bias),
                "batch_first": tbool(batch_first),
                "input_size": str(INPUT_SIZE),
                "hidden_size": str(HIDDEN_SIZE),
                "sequences": str(len(seqs)),
                "torch": torch.__version__,
                "engine": engine,
                "qdyn": "present" if bias else "zero_bias_stand_in",
            }
            st_path = OUT_DIR / f"{case}.safetensors"
            save_file(tensors, str(st_path), metadata=meta)
            sort_metadata(st_path)
            (OUT_DIR / f"{case}.toml").write_text(TOML.format(
                KIND=kind.upper(),
                case=case,
                kind=kind,
                input_size=INPUT_SIZE,
                hidden_size=HIDDEN_SIZE,
                num_layers=num_layers,
                bidirectional=tbool(bidirectional),
                bias=tbool(bias),
                batch_first=tbool(batch_first),
            ))

    print(f"numpy float64 reference vs PyTorch FP32: max relative difference "
          f"{worst_np:.3g} (max|diff| / max|ref| per tensor; tolerance "
          f"{NUMPY_TOL:g})")
    print(f"zero-bias stand-in vs bias-free model, FP32: max relative "
          f"difference {worst_stand_in:.3g} (tolerance {NUMPY_TOL:g})")
    print("rel_l2(x.output, fp32.output) for x = w8 (int8 per-channel "
          "weights, FP32 activations) and qdyn; '*' = qdyn of the zero-bias "
          "stand-in")
    print(f"{'case':8s}{'seq':>4}{'w8':>10}{'qdyn':>10}{'qdyn/w8':>9}")
    for case, errs in errors.items():
        star = "" if TAGS[case.split("_")[1]][2] else " *"
        for j, (e8, eq) in enumerate(errs):
            r = f"{eq / e8:9.1f}" if e8 > 0 else f"{'-':>9}"
            print(f"{case:8s}{'s' + str(j):>4}{e8:10.5f}{eq:10.5f}{r}{star}")
    total = sum(f.stat().st_size for f in OUT_DIR.iterdir())
    print(f"wrote {len(list(OUT_DIR.iterdir()))} files, {total} bytes, "
          f"into {OUT_DIR.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
