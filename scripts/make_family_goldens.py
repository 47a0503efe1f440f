"""Make tiny random checkpoints of every BERT-like family and their PyTorch outputs.

Run from the repository root (`scripts/setup_pyenv.sh` makes the virtualenv):

    target/pyenv/bin/python scripts/make_family_goldens.py

Nothing is downloaded: each model is built from a config with transformers'
`*ForSequenceClassification` class, initialized after torch.manual_seed(0) with
initializer_range 0.2 (so attention is far from uniform), every LayerNorm and
Linear bias given N(0, 0.1^2) noise, in eval mode, eager attention. Sizes are
deliberately odd: hidden widths that are not multiples of 16, heads of 8 or 12,
vocabularies that are not multiples of 8.

| family      | class                               | hidden | heads x d | FFN | vocab | act       | weights as saved        |
|-------------|-------------------------------------|--------|-----------|-----|-------|-----------|-------------------------|
| roberta     | RobertaForSequenceClassification    | 36     | 3 x 12    | 52  | 101   | gelu      | f32, prefix `roberta.`  |
| xlm-roberta | XLMRobertaForSequenceClassification | 40     | 5 x 8     | 56  | 99    | gelu_new  | f32 with prefix; base model f16 without prefix |
| distilbert  | DistilBertForSequenceClassification | 40     | 5 x 8     | 56  | 103   | gelu      | f32, prefix `distilbert.` |
| mpnet       | MPNetForSequenceClassification      | 36     | 3 x 12    | 52  | 101   | gelu      | bf16 with prefix; base model f32 without prefix (as sentence-transformers saves it) |
| electra     | ElectraForSequenceClassification    | 40 (embeddings 24, projected) | 5 x 8 | 56 | 97 | gelu | f32, prefix `electra.` |

Where a family is saved in f16 or bf16, every parameter is first rounded to
that type, so the f32 file and the half file hold the same values and the
outputs below are exact for both.

Writes tests/golden/families/<family>/{model.safetensors, config.json,
io.safetensors} (and base.safetensors where listed). io.safetensors holds a
padded batch of 12 sequences of true lengths 30, 28, 25, 21, 17, 14, 11, 8, 5, 3, 2, 1 (padded to 30 with
the family's pad id, which never occurs among the real tokens) and:

* `input_ids`, `attention_mask` I64 [12,30]; `token_type_ids` I64 [12,30] for
  families with token types (ELECTRA: 1 on the second half of each sequence;
  RoBERTa/XLM-R: zeros);
* `last_hidden_state` F32 [12,30,H] of the base model on the padded batch with
  the mask (compare real positions only), `mean_pooled` F32 [12,H] (mean over
  the mask), `cls` F32 [12,H], `logits` F32 [12,labels];
* `qd_last_hidden_state`, `qd_mean_pooled`, `qd_cls`, `qd_logits`: the same
  from PyTorch's `quantize_dynamic` (every nn.Linear, qint8) of the model,
  the peer the INT8 build is held against;
* mpnet only: `buckets` I64 [1201], the relative position bucket
  (`MPNetEncoder.relative_position_bucket`) of relative positions -600..600.

Each sequence is also run alone, unpadded, and asserted to match the padded
run on its real positions within 1e-5.
"""

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    MPNetConfig,
    MPNetForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "families"
LENGTHS = [30, 28, 25, 21, 17, 14, 11, 8, 5, 3, 2, 1]
SEQ = 30
NOISE_STD = 0.1
TOL = 1e-5


