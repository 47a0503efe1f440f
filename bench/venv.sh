# Sourced by bench/peers.sh and bench/corpus.sh (after they set ROOT): where their outputs go
# and the Python environment both use. `ensure_venv` needs the caller's `step` and `die`.

OUT="$ROOT/target/bench"
VENV="$OUT/venv"
PY="$VENV/bin/python"

# Makes $VENV (plain `python3 -m venv`) and installs the peers' packages unless they import.
ensure_venv() {
    step "Python env: $VENV"
    local pkgs=(onnxruntime torch transformers onnx safetensors numpy matplotlib tokenizers scipy)
    if [ ! -x "$PY" ]; then
        command -v python3 >/dev/null || die "python3 not found"
        python3 -m venv "$VENV" || die "python3 -m venv failed"
    fi
    if "$PY" -c 'import onnxruntime, torch, transformers, onnx, safetensors, numpy, matplotlib, tokenizers, scipy' 2>/dev/null; then
        echo "already installed: ${pkgs[*]}"
    else
        echo "installing ${pkgs[*]} (torch pulls about 3 GB of CUDA wheels; log: $OUT/pip-install.log)"
        "$PY" -m pip install "${pkgs[@]}" >"$OUT/pip-install.log" 2>&1 \
            || { tail -20 "$OUT/pip-install.log" >&2; die "pip install failed (log: $OUT/pip-install.log)"; }
    fi
    "$PY" -c 'import onnxruntime as o, torch as t, transformers as tr; print(f"onnxruntime {o.__version__}, torch {t.__version__}, transformers {tr.__version__}")'
}
