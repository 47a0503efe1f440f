"""Compare a dynq binary's embeddings of the STS sentences with the FP32 reference.

Run from the repository root, after scripts/fetch_mpnet.py and scripts/mpnet_reference.py:

    target/pyenv/bin/python scripts/compare_embeddings.py \\
        --reference target/mpnet-sts --embeddings target/mpnet-sts/dynq-int8.jsonl

`--embeddings` is what a standalone binary made by `dynq build` writes for
`<reference>/sentences.jsonl` (one `{"embedding": [...]}` per line, in order).
Prints the cosine of each embedding to the FP32 one (mean, worst and which
sentence) and the STS Spearman correlation x100 of both (cosine of the pair's
embeddings against the gold score, over every pair of the STS file), and
writes them to `<embeddings>.summary.json`.
"""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent.parent


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reference", type=Path, default=ROOT / "target" / "mpnet-sts")
    p.add_argument("--embeddings", type=Path, required=True)
    p.add_argument("--sts", type=Path, default=ROOT.parent / "shared" / "data" / "sts-test.tsv")
    args = p.parse_args()

    ref = load_file(str(args.reference / "fp32.safetensors"))["embeddings"].double()
    sentences = (args.reference / "sentences.txt").read_text(encoding="utf-8").split("\n")
    sentences = sentences[: ref.shape[0]]
    rows = [json.loads(line)["embedding"] for line in args.embeddings.open(encoding="utf-8")]
    if len(rows) != ref.shape[0]:
        raise SystemExit(f"{args.embeddings}: {len(rows)} embeddings, expected {ref.shape[0]}")
    q = torch.tensor(rows, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    ref = ref / ref.norm(dim=1, keepdim=True)
    cos = (q * ref).sum(1)
    index = {s: i for i, s in enumerate(sentences)}
    gold, fp32, test = [], [], []
    for line in args.sts.read_text(encoding="utf-8").splitlines():
        score, a, b = line.split("\t")
        ia, ib = index[a], index[b]
        gold.append(float(score))
        fp32.append(float(ref[ia] @ ref[ib]))
        test.append(float(q[ia] @ q[ib]))
    worst = int(cos.argmin())
    summary = {
        "sentences": ref.shape[0],
        "pairs": len(gold),
        "cosine_mean": round(float(cos.mean()), 5),
        "cosine_worst": round(float(cos.min()), 5),
        "worst_sentence": sentences[worst],
        "spearman_x100_fp32": round(spearmanr(gold, fp32).correlation * 100, 2),
        "spearman_x100_test": round(spearmanr(gold, test).correlation * 100, 2),
    }
    for k, v in summary.items():
        print(f"{k}: {v}")
    out = args.embeddings.parent / (args.embeddings.name + ".summary.json")
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
