"""Make a tiny random BERT and its PyTorch outputs, for golden tests.

Run from the repository root:

    target/pyenv/bin/python scripts/make_bert_goldens.py

(`scripts/setup_pyenv.sh` installs torch, safetensors and transformers into
that virtualenv. Nothing is downloaded: the model is built from a config.)

The model is transformers' `BertForSequenceClassification` built from
`BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12, num_labels=3,
initializer_range=0.2)` with id2label {0: "negative", 1: "neutral",
2: "positive"} (label2id to match), initialized after torch.manual_seed(0)
and put in eval mode (no dropout). `hidden_act="gelu"` is the exact erf GELU.
Attention is the eager (textbook softmax) implementation.

initializer_range is 0.2 rather than BERT's default 0.02: with 0.02 and
hidden size 32 the attention scores are all near zero and every attention
row is uniform to within a few percent, so a wrong score scale, a Q/K mix-up
or a bad head split would go unnoticed. With 0.2 the attention weights of
one row range from about 0.001 to 0.8.

After initialization, every LayerNorm weight and bias and every bias of a
Linear layer gets N(0, 0.1^2) noise added, so that LayerNorm gains are not
all 1 and biases not all 0.

Writes into tests/golden/bert/:

* tiny_bert.safetensors -- the model's state_dict in float32, names as
  transformers gives them: `bert.embeddings.word_embeddings.weight`,
  `bert.embeddings.position_embeddings.weight`,
  `bert.embeddings.token_type_embeddings.weight`,
  `bert.embeddings.LayerNorm.{weight,bias}`,
  `bert.encoder.layer.{0,1}.attention.self.{query,key,value}.{weight,bias}`,
  `bert.encoder.layer.{0,1}.attention.output.dense.{weight,bias}`,
  `bert.encoder.layer.{0,1}.attention.output.LayerNorm.{weight,bias}`,
  `bert.encoder.layer.{0,1}.intermediate.dense.{weight,bias}`,
  `bert.encoder.layer.{0,1}.output.dense.{weight,bias}`,
  `bert.encoder.layer.{0,1}.output.LayerNorm.{weight,bias}`,
  `bert.pooler.dense.{weight,bias}`, `classifier.{weight,bias}`
  (Linear weights are [out, in]). `bert.embeddings.position_ids` is kept
  (int64) if the installed transformers puts it in the state dict.
* config.json -- `config.to_json_string()` (includes id2label/label2id).
* tiny_bert_io.safetensors -- a padded batch of 4 sequences of true lengths
  12, 7, 3, 1 (padded to 12) and the model's outputs on it:
    - `input_ids` I64 [4,12]: position 0 is id 2 ("CLS"), the last real token
      is id 3 ("SEP") when the length is at least 2 (the length-1 sequence is
      just [2]), the tokens between are random ids in [1, 100); padding is
      id 0.
    - `attention_mask` I64 [4,12]: 1 on the real tokens, 0 on padding.
    - `token_type_ids` I64 [4,12]: 0 on the first ceil(L/2) real tokens,
      1 on the remaining floor(L/2), 0 on padding (so lengths 12, 7, 3, 1
      have 6, 3, 1, 0 tokens of type 1).
    - `last_hidden_state` F32 [4,12,32]: the base model (`model.bert`) run on
      the padded batch with the mask. Rows at padded positions are whatever
      the model computes there; tests should compare real positions only.
    - `mean_pooled` F32 [4,32]: sum of last_hidden_state over positions with
      mask 1, divided by the number of such positions (not normalized).
    - `cls` F32 [4,32]: last_hidden_state[:, 0].
    - `pooler_output` F32 [4,32]: tanh(pooler.dense(cls)).
    - `logits` F32 [4,3]: classifier(pooler_output).

Each sequence is also run alone, unpadded (its true length, mask all ones),
and its last_hidden_state is asserted to match the first L positions of the
padded run within 1e-5 (the max difference is printed), so tests may feed
sequences unpadded and compare against these outputs.
"""

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "golden" / "bert"

LENGTHS = [12, 7, 3, 1]
SEQ = 12
VOCAB = 100
CLS_ID, SEP_ID, PAD_ID = 2, 3, 0
NOISE_STD = 0.1
TOL = 1e-5


def make_model():
    torch.manual_seed(0)
    id2label = {0: "negative", 1: "neutral", 2: "positive"}
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        initializer_range=0.2,
        num_labels=3,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    config._attn_implementation = "eager"
    model = BertForSequenceClassification(config).eval()

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * NOISE_STD)
    return config, model


