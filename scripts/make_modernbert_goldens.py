"""Make tiny random ModernBERT checkpoints and their PyTorch outputs.

Run from the repository root (`scripts/setup_pyenv.sh` makes the virtualenv):

    target/pyenv/bin/python scripts/make_modernbert_goldens.py

Nothing is downloaded. Each model is `ModernBertForSequenceClassification` built from a
config after torch.manual_seed(0), initializer_range 0.2 (attention far from uniform), every
LayerNorm weight and bias given N(0, 0.1^2) noise, in eval mode, eager attention. Two
checkpoints, with odd sizes and short windows so that the test lengths run past them:

| name            | hidden | heads x d | GeGLU | layers (global)  | window | biases | pooling | acts                    |
|-----------------|--------|-----------|-------|------------------|--------|--------|---------|-------------------------|
| modernbert      | 36     | 3 x 12    | 52    | 4 (0, 3)         | 16 (8 each way) | none | mean | gelu, head gelu |
| modernbert-bias | 40     | 5 x 8     | 44    | 3 (0, 2)         | 10 (5 each way) | all  | cls  | gelu_pytorch_tanh, head gelu_new |

modernbert saves the config as transformers 5 writes it (`layer_types`, `rope_parameters`),
modernbert-bias in the older spelling (`global_attn_every_n_layers`, `global_rope_theta`,
`local_rope_theta`), as checkpoints on the Hub have it.

Writes tests/golden/modernbert/<name>/{model.safetensors, config.json, io.safetensors}.
io.safetensors holds a padded batch of sequences of true lengths 90, 70, 41, 17, 9, 3, 1
(padded to 90 with the pad id, which never occurs among the real tokens):

* `input_ids`, `attention_mask` I64 [7,90];
* `last_hidden_state` F32 [7,90,H] of the base model (compare real positions only),
  `mean_pooled`, `cls` F32 [7,H], `logits` F32 [7,labels];
* `qd_*`: the same from PyTorch's `quantize_dynamic` (every nn.Linear, qint8);
* `inv_freq_global`, `inv_freq_local`: the rotary inverse frequencies transformers uses.

Each sequence is also run alone, unpadded, and asserted to match the padded run on its real
positions within 1e-5.
"""

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import ModernBertConfig, ModernBertForSequenceClassification  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "modernbert"
LENGTHS = [90, 70, 41, 17, 9, 3, 1]
SEQ = 90
NOISE_STD = 0.1
TOL = 1e-5
CLS, SEP, PAD = 2, 3, 1