def labels(n):
    names = ["negative", "neutral", "positive"] if n == 3 else ["no", "yes"]
    id2label = dict(enumerate(names))
    return {"num_labels": n, "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


FAMILIES = {
    "roberta": dict(
        cls=RobertaForSequenceClassification,
        base="roberta",
        config=RobertaConfig(
            vocab_size=101, hidden_size=36, num_hidden_layers=2, num_attention_heads=3,
            intermediate_size=52, max_position_embeddings=34, type_vocab_size=1,
            pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_act="gelu",
            layer_norm_eps=1e-5, initializer_range=0.2, **labels(3)),
        types="zeros", cls_id=0, sep_id=2, dtype=None, base_file=None,
    ),
    "xlm-roberta": dict(
        cls=XLMRobertaForSequenceClassification,
        base="roberta",
        config=XLMRobertaConfig(
            vocab_size=99, hidden_size=40, num_hidden_layers=2, num_attention_heads=5,
            intermediate_size=56, max_position_embeddings=34, type_vocab_size=1,
            pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_act="gelu_new",
            layer_norm_eps=1e-5, initializer_range=0.2, **labels(2)),
        types="zeros", cls_id=0, sep_id=2, dtype=None, base_file=torch.float16,
    ),
    "distilbert": dict(
        cls=DistilBertForSequenceClassification,
        base="distilbert",
        config=DistilBertConfig(
            vocab_size=103, dim=40, n_layers=2, n_heads=5, hidden_dim=56,
            max_position_embeddings=32, activation="gelu", pad_token_id=0,
            initializer_range=0.2, sinusoidal_pos_embds=False, **labels(3)),
        types=None, cls_id=2, sep_id=3, dtype=None, base_file=None,
    ),
    "mpnet": dict(
        cls=MPNetForSequenceClassification,
        base="mpnet",
        config=MPNetConfig(
            vocab_size=101, hidden_size=36, num_hidden_layers=2, num_attention_heads=3,
            intermediate_size=52, max_position_embeddings=34, pad_token_id=1,
            bos_token_id=0, eos_token_id=2, relative_attention_num_buckets=32,
            hidden_act="gelu", layer_norm_eps=1e-5, initializer_range=0.2, **labels(2)),
        types=None, cls_id=0, sep_id=2, dtype=torch.bfloat16, base_file=torch.float32,
    ),
    "electra": dict(
        cls=ElectraForSequenceClassification,
        base="electra",
        config=ElectraConfig(
            vocab_size=97, embedding_size=24, hidden_size=40, num_hidden_layers=2,
            num_attention_heads=5, intermediate_size=56, max_position_embeddings=32,
            type_vocab_size=2, pad_token_id=0, hidden_act="gelu", layer_norm_eps=1e-12,
            initializer_range=0.2, **labels(3)),
        types="halves", cls_id=2, sep_id=3, dtype=None, base_file=None,
    ),
}


def make_model(f):
    torch.manual_seed(0)
    config = f["config"]
    config._attn_implementation = "eager"
    config.architectures = [f["cls"].__name__]
    model = f["cls"](config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * NOISE_STD)
        # Half-precision checkpoints: round every value once, so the f32 reference holds
        # exactly what the half file holds.
        rounding = f["dtype"] or (f["base_file"] if f["base_file"] != torch.float32 else None)
        if rounding is not None:
            for p in model.parameters():
                p.copy_(p.to(rounding).float())
    return config, model


def make_inputs(f, vocab, pad):
    g = torch.Generator().manual_seed(1)
    n = len(LENGTHS)
    ids = torch.full((n, SEQ), pad, dtype=torch.int64)
    mask = torch.zeros((n, SEQ), dtype=torch.int64)
    types = torch.zeros((n, SEQ), dtype=torch.int64)
    for i, length in enumerate(LENGTHS):
        row = torch.randint(3, vocab, (length,), generator=g)
        row[row == pad] = 3
        ids[i, :length] = row
        ids[i, 0] = f["cls_id"]
        if length >= 2:
            ids[i, length - 1] = f["sep_id"]
        mask[i, :length] = 1
        if f["types"] == "halves":
            types[i, (length + 1) // 2:length] = 1
    assert not (ids[mask.bool()] == pad).any()
    return ids, mask, types


def outputs(model, base_name, ids, mask, types):
    kw = {} if types is None else {"token_type_ids": types}
    base = getattr(model, base_name)
    hidden = base(input_ids=ids, attention_mask=mask, **kw).last_hidden_state
    logits = model(input_ids=ids, attention_mask=mask, **kw).logits
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return {
        "last_hidden_state": hidden.float().contiguous(),
        "mean_pooled": ((hidden * m).sum(1) / m.sum(1)).float().contiguous(),
        "cls": hidden[:, 0].float().contiguous(),
        "logits": logits.float().contiguous(),
    }


def main():
    for name, f in FAMILIES.items():
        print(f"== {name}")
        config, model = make_model(f)
        pad = config.pad_token_id
        ids, mask, types = make_inputs(f, config.vocab_size, pad)
        types_in = None if f["types"] is None else types
        with torch.no_grad():
            ref = outputs(model, f["base"], ids, mask, types_in)
            base = getattr(model, f["base"])
            worst = 0.0
            for i, length in enumerate(LENGTHS):
                kw = {} if types_in is None else {"token_type_ids": types_in[i:i + 1, :length]}
                alone = base(input_ids=ids[i:i + 1, :length],
                             attention_mask=torch.ones((1, length), dtype=torch.int64), **kw)
                d = (alone.last_hidden_state[0] - ref["last_hidden_state"][i, :length]).abs().max()
                worst = max(worst, d.item())
            assert worst <= TOL, f"{name}: unpadded vs padded differ by {worst}"
            print(f"unpadded vs padded: max diff {worst:.3g}")
            qd = torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, dtype=torch.qint8)
            qref = outputs(qd, f["base"], ids, mask, types_in)

        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in sorted(model.state_dict().items())}
        dtype = f["dtype"] or torch.float32
        save_file({k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()},
                  str(d / "model.safetensors"))
        if f["base_file"] is not None:
            prefix = f["base"] + "."
            base_state = {k[len(prefix):]: v.to(f["base_file"]) for k, v in state.items()
                          if k.startswith(prefix) and v.is_floating_point()}
            save_file(base_state, str(d / "base.safetensors"))
        (d / "config.json").write_text(config.to_json_string(), encoding="utf-8")
        io = {"input_ids": ids, "attention_mask": mask}
        if types_in is not None:
            io["token_type_ids"] = types
        io.update(ref)
        io.update({f"qd_{k}": v for k, v in qref.items()})
        if name == "mpnet":
            io["buckets"] = MPNetEncoder.relative_position_bucket(torch.arange(-600, 601))
        save_file(io, str(d / "io.safetensors"))
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
        print(f"model_type {cfg['model_type']}, architectures {cfg.get('architectures')}")
        for k, v in state.items():
            print(f"  {k:60s} {str(list(v.shape)):10s}")
        for file in sorted(d.iterdir()):
            print(f"{file.relative_to(ROOT)}: {file.stat().st_size} bytes")


if __name__ == "__main__":
    main()
