#!/usr/bin/env bash
# The first minutes on a GPU machine: is the CUDA build right, and how fast is it? Prints one JSON
# line per figure (`facelens check-device`): CUDA vs CPU embeddings of aligned faces (min cosine),
# FGGB maps of the CUDA engine vs the CPU engine (Pearson r), FGGB seconds per pair, embedding
# images/s at batch 1, 32 and 256, and decoder training images/s of experiments/decoder-train/
# gpu.toml over 60 s. Under 5 minutes on an H100/H200.
#
#   ./gpu-check.sh                  # in the unpacked dist/facelens-cuda (scripts/build-cuda.sh)
#   bash scripts/gpu-check.sh --cpu # here: the same checks with the device engine on the CPU
#
# Options: --cpu, --model M (default w600k_mbf; --cpu: sface, whose 128 Jacobian rows keep FGGB
# on candle's CPU convolutions to a minute), --pairs N (FGGB pairs; default 3, --cpu 1),
# --train-seconds S (default 60, --cpu 5; --cpu times experiments/decoder-train/ci.toml's small
# decoder), --throughput-seconds S (default 3, --cpu 1); --cpu measures batches 1 and 32 only
# (batch 256 through candle's CPU convolutions needs more memory than a CI machine has).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE=cuda PAIRS=3 TRAIN=60 THROUGHPUT=3 MODEL=w600k_mbf TRAIN_CONFIG=gpu.toml BATCHES=1,32,256
while (($#)); do
    case "$1" in
        --cpu) DEVICE=cpu PAIRS=1 TRAIN=5 THROUGHPUT=1 MODEL=sface TRAIN_CONFIG=ci.toml BATCHES=1,32 ;;
        --model) MODEL="$2"; shift ;;
        --pairs) PAIRS="$2"; shift ;;
        --train-seconds) TRAIN="$2"; shift ;;
        --throughput-seconds) THROUGHPUT="$2"; shift ;;
        *) echo "usage: $0 [--cpu] [--model M] [--pairs N] [--train-seconds S] [--throughput-seconds S]" >&2; exit 2 ;;
    esac
    shift
done

if [[ -x "$HERE/run" ]]; then
    # The tarball: binaries, checkpoints and faces beside this script.
    FACELENS=("$HERE/run" facelens)
    export FACELENS_CHECKPOINTS="$HERE/checkpoints"
    FACES="$HERE/faces.safetensors"
    CONFIG="$HERE/decoder-train.toml"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
            | sed 's/^\(.*\), \(.*\), \(.*\)$/{"check": "gpu", "name": "\1", "driver": "\2", "memory": "\3"}/'
    fi
else
    # The repository: the release build of scripts/setup.sh, or the cargo target folder.
    ROOT="$(cd "$HERE/.." && pwd)"
    BIN="$ROOT/bin/facelens"
    [[ -x "$BIN" ]] || BIN="${CARGO_TARGET_DIR:-$HOME/.cache/facelens-target}/release/facelens"
    [[ -x "$BIN" ]] || { echo "gpu-check: no facelens binary (run scripts/setup.sh)" >&2; exit 1; }
    FACELENS=("$BIN")
    FACES="$ROOT/../shared/models/w600k_mbf.reference.safetensors"
    CONFIG="$ROOT/experiments/decoder-train/$TRAIN_CONFIG"
fi
[[ -f "$FACES" ]] || { echo "gpu-check: faces not found at $FACES" >&2; exit 1; }

t0=$(date +%s)
"${FACELENS[@]}" check-device --device "$DEVICE" --model "$MODEL" --faces "$FACES" --train-config "$CONFIG" \
    --pairs "$PAIRS" --train-seconds "$TRAIN" --throughput-seconds "$THROUGHPUT" --batches "$BATCHES"
echo "{\"check\": \"done\", \"device\": \"$DEVICE\", \"seconds\": $(( $(date +%s) - t0 ))}"
