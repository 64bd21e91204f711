#!/usr/bin/env bash
# Round-trip check of facelens-board's TensorBoard writer against the real
# TensorBoard reader.
#
# 1. Ensures a Python venv with `tensorboard` + `pillow` exists at
#    ${FACELENS_PY_VENV:-$HOME/.cache/facelens-venv} (created on first use).
# 2. Runs the facelens-board tests with FACELENS_PYTHON pointing at it, the
#    ignored TensorBoard readback test (tests/readback.rs) included.
#
# Usage: scripts/check-tensorboard.sh [--venv-only]
set -euo pipefail

VENV="${FACELENS_PY_VENV:-$HOME/.cache/facelens-venv}"
PY="$VENV/bin/python"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! "$PY" -c 'import tensorboard, PIL' >/dev/null 2>&1; then
    echo "check-tensorboard: creating venv at $VENV"
    python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet tensorboard pillow
fi
"$PY" -c 'import tensorboard, PIL; print("check-tensorboard: tensorboard", tensorboard.__version__, "pillow", PIL.__version__)'

if [[ "${1:-}" == "--venv-only" ]]; then
    exit 0
fi

cd "$ROOT"
FACELENS_PYTHON="$PY" \
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/facelens-target}" \
    cargo test --release -p facelens-board -- --include-ignored --nocapture
