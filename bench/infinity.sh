#!/usr/bin/env bash
# infinity-emb 0.0.78 (PyPI) serving all-MiniLM-L6-v2 on CPU: the serving peer of bench/serve.sh.
#
#   bench/infinity.sh setup   # virtualenv + model folder; idempotent, reruns do nothing
#   bench/infinity.sh serve   # infinity_emb v2 in the foreground (exec; SIGTERM stops it)
#
# setup, each step skipped when its output exists:
# 1. target/bench/infinity-venv (`python3 -m venv`): pip install infinity-emb[optimum,server,torch]
#    ==0.0.78 with pinned transformers 4.57 (it needs <5), optimum 2.1 / optimum-onnx 0.1,
#    onnxruntime, torch, click <8.2 (torch pulls about 3 GB of CUDA wheels)
# 2. $MODEL_DIR (target/bench/minilm-st): a sentence-transformers folder made of models/minilm's
#    files (f16 safetensors, tokenizer) and the metadata this script writes (mean pooling, Normalize,
#    max_seq_length 256)
# 3. $MODEL_DIR/model.onnx: `optimum-cli export onnx` of that folder (feature-extraction,
#    library transformers, fp32, opset 18: output last_hidden_state, which infinity pools), then
#    onnxruntime.transformers.optimizer (bert, 12 heads, 384, opt_level 1): the fused graph
# serve env: PORT (7997), THREADS (2: cores 0..THREADS-1 via taskset, OMP/MKL threads),
#   ENGINE (optimum|torch; optimum), BATCH (32), MODEL_DIR (target/bench/minilm-st),
#   NAME (served model name; minilm), URL_PREFIX (none; e.g. /v1)
# Routes: POST /embeddings, GET /models, GET /health, on 127.0.0.1 only.
# See bench/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/bench"
IVENV="$OUT/infinity-venv"
MINILM="$ROOT/models/minilm"
MODEL_DIR=${MODEL_DIR:-$OUT/minilm-st}

step() { echo; echo "== $*"; }
die() { echo "infinity.sh: $*" >&2; exit 1; }

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 INFINITY_ANONYMOUS_USAGE_STATS=0
export HF_HOME=${HF_HOME:-$OUT/infinity-hf-home}

# infinity-emb 0.0.78 starts only with transformers<5, sentence-transformers<4, click<8.2; the
# other pins are the versions measured (optimum-onnx 0.1 needs transformers<4.58).
PIP_PKGS=(
    "infinity-emb[optimum,server,torch]==0.0.78"
    transformers==4.57.6 tokenizers==0.22.2 sentence-transformers==3.4.1
    optimum==2.1.0 optimum-onnx==0.1.0 onnxruntime==1.32.0 onnx==1.23.2
    torch==2.15.0 numpy==1.26.4 huggingface_hub==0.36.2 click==8.1.8
)

# put FILE: writes stdin, without its final newline (as the model repository's JSON files end),
# to FILE unless FILE already holds exactly that.
put() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    printf '%s' "$(cat)" >"$tmp"
    if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; return; fi
    chmod 644 "$tmp"
    mv "$tmp" "$1"
    echo "wrote $1"
}

setup_venv() {
    step "infinity-emb virtualenv: $IVENV"
    if [ -x "$IVENV/bin/infinity_emb" ]; then
        echo "already installed: $("$IVENV/bin/pip" show infinity-emb 2>/dev/null | sed -n 's/^Version: /infinity-emb /p')"
        return
    fi
    mkdir -p "$OUT"
    if [ ! -x "$IVENV/bin/python" ]; then
        command -v python3 >/dev/null || die "python3 not found"
        python3 -m venv "$IVENV" || die "python3 -m venv failed"
    fi
    echo "installing ${PIP_PKGS[*]} (about 3 GB; log: $OUT/infinity-pip.log)"
    "$IVENV/bin/python" -m pip install "${PIP_PKGS[@]}" >"$OUT/infinity-pip.log" 2>&1 \
        || { tail -20 "$OUT/infinity-pip.log" >&2; die "pip install failed (log: $OUT/infinity-pip.log)"; }
    [ -x "$IVENV/bin/infinity_emb" ] || die "$IVENV/bin/infinity_emb missing after pip install"
}

