"""Train the bidirectional LSTM used by the `vowels` example (Japanese Vowels).

Run from the repository root:

    target/pyenv/bin/python scripts/train_vowels.py

(`scripts/setup_pyenv.sh` creates that virtualenv with torch, numpy,
safetensors and scikit-learn.)

Data: the Japanese Vowels speaker-recognition set (UCI, CC BY 4.0; Kudo,
Toyama and Shimbo 1999) as bundled, in the UEA/UCR `.ts` format, in the PyPI
wheel `sktime==1.2.0` (sktime/datasets/data/JapaneseVowels/). If
target/pydownloads/ does not hold that wheel, this script runs
`pip download sktime==1.2.0 --no-deps` into it (PyPI only; sktime is not
installed) and reads the two `.ts` files straight out of the zip, checking
their sha256. 270 training and 370 test utterances of 7-29 frames x 12 LPC
cepstrum coefficients; the label is one of 9 speakers.

Model: inputs standardized with per-coefficient mean/std of the training
frames, `nn.LSTM(12, 32, bidirectional=True, batch_first=True)`, then
`nn.Linear(64, 9)` on cat(h_n[0], h_n[1]) = [forward h after the last frame,
backward h after the first frame]. Evaluation runs each utterance alone,
unpadded, exactly as the Rust example does.

Writes into examples/vowels/:

* vowels.safetensors -- float32: rnn.weight_ih_l0 [128,12],
  rnn.weight_hh_l0 [128,32], rnn.bias_ih_l0 [128], rnn.bias_hh_l0 [128],
  the same four with `_reverse`, head.weight [9,64], head.bias [9],
  norm.mean [12], norm.std [12]
* test.safetensors -- the test set: frames F32 [total_frames,12] (raw, not
  standardized; utterances one after the other), lengths I32 [370] (frames
  per utterance), labels I32 [370] (speaker - 1), fp32_logits F32 [370,9]
  (PyTorch FP32 logits of the saved model)
* pytorch_reference.json -- test accuracy of the FP32 model and of PyTorch
  `quantize_dynamic({nn.LSTM, nn.Linear}, qint8)`, the mean relative L2
  error of those INT8 logits vs the FP32 ones, and n_test

vowels.toml, head.toml and DATA.md in that folder are written by hand, not by
this script. Seeds are fixed and torch runs on one thread, so reruns give the
same outputs on the same torch build.
"""

import hashlib
import io
import json
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "examples" / "vowels"
DOWNLOADS = ROOT / "target" / "pydownloads"

WHEEL = "sktime-1.2.0-py3-none-any.whl"
TS_DIR = "sktime/datasets/data/JapaneseVowels/"
TS_SHA256 = {
    "JapaneseVowels_TRAIN.ts": "68a430eabd919cc77f40b1f5f3bc0dcafacc1486bca9260785aeb7d262cc78cd",
    "JapaneseVowels_TEST.ts": "b3d41d6a0ca3bcad3afb9ca7d4365382aa51341e2e58bae2a574babdda5b9462",
}

N_FEATURES = 12
HIDDEN = 32
N_CLASSES = 9
EPOCHS = 150
BATCH = 30
LR = 5e-3


def wheel_path() -> Path:
    path = DOWNLOADS / WHEEL
    if not path.is_file():
        print(f"{path} missing; pip download sktime==1.2.0 --no-deps")
        DOWNLOADS.mkdir(parents=True, exist_ok=True)
        subprocess.check_call(
            [sys.executable, "-m", "pip", "download", "sktime==1.2.0",
             "--no-deps", "--only-binary=:all:", "-d", str(DOWNLOADS)]
        )
    return path


def read_ts(text: str):
    """Parse a multivariate, unequal-length `.ts` file into ([T,12] arrays, labels 0..8)."""
    seqs, labels = [], []
    in_data = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if line.lower() == "@data":
                in_data = True
            continue
        *dims, label = line.split(":")
        assert len(dims) == N_FEATURES, len(dims)
        cols = [np.array([float(v) for v in d.split(",")]) for d in dims]
        assert len({len(c) for c in cols}) == 1
        seqs.append(np.stack(cols, axis=1).astype(np.float32))  # [T, 12]
        labels.append(int(label) - 1)
    return seqs, np.array(labels, dtype=np.int64)


def load_split(zf: zipfile.ZipFile, name: str):
    raw = zf.read(TS_DIR + name)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != TS_SHA256[name]:
        sys.exit(f"{name}: sha256 {digest}, expected {TS_SHA256[name]}")
    return read_ts(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8").read())


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x):
        return (x - self.mean) / self.std