def labels(n):
    names = ["negative", "neutral", "positive"] if n == 3 else ["no", "yes"]
    id2label = dict(enumerate(names))
    return {"num_labels": n, "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


MODELS = {
    "modernbert": dict(
        config=dict(
            vocab_size=101, hidden_size=36, num_hidden_layers=4, num_attention_heads=3,
            intermediate_size=52, max_position_embeddings=256, local_attention=16,
            global_attn_every_n_layers=3, global_rope_theta=160000.0, local_rope_theta=10000.0,
            hidden_activation="gelu", classifier_activation="gelu", classifier_pooling="mean",
            pad_token_id=PAD, bos_token_id=CLS, cls_token_id=CLS, eos_token_id=SEP,
            sep_token_id=SEP, norm_eps=1e-5, initializer_range=0.2, **labels(3)),
        legacy=False,
    ),
    "modernbert-bias": dict(
        config=dict(
            vocab_size=97, hidden_size=40, num_hidden_layers=3, num_attention_heads=5,
            intermediate_size=44, max_position_embeddings=128, local_attention=10,
            global_attn_every_n_layers=2, global_rope_theta=80000.0, local_rope_theta=5000.0,
            hidden_activation="gelu_pytorch_tanh", classifier_activation="gelu_new",
            classifier_pooling="cls", norm_bias=True, attention_bias=True, mlp_bias=True,
            classifier_bias=True, pad_token_id=PAD, bos_token_id=CLS, cls_token_id=CLS,
            eos_token_id=SEP, sep_token_id=SEP, norm_eps=1e-6, initializer_range=0.2,
            **labels(2)),
        legacy=True,
    ),
}


def make_model(spec):
    torch.manual_seed(0)
    config = ModernBertConfig(**spec["config"])
    config._attn_implementation = "eager"
    config.architectures = ["ModernBertForSequenceClassification"]
    model = ModernBertForSequenceClassification(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * NOISE_STD)
    return config, model


def make_inputs(vocab):
    g = torch.Generator().manual_seed(1)
    n = len(LENGTHS)
    ids = torch.full((n, SEQ), PAD, dtype=torch.int64)
    mask = torch.zeros((n, SEQ), dtype=torch.int64)
    for i, length in enumerate(LENGTHS):
        row = torch.randint(4, vocab, (length,), generator=g)
        ids[i, :length] = row
        ids[i, 0] = CLS
        if length >= 2:
            ids[i, length - 1] = SEP
        mask[i, :length] = 1
    assert not (ids[mask.bool()] == PAD).any()
    return ids, mask


def outputs(model, ids, mask):
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    logits = model(input_ids=ids, attention_mask=mask).logits
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return {
        "last_hidden_state": hidden.float().contiguous(),
        "mean_pooled": ((hidden * m).sum(1) / m.sum(1)).float().contiguous(),
        "cls": hidden[:, 0].float().contiguous(),
        "logits": logits.float().contiguous(),
    }


def legacy_config(config):
    """The config in the spelling of the first ModernBERT release (as Hub checkpoints have it)."""
    d = json.loads(config.to_json_string())
    rope = d.pop("rope_parameters")
    d.pop("layer_types")
    d["global_rope_theta"] = rope["full_attention"]["rope_theta"]
    d["local_rope_theta"] = rope["sliding_attention"]["rope_theta"]
    layers = config.layer_types
    every = next(i for i in range(1, len(layers)) if layers[i] == "full_attention") if layers.count("full_attention") > 1 else len(layers)
    d["global_attn_every_n_layers"] = every
    d["rope_scaling"] = None
    return json.dumps(d, indent=2, sort_keys=True) + "\n"


def main():
    for name, spec in MODELS.items():
        print(f"== {name}")
        config, model = make_model(spec)
        ids, mask = make_inputs(config.vocab_size)
        with torch.no_grad():
            ref = outputs(model, ids, mask)
            worst = 0.0
            for i, length in enumerate(LENGTHS):
                alone = model.model(input_ids=ids[i:i + 1, :length],
                                    attention_mask=torch.ones((1, length), dtype=torch.int64))
                d = (alone.last_hidden_state[0] - ref["last_hidden_state"][i, :length]).abs().max()
                worst = max(worst, d.item())
            assert worst <= TOL, f"{name}: unpadded vs padded differ by {worst}"
            print(f"unpadded vs padded: max diff {worst:.3g}")
            qd = torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, dtype=torch.qint8)
            qref = outputs(qd, ids, mask)
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in sorted(model.state_dict().items())}
        save_file(state, str(d / "model.safetensors"))
        text = legacy_config(config) if spec["legacy"] else config.to_json_string()
        (d / "config.json").write_text(text, encoding="utf-8")
        # The config as written reads back as the model that made the outputs.
        again = ModernBertConfig.from_pretrained(str(d))
        assert again.layer_types == config.layer_types, (again.layer_types, config.layer_types)
        assert again.rope_parameters == config.rope_parameters
        io = {"input_ids": ids, "attention_mask": mask}
        io.update(ref)
        io.update({f"qd_{k}": v for k, v in qref.items()})
        rot = model.model.rotary_emb
        io["inv_freq_global"] = rot.full_attention_inv_freq.float().contiguous()
        io["inv_freq_local"] = rot.sliding_attention_inv_freq.float().contiguous()
        save_file(io, str(d / "io.safetensors"))
        print(f"layer_types {config.layer_types}, rope {config.rope_parameters}")
        for k, v in state.items():
            print(f"  {k:50s} {str(list(v.shape)):10s}")
        for file in sorted(d.iterdir()):
            print(f"{file.relative_to(ROOT)}: {file.stat().st_size} bytes")


if __name__ == "__main__":
    main()
