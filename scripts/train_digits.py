"""Train the small MLP used by the `digits` example.

Run from the repository root:

    target/pyenv/bin/python scripts/train_digits.py

(`scripts/setup_pyenv.sh` creates that virtualenv with torch, numpy,
safetensors and scikit-learn.)

Uses scikit-learn's bundled 8x8 digits data set (no download). Writes:

* examples/digits/digits.safetensors -- net.0.weight, net.0.bias,
  net.2.weight, net.2.bias (float32)
* examples/digits/digits_test.csv    -- one test example per line:
  `label,f0,...,f63`, features already scaled by 1/16, no header

Seeds are fixed, so reruns give the same outputs on the same torch build.
"""

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "examples" / "digits"

EPOCHS = 300


class DigitsMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


def main():
    torch.manual_seed(0)
    np.random.seed(0)
    torch.use_deterministic_algorithms(True)

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    xt_train, yt_train = torch.from_numpy(x_train), torch.from_numpy(y_train)
    xt_test, yt_test = torch.from_numpy(x_test), torch.from_numpy(y_test)

    model = DigitsMlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(EPOCHS):
        opt.zero_grad()
        loss = loss_fn(model(xt_train), yt_train)
        loss.backward()
        opt.step()
        if (epoch + 1) % 50 == 0:
            print(f"epoch {epoch + 1:4d}  loss {loss.item():.4f}")
    model.eval()

    f32_acc = accuracy(model, xt_test, yt_test)
    qmodel = torch.ao.quantization.quantize_dynamic(
        model, {nn.Linear}, dtype=torch.qint8
    )
    q_acc = accuracy(qmodel, xt_test, yt_test)

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: t.detach().to(torch.float32).contiguous().clone()
        for name, t in sorted(model.state_dict().items())
    }
    assert sorted(tensors) == [
        "net.0.bias",
        "net.0.weight",
        "net.2.bias",
        "net.2.weight",
    ], sorted(tensors)
    save_file(tensors, str(OUT_DIR / "digits.safetensors"))

    lines = []
    for label, feats in zip(y_test, x_test):
        fields = [str(int(label))] + [format(float(v), ".9g") for v in feats]
        lines.append(",".join(fields))
    (OUT_DIR / "digits_test.csv").write_text("\n".join(lines) + "\n")

    print(f"torch {torch.__version__}")
    print(f"train examples: {len(y_train)}, test examples: {len(y_test)}")
    print(f"f32 test accuracy:                 {f32_acc:.4f}")
    print(f"torch dynamic int8 test accuracy:  {q_acc:.4f}")


if __name__ == "__main__":
    main()
