#!/usr/bin/env bash
# Create (if missing) the Python venv used by the facelens reference benchmarks:
# CPU-only PyTorch, onnx, onnxruntime, numpy, safetensors, pillow. Idempotent.
# Venv location: ${FACELENS_BENCH_VENV:-$HOME/.cache/facelens-bench-venv}. Prints the venv python path last.
set -euo pipefail
VENV="${FACELENS_BENCH_VENV:-$HOME/.cache/facelens-bench-venv}"
PY="${PYTHON:-python3}"
PKGS=(numpy onnx onnxruntime safetensors pillow)

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv at $VENV" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
fi

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    # The CPU wheel index is preferred (small download); fall back to PyPI's default wheel.
    "$VENV/bin/python" -m pip install --quiet --retries 0 --timeout 10 torch \
        --index-url https://download.pytorch.org/whl/cpu >&2 2>/dev/null \
        || "$VENV/bin/python" -m pip install --quiet torch >&2
fi
if ! "$VENV/bin/python" -c "import numpy, onnx, onnxruntime, safetensors, PIL" 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet "${PKGS[@]}" >&2
fi
"$VENV/bin/python" -c "import torch, onnxruntime; print('torch', torch.__version__, '| onnxruntime', onnxruntime.__version__)" >&2
echo "$VENV/bin/python"
