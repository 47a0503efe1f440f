"""FP32 and PyTorch-INT8 reference STS embeddings for all-mpnet-base-v2.

Run from the repository root, after scripts/fetch_mpnet.py:

    target/pyenv/bin/python scripts/mpnet_reference.py
    target/pyenv/bin/python scripts/mpnet_reference.py --limit 50   # quick run

Options: --model DIR (default target/all-mpnet-base-v2), --sts PATH (default
../shared/data/sts-test.tsv relative to the repository root, lines
`score<TAB>sentence1<TAB>sentence2`), --out DIR (default target/mpnet-sts),
--limit N (only the first N pairs), --batch B (default 32), --threads T
(torch threads, default 2). Needs torch, transformers, tokenizers, scipy and
safetensors; reads local files only (it sets HF_HUB_OFFLINE=1 and
TRANSFORMERS_OFFLINE=1, so the hub is never contacted).

Sentences: every distinct sentence of the STS file, row by row, sentence1
then sentence2, deduplicated keeping the first occurrence.

Tokenizer: the model folder's tokenizer.json loaded with
`tokenizers.Tokenizer.from_file`. The shipped tokenizer.json turns on padding
and truncation to 128 tokens; this script calls `no_padding()` and
`enable_truncation(max_seq_length)` with max_seq_length from
sentence_bert_config.json (384), which is how sentence-transformers runs the
model. The encoding is lower-cased, accent-stripped WordPiece wrapped as
`<s> ... </s>` (ids 0 and 2; <pad> is 1). The ids are checked to be equal
to those of transformers' `AutoTokenizer` on the same folder with
`truncation=True, max_length=max_seq_length`.

Model: transformers' `MPNetModel` (eval mode, so no dropout), FP32, from
the local folder. Note that MPNet, like RoBERTa, derives absolute position
ids from the input ids: position = 2 + index for tokens that are not <pad>
(id 1), and 1 for <pad>; the relative attention bias uses plain indices.
Sentences are run in batches of 32, sorted by token count (so padding is
small), right-padded with <pad> and an attention mask. Embedding of a
sentence: mean of last_hidden_state over its unmasked tokens (<s> and </s>
included), then L2-normalized (the Pooling and Normalize modules of the
sentence-transformers folder).

The same is then done with PyTorch's dynamic INT8 quantization of that
model, `torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
dtype=torch.qint8)` (default qconfig: per-tensor weights; default quantized
engine, x86 on this kind of machine, which quantizes activations to 7 bits).

Writes into the output folder (default target/mpnet-sts/):

* sentences.txt -- the N distinct sentences, one per line (UTF-8, "\\n").
* fp32.safetensors -- `embeddings` F32 [N,768] (the FP32 reference, in
  sentences.txt order), `input_ids` I64 [total tokens] (the token ids of all
  sentences concatenated, exactly as fed to the model, <s> and </s>
  included, no padding) and `offsets` I64 [N+1] (sentence i is
  input_ids[offsets[i]:offsets[i+1]]).
* sentences.jsonl -- one line per sentence, `{"input_ids": [...]}`, the
  same ids.
* summary.json -- the printed numbers.

It prints the number of pairs and distinct sentences, the token counts, the
STS Spearman rank correlation x100 (cosine of the pair embeddings vs the
gold score, scipy.stats.spearmanr) for FP32 and for PyTorch INT8, and the
cosine between each sentence's PyTorch INT8 and FP32 embeddings (mean and
worst over the sentences).
"""

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoTokenizer, MPNetModel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "target" / "all-mpnet-base-v2"
STS_TSV = ROOT.parent / "shared" / "data" / "sts-test.tsv"
OUT_DIR = ROOT / "target" / "mpnet-sts"
PAD_ID = 1


def resolve(path: Path) -> Path:
    return path if path.is_absolute() else Path.cwd() / path


def read_sts(path: Path, limit):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            score, s1, s2 = line.split("\t")
            rows.append((float(score), s1, s2))
    return rows[:limit] if limit is not None else rows


def write_lines(path: Path, lines):
    for s in lines:
        assert "\n" not in s and "\r" not in s and s == s.strip(), repr(s)
    path.write_text("".join(s + "\n" for s in lines), encoding="utf-8")


def tokenize(src: Path, sentences):
    st_config = json.loads((src / "sentence_bert_config.json").read_text(encoding="utf-8"))
    max_len = int(st_config["max_seq_length"])
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_len)
    ids = [tok.encode(s).ids for s in sentences]

    # Cross-check against transformers' tokenizer for the same folder.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    for s, i in zip(sentences, ids):
        a = auto(s, truncation=True, max_length=max_len)["input_ids"]
        if list(a) != i:
            sys.exit(f"tokenizers and AutoTokenizer disagree on {s!r}:\n  {i}\n  {list(a)}")
        assert i[0] == 0 and i[-1] == 2 and PAD_ID not in i, i
    return ids, max_len


def embed(model, ids, batch):
    """L2-normalized mean-pooled embeddings, in the order of `ids`."""
    order = sorted(range(len(ids)), key=lambda k: (-len(ids[k]), k))
    out = torch.empty(len(ids), model.config.hidden_size, dtype=torch.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch):
            chunk = order[start:start + batch]
            width = max(len(ids[k]) for k in chunk)
            input_ids = torch.full((len(chunk), width), PAD_ID, dtype=torch.int64)
            mask = torch.zeros((len(chunk), width), dtype=torch.int64)
            for r, k in enumerate(chunk):
                input_ids[r, :len(ids[k])] = torch.tensor(ids[k])
                mask[r, :len(ids[k])] = 1
            h = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
            e = torch.nn.functional.normalize(e, p=2, dim=1)
            out[chunk] = e.float()
    return out


