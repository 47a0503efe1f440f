#!/usr/bin/env python3
"""How many weight pairs break the AVX2 pair bound |w0| + |w1| <= 128.

Without the sign trick, the AVX2 kernel could multiply unsigned activations (0..255) by signed
weights with `vpmaddubsw`, whose 16-bit pair sums cannot saturate only if every adjacent pair
of quantized weights (inputs 2p and 2p+1 of one output channel) has |w0| + |w1| <= 128
(255 * 128 = 32640 <= 32767). This script quantizes each 2-D weight matrix of a safetensors
file as dynq does (symmetric INT8 per output channel, scale = absmax / 127, round half away
from zero) and counts the pairs that break that bound.

    target/bench/venv/bin/python bench/pair_bound.py [models/minilm/model.safetensors]

(needs numpy and safetensors; `bench/peers.sh` makes that virtualenv).
"""
import sys

import numpy as np
from safetensors.numpy import load_file


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "models/minilm/model.safetensors"
    tensors = load_file(path)
    total = broken = matrices = with_broken = 0
    for name, w in sorted(tensors.items()):
        if w.ndim != 2 or "embeddings" in name:
            continue  # embedding tables are looked up, not multiplied
        w = w.astype(np.float32)
        absmax = np.abs(w).max(axis=1, keepdims=True)
        scale = np.where(absmax > 0, absmax / 127.0, 1.0)
        x = w / scale
        q = np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), -127, 127).astype(np.int32)
        if q.shape[1] % 2:
            q = np.pad(q, ((0, 0), (0, 1)))  # the packer pads K with zeros
        pairs = np.abs(q[:, 0::2]) + np.abs(q[:, 1::2])
        bad = int((pairs > 128).sum())
        print(f"{name} {tuple(w.shape)}: {bad} of {pairs.size} pairs above 128 "
              f"({bad / pairs.size:.2%}), largest {int(pairs.max())}")
        total += pairs.size
        broken += bad
        matrices += 1
        with_broken += bad > 0
    print(f"{path}: {broken} of {total} pairs above 128 ({broken / max(total, 1):.2%}); "
          f"{with_broken} of {matrices} matrices have at least one")


if __name__ == "__main__":
    main()