setup_model_dir() {
    step "model folder: $MODEL_DIR"
    mkdir -p "$MODEL_DIR/1_Pooling" "$MODEL_DIR/2_Normalize"
    local f
    for f in config.json model.safetensors tokenizer.json vocab.txt LICENSE; do
        [ -f "$MINILM/$f" ] || die "$MINILM/$f missing"
        if [ -f "$MODEL_DIR/$f" ] && cmp -s "$MINILM/$f" "$MODEL_DIR/$f"; then continue; fi
        cp "$MINILM/$f" "$MODEL_DIR/$f"
        echo "copied models/minilm/$f"
    done
    # The sentence-transformers metadata of all-MiniLM-L6-v2 (models/minilm ships without it).
    put "$MODEL_DIR/modules.json" <<'EOF'
[
  {
    "idx": 0,
    "name": "0",
    "path": "",
    "type": "sentence_transformers.models.Transformer"
  },
  {
    "idx": 1,
    "name": "1",
    "path": "1_Pooling",
    "type": "sentence_transformers.models.Pooling"
  },
  {
    "idx": 2,
    "name": "2",
    "path": "2_Normalize",
    "type": "sentence_transformers.models.Normalize"
  }
]
EOF
    put "$MODEL_DIR/1_Pooling/config.json" <<'EOF'
{
  "word_embedding_dimension": 384,
  "pooling_mode_cls_token": false,
  "pooling_mode_mean_tokens": true,
  "pooling_mode_max_tokens": false,
  "pooling_mode_mean_sqrt_len_tokens": false
}
EOF
    put "$MODEL_DIR/sentence_bert_config.json" <<'EOF'
{
  "max_seq_length": 256,
  "do_lower_case": false
}
EOF
    put "$MODEL_DIR/config_sentence_transformers.json" <<'EOF'
{
  "__version__": {
    "sentence_transformers": "2.0.0",
    "transformers": "4.6.1",
    "pytorch": "1.8.1"
  }
}
EOF
    echo '{"do_lower_case": true, "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]", "tokenize_chinese_chars": true, "strip_accents": null, "name_or_path": "nreimers/MiniLM-L6-H384-uncased", "do_basic_tokenize": true, "never_split": null, "tokenizer_class": "BertTokenizer", "model_max_length": 512}' \
        | put "$MODEL_DIR/tokenizer_config.json"
    echo '{"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}' \
        | put "$MODEL_DIR/special_tokens_map.json"
}

setup_onnx() {
    step "ONNX graph: $MODEL_DIR/model.onnx"
    if [ -f "$MODEL_DIR/model.onnx" ]; then echo "exists, reusing it"; return; fi
    # infinity's optimum engine takes whichever *.onnx it finds in the folder (a name with
    # "quantize" first on CPU) and pools last_hidden_state itself; bench/export_onnx.py's graphs
    # end in the pooled embedding and do not fit. --library-name transformers: otherwise optimum
    # sees modules.json and exports sentence-transformers' outputs instead.
    local tmp
    tmp=$(mktemp -d "$OUT/infinity-export.XXXXXX")
    trap "rm -rf '$tmp'" EXIT
    "$IVENV/bin/optimum-cli" export onnx --model "$MODEL_DIR" --task feature-extraction \
        --library-name transformers --dtype fp32 "$tmp/plain" >"$tmp/export.log" 2>&1 \
        || { tail -20 "$tmp/export.log" >&2; die "optimum-cli export onnx failed"; }
    # opt_level 1: ONNX Runtime's basic graph optimizations, then the transformer fusions.
    # infinity's own optimization (--onnx-disable-optimize in serve) crashes with optimum 2.x.
    "$IVENV/bin/python" - "$tmp/plain/model.onnx" "$tmp/model.onnx" <<'EOF' || die "ONNX optimization failed"
import sys
from onnxruntime.transformers import optimizer
m = optimizer.optimize_model(sys.argv[1], model_type="bert", num_heads=12, hidden_size=384,
                             opt_level=1, use_gpu=False)
stats = {k: v for k, v in m.get_fused_operator_statistics().items() if v}
print(f"fused ops: {stats}")
if not stats.get("Attention"):
    print("WARNING: no Attention fused", file=sys.stderr)
m.save_model_to_file(sys.argv[2])
EOF
    mv "$tmp/model.onnx" "$MODEL_DIR/model.onnx"
    echo "wrote $MODEL_DIR/model.onnx ($(stat -c %s "$MODEL_DIR/model.onnx") bytes)"
}

serve() {
    PORT=${PORT:-7997}; THREADS=${THREADS:-2}; ENGINE=${ENGINE:-optimum}; BATCH=${BATCH:-32}
    NAME=${NAME:-minilm}; URL_PREFIX=${URL_PREFIX:-}
    [ -x "$IVENV/bin/infinity_emb" ] || die "$IVENV/bin/infinity_emb missing: run bench/infinity.sh setup"
    [ -d "$MODEL_DIR" ] || die "$MODEL_DIR missing: run bench/infinity.sh setup"
    # torch intra-op (OpenMP/MKL) and numpy's BLAS threads; ONNX Runtime's own pool is capped by
    # taskset below.
    export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
    local extra=()
    if [ "$ENGINE" = optimum ]; then
        # --pooling-method mean: "auto" means CLS pooling in the optimum engine (wrong for MiniLM).
        # --onnx-disable-optimize: infinity's own ORT optimization crashes with optimum 2.x
        #   (falls back to the unoptimized graph); model.onnx here is already fused.
        extra+=(--pooling-method mean --onnx-disable-optimize)
    else
        extra+=(--no-compile --no-bettertransformer)
    fi
    [ -n "$URL_PREFIX" ] && extra+=(--url-prefix "$URL_PREFIX")
    # infinity passes the ONNX path it globbed as `file_name`; optimum-onnx only matches bare file
    # names, so the model must be given as "." from inside its folder, with model.onnx at the top.
    cd "$MODEL_DIR"
    exec taskset -c "0-$((THREADS - 1))" "$IVENV/bin/infinity_emb" v2 \
        --model-id . --served-model-name "$NAME" --engine "$ENGINE" --device cpu \
        --batch-size "$BATCH" --host 127.0.0.1 --port "$PORT" --no-vector-disk-cache \
        --log-level warning "${extra[@]}"
}

case "${1:-}" in
    setup) setup_venv; setup_model_dir; setup_onnx ;;
    serve) serve ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) echo "usage: bench/infinity.sh setup|serve (see --help)" >&2; exit 2 ;;
esac