class VowelsNet(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.norm = Normalize(mean, std)
        self.rnn = nn.LSTM(
            input_size=N_FEATURES, hidden_size=HIDDEN, num_layers=1,
            bidirectional=True, batch_first=True,
        )
        self.head = nn.Linear(2 * HIDDEN, N_CLASSES)

    def forward_one(self, x):
        """One unpadded utterance [T,12] (raw) -> logits [9]; what Rust does."""
        _, (h_n, _) = self.rnn(self.norm(x).unsqueeze(0))  # h_n [2,1,32]
        return self.head(torch.cat([h_n[0], h_n[1]], dim=1))[0]

    def forward_batch(self, padded, lengths):
        """Padded batch [B,Tmax,12] (raw) + lengths -> logits [B,9] (training)."""
        packed = pack_padded_sequence(
            self.norm(padded), lengths, batch_first=True, enforce_sorted=False
        )
        _, (h_n, _) = self.rnn(packed)  # [2,B,32], in the original batch order
        return self.head(torch.cat([h_n[0], h_n[1]], dim=1))


def logits_one_by_one(model, seqs):
    with torch.no_grad():
        return torch.stack([model.forward_one(torch.from_numpy(s)) for s in seqs])


def accuracy(logits, labels):
    return (logits.argmax(dim=1) == torch.from_numpy(labels)).float().mean().item()


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    torch.use_deterministic_algorithms(True)
    # quantize_dynamic still works in torch 2.x; silence its deprecation notices.
    warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated")
    warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated")

    with zipfile.ZipFile(wheel_path()) as zf:
        x_train, y_train = load_split(zf, "JapaneseVowels_TRAIN.ts")
        x_test, y_test = load_split(zf, "JapaneseVowels_TEST.ts")
    assert (len(x_train), len(x_test)) == (270, 370)
    lens = [len(s) for s in x_train + x_test]
    print(f"train {len(x_train)}, test {len(x_test)} utterances; "
          f"frames per utterance {min(lens)}-{max(lens)}")

    frames = np.concatenate(x_train)
    mean = torch.from_numpy(frames.mean(axis=0).astype(np.float32))
    std = torch.from_numpy(frames.std(axis=0).astype(np.float32))

    model = VowelsNet(mean, std)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    train_t = [torch.from_numpy(s) for s in x_train]
    ytrain_t = torch.from_numpy(y_train)

    start = time.time()
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(train_t), generator=gen)
        total = 0.0
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            batch = [train_t[j] for j in idx]
            lengths = torch.tensor([len(s) for s in batch])
            opt.zero_grad()
            loss = loss_fn(model.forward_batch(pad_sequence(batch, batch_first=True), lengths),
                           ytrain_t[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % 25 == 0:
            model.eval()
            acc = accuracy(logits_one_by_one(model, x_test), y_test)
            print(f"epoch {epoch + 1:4d}  loss {total / len(train_t):.4f}  test acc {acc:.4f}")
    train_s = time.time() - start
    model.eval()

    # The padded/packed training path and the one-by-one path must agree.
    test_t = [torch.from_numpy(s) for s in x_test]
    fp32 = logits_one_by_one(model, x_test)
    with torch.no_grad():
        packed = model.forward_batch(
            pad_sequence(test_t, batch_first=True), torch.tensor([len(s) for s in test_t])
        )
    assert torch.allclose(packed, fp32, atol=1e-5), (packed - fp32).abs().max()

    qmodel = torch.ao.quantization.quantize_dynamic(
        model, {nn.LSTM, nn.Linear}, dtype=torch.qint8
    )
    int8 = logits_one_by_one(qmodel, x_test)
    rel = ((int8 - fp32).norm(dim=1) / fp32.norm(dim=1)).mean().item()
    fp32_acc = accuracy(fp32, y_test)
    int8_acc = accuracy(int8, y_test)

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: t.detach().to(torch.float32).contiguous().clone()
        for name, t in sorted(model.state_dict().items())
    }
    expected = sorted(
        [f"rnn.{k}_l0{s}" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
         for s in ("", "_reverse")]
        + ["head.weight", "head.bias", "norm.mean", "norm.std"]
    )
    assert sorted(tensors) == expected, sorted(tensors)
    save_file(tensors, str(OUT_DIR / "vowels.safetensors"))

    save_file(
        {
            "frames": torch.from_numpy(np.concatenate(x_test)).contiguous(),
            "lengths": torch.tensor([len(s) for s in x_test], dtype=torch.int32),
            "labels": torch.from_numpy(y_test.astype(np.int32)),
            "fp32_logits": fp32.contiguous(),
        },
        str(OUT_DIR / "test.safetensors"),
    )

    reference = {
        "fp32_accuracy": round(fp32_acc, 6),
        "int8_accuracy": round(int8_acc, 6),
        "int8_logit_rel_l2_mean": round(rel, 6),
        "n_test": len(x_test),
    }
    (OUT_DIR / "pytorch_reference.json").write_text(json.dumps(reference, indent=2) + "\n")

    print(f"torch {torch.__version__}")
    print(f"training time: {train_s:.1f} s ({EPOCHS} epochs, 1 thread)")
    print(f"fp32 test accuracy:                  {fp32_acc:.4f}")
    print(f"torch dynamic int8 test accuracy:    {int8_acc:.4f}")
    print(f"int8 logits, mean relative L2 error: {rel:.4f}")
    for name in ("vowels.safetensors", "test.safetensors", "pytorch_reference.json"):
        print(f"{OUT_DIR / name}: {(OUT_DIR / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