def make_inputs():
    g = torch.Generator().manual_seed(1)
    n = len(LENGTHS)
    input_ids = torch.full((n, SEQ), PAD_ID, dtype=torch.int64)
    mask = torch.zeros((n, SEQ), dtype=torch.int64)
    types = torch.zeros((n, SEQ), dtype=torch.int64)
    for i, length in enumerate(LENGTHS):
        input_ids[i, :length] = torch.randint(1, VOCAB, (length,), generator=g)
        input_ids[i, 0] = CLS_ID
        if length >= 2:
            input_ids[i, length - 1] = SEP_ID
        mask[i, :length] = 1
        first = (length + 1) // 2
        types[i, first:length] = 1
    return input_ids, mask, types


def main():
    config, model = make_model()
    input_ids, mask, types = make_inputs()

    with torch.no_grad():
        out = model.bert(input_ids=input_ids, attention_mask=mask, token_type_ids=types)
        hidden = out.last_hidden_state
        pooler = out.pooler_output
        logits = model.classifier(pooler)
        full = model(input_ids=input_ids, attention_mask=mask, token_type_ids=types).logits
        assert torch.equal(full, logits)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        mean_pooled = (hidden * m).sum(1) / m.sum(1)
        cls = hidden[:, 0]

        max_diff = 0.0
        for i, length in enumerate(LENGTHS):
            alone = model.bert(
                input_ids=input_ids[i : i + 1, :length],
                attention_mask=torch.ones((1, length), dtype=torch.int64),
                token_type_ids=types[i : i + 1, :length],
            )
            d = (alone.last_hidden_state[0] - hidden[i, :length]).abs().max().item()
            dp = (alone.pooler_output[0] - pooler[i]).abs().max().item()
            print(f"seq {i} (L={length}): unpadded vs padded max diff "
                  f"last_hidden_state {d:.3g}, pooler_output {dp:.3g}")
            max_diff = max(max_diff, d)
        assert max_diff <= TOL, f"unpadded vs padded differ by {max_diff}"
        print(f"max |unpadded - padded| over real positions: {max_diff:.3g} (<= {TOL})")

        attn = model.bert(
            input_ids=input_ids, attention_mask=mask, token_type_ids=types,
            output_attentions=True,
        ).attentions
        real = mask.bool()[:, None, :, None] & mask.bool()[:, None, None, :]
        vals = torch.cat([a[real.expand_as(a)] for a in attn])
        print(f"attention weights on real tokens: min {vals.min():.3g}, max {vals.max():.3g}")

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in sorted(state.items())}
    save_file(state, str(OUT_DIR / "tiny_bert.safetensors"))
    (OUT_DIR / "config.json").write_text(config.to_json_string(), encoding="utf-8")
    io = {
        "input_ids": input_ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "last_hidden_state": hidden.float().contiguous(),
        "mean_pooled": mean_pooled.float().contiguous(),
        "cls": cls.float().contiguous(),
        "pooler_output": pooler.float().contiguous(),
        "logits": logits.float().contiguous(),
    }
    save_file(io, str(OUT_DIR / "tiny_bert_io.safetensors"))

    # Reload and check.
    w = load_file(str(OUT_DIR / "tiny_bert.safetensors"))
    for k, v in state.items():
        assert torch.equal(w[k], v), k
    back = load_file(str(OUT_DIR / "tiny_bert_io.safetensors"))
    for k, v in io.items():
        assert torch.equal(back[k], v), k
    cfg = json.loads((OUT_DIR / "config.json").read_text(encoding="utf-8"))
    assert cfg["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    fresh = BertForSequenceClassification(BertConfig.from_dict(cfg)).eval()
    fresh.config._attn_implementation = "eager"
    fresh.load_state_dict(w)
    with torch.no_grad():
        again = fresh(input_ids=input_ids, attention_mask=mask, token_type_ids=types).logits
    assert (again - logits).abs().max().item() <= TOL

    print("\ntiny_bert.safetensors:")
    for k, v in state.items():
        print(f"  {k:55s} {str(list(v.shape)):10s} {v.dtype}")
    print("tiny_bert_io.safetensors:")
    for k, v in io.items():
        print(f"  {k:20s} {str(list(v.shape)):12s} {v.dtype}")
    print("input_ids:\n", input_ids)
    print("token_type_ids:\n", types)
    print("logits:\n", logits)
    for f in sorted(OUT_DIR.iterdir()):
        print(f"{f.relative_to(ROOT)}: {f.stat().st_size} bytes")


if __name__ == "__main__":
    main()