def spearman_x100(emb, rows, index):
    from scipy.stats import spearmanr

    a = emb[[index[s1] for _, s1, _ in rows]]
    b = emb[[index[s2] for _, _, s2 in rows]]
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    gold = [r[0] for r in rows]
    return 100 * float(spearmanr(cos.numpy(), gold).statistic)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=MODEL_DIR, metavar="DIR",
                    help="sentence-transformers folder (default target/all-mpnet-base-v2)")
    ap.add_argument("--sts", type=Path, default=STS_TSV, metavar="PATH",
                    help="score<TAB>sentence1<TAB>sentence2 file (default ../shared/data/sts-test.tsv)")
    ap.add_argument("--out", type=Path, default=OUT_DIR, metavar="DIR",
                    help="output folder (default target/mpnet-sts)")
    ap.add_argument("--limit", type=int, metavar="N", help="only the first N pairs")
    ap.add_argument("--batch", type=int, default=32, metavar="B", help="batch size (default 32)")
    ap.add_argument("--threads", type=int, default=2, metavar="T", help="torch threads (default 2)")
    args = ap.parse_args()

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    src, sts, out = resolve(args.model), resolve(args.sts), resolve(args.out)
    if not (src / "model.safetensors").is_file():
        sys.exit(f"no model.safetensors under {src}; run scripts/fetch_mpnet.py first")

    rows = read_sts(sts, args.limit)
    index = {}
    for _, s1, s2 in rows:
        for s in (s1, s2):
            index.setdefault(s, len(index))
    sentences = list(index)
    print(f"{sts}: {len(rows)} pairs, {len(sentences)} distinct sentences")

    ids, max_len = tokenize(src, sentences)
    lengths = torch.tensor([len(i) for i in ids], dtype=torch.int64)
    n_trunc = int((lengths == max_len).sum())
    print(f"tokens per sentence (<s>, </s> included): min {int(lengths.min())}, "
          f"mean {lengths.float().mean():.2f}, max {int(lengths.max())}; "
          f"{n_trunc} truncated to {max_len}; tokenizers == AutoTokenizer on all")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MPNetModel.from_pretrained(str(src), local_files_only=True).eval()
    assert not model.training
    print(f"MPNetModel: {model.config.num_hidden_layers} layers, hidden "
          f"{model.config.hidden_size}, {model.config.num_attention_heads} heads, "
          f"vocab {model.config.vocab_size}; torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {torch.get_num_threads()} threads")

    t0 = time.perf_counter()
    emb = embed(model, ids, args.batch)
    t_fp32 = time.perf_counter() - t0
    print(f"FP32 embeddings {list(emb.shape)} in {t_fp32:.1f} s")

    from torch.ao.quantization import quantize_dynamic

    engine = torch.backends.quantized.engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qmodel = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        t0 = time.perf_counter()
        qemb = embed(qmodel, ids, args.batch)
        t_int8 = time.perf_counter() - t0
    print(f"PyTorch INT8 ({engine} engine) embeddings in {t_int8:.1f} s")

    # Write the outputs.
    out.mkdir(parents=True, exist_ok=True)
    write_lines(out / "sentences.txt", sentences)
    flat = torch.tensor([t for i in ids for t in i], dtype=torch.int64)
    offsets = torch.zeros(len(ids) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    tensors = {"embeddings": emb.contiguous(), "input_ids": flat, "offsets": offsets}
    save_file(tensors, str(out / "fp32.safetensors"))
    with open(out / "sentences.jsonl", "w", encoding="utf-8") as f:
        for i in ids:
            f.write(json.dumps({"input_ids": i}) + "\n")

    back = load_file(str(out / "fp32.safetensors"))
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    assert (out / "sentences.txt").read_text(encoding="utf-8").split("\n")[:-1] == sentences

    # The numbers.
    rho_fp32 = spearman_x100(emb, rows, index)
    rho_int8 = spearman_x100(qemb, rows, index)
    cos = (qemb * emb).sum(1) / (qemb.norm(dim=1) * emb.norm(dim=1))
    worst = int(cos.argmin())
    summary = {
        "model": "sentence-transformers/all-mpnet-base-v2",
        "sts": str(sts),
        "pairs": len(rows),
        "sentences": len(sentences),
        "tokens": {"min": int(lengths.min()), "mean": round(float(lengths.float().mean()), 4),
                   "max": int(lengths.max()), "total": int(lengths.sum()),
                   "max_seq_length": max_len, "truncated": n_trunc},
        "fp32_spearman_x100": round(rho_fp32, 4),
        "torch_int8_spearman_x100": round(rho_int8, 4),
        "torch_int8_vs_fp32_cosine_mean": round(float(cos.mean()), 6),
        "torch_int8_vs_fp32_cosine_worst": round(float(cos.min()), 6),
        "torch_int8_vs_fp32_cosine_worst_sentence": worst,
        "torch_int8": "quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8), "
                      f"engine {engine}",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "seconds": {"fp32": round(t_fp32, 1), "torch_int8": round(t_int8, 1),
                    "total": round(time.perf_counter() - t_start, 1)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    print(f"\nSTS Spearman x100 over {len(rows)} pairs:")
    print(f"  FP32:          {rho_fp32:.2f}")
    print(f"  PyTorch INT8:  {rho_int8:.2f}")
    print(f"PyTorch INT8 vs FP32 cosine over {len(sentences)} sentences: "
          f"mean {cos.mean():.5f}, worst {cos.min():.5f} (sentence {worst}: "
          f"{sentences[worst][:60]!r})")
    for f in sorted(out.iterdir()):
        print(f"{f}: {f.stat().st_size} bytes")
    print(f"total {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
