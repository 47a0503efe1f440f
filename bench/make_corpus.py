"""Make the two corpora of the throughput benchmark (bench/corpus.sh), deterministically.

    python bench/make_corpus.py OUTDIR [--sts FILE]

OUTDIR/short.txt     the unique sentences of the STS test set (../shared/data/sts-test.tsv,
                     `score<TAB>sentence1<TAB>sentence2`): sentence 1 then sentence 2 of each
                     line, in file order, the first occurrence of each kept; one per line
                     (tabs, carriage returns and newlines inside a sentence become spaces, outer
                     whitespace stripped; empty sentences dropped).
OUTDIR/passages.txt  paragraph-length passages: the same sentences, in the same order, joined
                     with a space until the MiniLM tokenizer (models/minilm/tokenizer.json,
                     special tokens included, no truncation) counts at least 150 tokens; a
                     passage never exceeds 250 tokens (a sentence that would push a passage
                     still under 150 past 250 starts a new one, the short start being dropped);
                     the sentences left over at the end (under 150 tokens) are dropped.
Prints the counts and token statistics of both files.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MIN_TOKENS, MAX_TOKENS = 150, 250
STS = common.ROOT.parent / "shared" / "data" / "sts-test.tsv"


def clean(s):
    return " ".join(s.replace("\t", " ").replace("\r", " ").replace("\n", " ").split())


def sentences(path):
    seen, out = set(), []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) < 3:
                raise SystemExit(f"{path}:{n}: expected score<TAB>sentence1<TAB>sentence2")
            # A sentence containing a tab would make more columns: keep everything after the
            # score, sentence 1 being column 2 and sentence 2 the rest.
            for s in (cols[1], "\t".join(cols[2:])):
                s = clean(s)
                if s and s not in seen:
                    seen.add(s)
                    out.append(s)
    return out


def passages(sents, tok):
    """(passages, number of sentences used)."""
    def count(parts):
        return len(tok.encode(" ".join(parts)).ids)

    out, cur, used = [], [], 0
    for s in sents:
        cand = cur + [s]
        n = count(cand)
        if n > MAX_TOKENS and cur:
            # cur is still under MIN_TOKENS (else it would have been closed): drop it and
            # start again at s.
            cand = [s]
            n = count(cand)
        if n > MAX_TOKENS:  # a single sentence over the limit: skipped
            cur = []
        elif n >= MIN_TOKENS:
            out.append(" ".join(cand))
            used += len(cand)
            cur = []
        else:
            cur = cand
    return out, used


def stats(name, lines, tok):
    n = [len(tok.encode(t).ids) for t in lines]
    q = statistics.quantiles(n, n=20) if len(n) > 1 else n * 19
    print(f"{name}: {len(lines)} lines, {sum(n)} tokens (special tokens included); per line "
          f"min {min(n)}, p5 {q[0]:.0f}, median {statistics.median(n):.0f}, mean "
          f"{statistics.mean(n):.1f}, p95 {q[-1]:.0f}, max {max(n)}; over 256: "
          f"{sum(x > 256 for x in n)}")
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--sts", default=str(STS))
    a = ap.parse_args()
    tok = common.tokenizer()  # padding and truncation off
    sents = sentences(a.sts)
    pas, used = passages(sents, tok)
    os.makedirs(a.outdir, exist_ok=True)
    for name, lines in (("short.txt", sents), ("passages.txt", pas)):
        path = os.path.join(a.outdir, name)
        data = "".join(t + "\n" for t in lines)
        try:
            with open(path, encoding="utf-8", newline="") as f:
                same = f.read() == data
        except OSError:
            same = False
        if not same:  # unchanged files keep their mtime (bench/corpus.sh reuses what they made)
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.write(data)
            os.replace(tmp, path)
        n = stats(path, lines, tok)
        if name == "passages.txt" and n and not all(MIN_TOKENS <= x <= MAX_TOKENS for x in n):
            raise SystemExit(f"{path}: a passage outside {MIN_TOKENS}-{MAX_TOKENS} tokens")
    print(f"passages use {used} of the {len(sents)} sentences")


if __name__ == "__main__":
    main()
