"""Make the golden MLP data checked by tests/golden_mlp.rs.

Run from the repository root:

    target/pyenv/bin/python scripts/make_goldens.py

(`scripts/setup_pyenv.sh` creates that virtualenv with torch, numpy,
safetensors and scikit-learn.)

Writes into tests/golden/:

* mlp.safetensors    -- float32 weights: net.0.{weight,bias}, net.2.weight
  (no bias), net.4.{weight,bias}, net.6.{weight,bias}
* mlp_io.safetensors -- `input` [16,24], `fp32` [16,7] (float32 PyTorch
  output) and `torch_int8` [16,7] (output of PyTorch dynamic per-channel
  int8 quantization) and `int8_weights_only` [16,7] (the float model with its
  weights rounded the way dynq stores them: symmetric int8 per output channel,
  scale max|w|/127, round half to even; activations left in f32). The last is
  the floor that any scheme with int8 per-channel weights shares, PyTorch's
  included; the tests use it to tell activation error from weight error.
* mlp.toml           -- the dynq model description for these weights

The input rows span magnitudes 1e-3 .. 1e3; row 5 is all zeros and row 9 is
the constant 0.7.
"""

import copy
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "golden"

ROWS = 16
IN = 24

MLP_TOML = """\
# Golden MLP: made by scripts/make_goldens.py (PyTorch), checked by tests/golden_mlp.rs.
[model]
name = "golden_mlp"
preset = "mlp"
weights = "mlp.safetensors"

[mlp]
input_size = 24
layers = [
  { tensor = "net.0", activation = "gelu" },
  { tensor = "net.2", activation = "tanh", bias = false },
  { tensor = "net.4", activation = "sigmoid" },
  { tensor = "net.6", activation = "none" },
]
"""


class GoldenMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(IN, 48),
            nn.GELU(),
            nn.Linear(48, 32, bias=False),
            nn.Tanh(),
            nn.Linear(32, 40),
            nn.Sigmoid(),
            nn.Linear(40, 7),
        )

    def forward(self, x):
        return self.net(x)


def main():
    torch.manual_seed(1234)

    model = GoldenMlp()
    with torch.no_grad():
        model.net[0].weight.mul_(3.0)
    model.eval()

    scales = 10.0 ** torch.linspace(-3.0, 3.0, ROWS)
    inputs = torch.randn(ROWS, IN) * scales[:, None]
    inputs[5] = 0.0
    inputs[9] = 0.7
    inputs = inputs.to(torch.float32).contiguous()

    # quantize_dynamic only swaps *child* modules, so it gets the wrapper.
    qmodel = quantize_dynamic(
        model,
        qconfig_spec={nn.Linear: per_channel_dynamic_qconfig},
        dtype=torch.qint8,
    )
    print(qmodel)
    qlinear = torch.ao.nn.quantized.dynamic.Linear
    for i in (0, 2, 4, 6):
        assert isinstance(qmodel.net[i], qlinear), type(qmodel.net[i])
        assert qmodel.net[i].weight().qscheme() == torch.per_channel_affine
    # The float model must be untouched (quantize_dynamic copies by default).
    assert type(model.net[0]) is nn.Linear

    with torch.no_grad():
        fp32 = model(inputs).to(torch.float32).contiguous()
        torch_int8 = qmodel(inputs).to(torch.float32).contiguous()
        floor_model = copy.deepcopy(model)
        for i in (0, 2, 4, 6):
            w = floor_model.net[i].weight
            scale = w.abs().amax(dim=1, keepdim=True) / 127.0
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            w.copy_(torch.clamp(torch.round(w / scale), -127, 127) * scale)
        weights_only = floor_model(inputs).to(torch.float32).contiguous()

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    weights = {
        name: t.detach().to(torch.float32).contiguous().clone()
        for name, t in sorted(model.state_dict().items())
    }
    assert sorted(weights) == [
        "net.0.bias",
        "net.0.weight",
        "net.2.weight",
        "net.4.bias",
        "net.4.weight",
        "net.6.bias",
        "net.6.weight",
    ], sorted(weights)
    save_file(weights, str(OUT_DIR / "mlp.safetensors"))
    save_file(
        {
            "input": inputs,
            "fp32": fp32,
            "torch_int8": torch_int8,
            "int8_weights_only": weights_only,
        },
        str(OUT_DIR / "mlp_io.safetensors"),
    )
    (OUT_DIR / "mlp.toml").write_text(MLP_TOML)

    print(f"torch {torch.__version__}")
    print("row  max|input|  rel_l2(torch_int8, fp32)")
    for r in range(ROWS):
        denom = fp32[r].norm().item()
        err = (torch_int8[r] - fp32[r]).norm().item()
        rel = err / denom if denom > 0 else float("nan")
        print(f"{r:3d}  {inputs[r].abs().max().item():11.4g}  {rel:.6f}")


if __name__ == "__main__":
    main()
