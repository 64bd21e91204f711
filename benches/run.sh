#!/usr/bin/env bash
# facelens against the alternatives a researcher would use, on this machine, in one run:
#   * embedding throughput (w600k_mbf and SFace, batch 1, 32 and 256): facelens vs onnxruntime and
#     PyTorch, plus facelens' time per forward step (batch 1)
#   * the perturbation baselines (CorrRISE, LIME, RISE): facelens seconds per pair on 3 pairs
#   * FGGB per pair (512 input-gradient maps per face): facelens vs PyTorch, plus the maps'
#     Pearson correlation and max abs difference
#   * decoder training (width 128, batch 16, identity + pixel loss): facelens' Trainer vs the same
#     decoder and losses in PyTorch (images/s, ms/step and where a step's time goes)
# Usage: benches/run.sh [--threads N] [--pairs K] [--batches 1,32,256] [--rounds R] [--skip-embed] [--skip-fggb] [--skip-decoder]
# Embedding throughput runs R rounds (default 2), each implementation once per round in turn, and
# the table keeps each one's best round: a shared VM's speed drifts by tens of percent within
# minutes, and alternating rounds give every implementation the same chance of a fast phase.
# Needs ../shared/models (ONNX + reference faces); sets up its own Python venv (CPU torch,
# onnxruntime). Prints JSON lines while it runs and a markdown table at the end; everything
# lands in ${BENCH_OUT:-bench-out}/.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2; PAIRS=10; EMBED=1; FGGB=1; DECODER=1; BATCHES=1,32,256; ROUNDS=2
while [ $# -gt 0 ]; do
    case $1 in
        --threads) THREADS=$2; shift 2 ;;
        --pairs) PAIRS=$2; shift 2 ;;
        --batches) BATCHES=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --skip-embed) EMBED=0; shift ;;
        --skip-fggb) FGGB=0; shift ;;
        --skip-decoder) DECODER=0; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
SHARED=${FACELENS_SHARED:-../shared}
ONNX=$SHARED/models/w600k_mbf.onnx
REF=$SHARED/models/w600k_mbf.reference.safetensors
[ -f "$ONNX" ] && [ -f "$REF" ] || { echo "benches/run.sh needs $ONNX and $REF" >&2; exit 1; }
OUT=${BENCH_OUT:-bench-out}; rm -rf "$OUT"; mkdir -p "$OUT"
TAU=${TAU:-0.2151}

PY=$(bash benches/python/setup-venv.sh | tail -1)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p facelens-cli --bin facelens-bench
BENCH=$CARGO_TARGET_DIR/release/facelens-bench
CK=$OUT/w600k_mbf.safetensors
"$CARGO_TARGET_DIR/release/facelens" import onnx "$ONNX" --out "$CK" 2>/dev/null || cargo run --release -q -p facelens-cli --bin facelens -- import onnx "$ONNX" --out "$CK"

# SFace (set up by scripts/setup.sh into checkpoints/): timed when present.
SFACE_ONNX=checkpoints/face_recognition_sface_2021dec_int8bq.onnx
SFACE_CK=checkpoints/sface.safetensors

LOG=$OUT/results.jsonl
echo "{\"machine\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\",\"cores\":$(nproc),\"threads\":$THREADS,\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" | tee "$LOG"
if [ "$EMBED" = 1 ]; then
    read -r -a BATCH_LIST <<< "${BATCHES//,/ }"
    HAVE_SFACE=0
    if [ -f "$SFACE_ONNX" ] && [ -f "$SFACE_CK" ]; then HAVE_SFACE=1; else
        echo "SFace not set up ($SFACE_ONNX, $SFACE_CK): its rows are skipped" >&2; fi
    for _ in $(seq "$ROUNDS"); do
        RAYON_NUM_THREADS=$THREADS "$BENCH" --model "$CK" embed --batch "$BATCHES" --seconds 8 | tee -a "$LOG"
        "$PY" benches/python/embed_ort.py --onnx "$ONNX" --threads "$THREADS" --batches "${BATCH_LIST[@]}" | tee -a "$LOG"
        if [ "$HAVE_SFACE" = 1 ]; then
            RAYON_NUM_THREADS=$THREADS "$BENCH" --model "$SFACE_CK" embed --batch "$BATCHES" --seconds 8 | tee -a "$LOG"
            "$PY" benches/python/embed_ort.py --model sface --onnx "$SFACE_ONNX" --safetensors "$SFACE_CK" --threads "$THREADS" \
                --batches "${BATCH_LIST[@]}" | tee -a "$LOG"
        fi
    done
    RAYON_NUM_THREADS=$THREADS "$BENCH" --model "$CK" layers --batch 1 --repeats 50 > "$OUT/layers-w600k_mbf.jsonl"
    if [ "$HAVE_SFACE" = 1 ]; then
        RAYON_NUM_THREADS=$THREADS "$BENCH" --model "$SFACE_CK" layers --batch 1 --repeats 50 > "$OUT/layers-sface.jsonl"
    fi
fi
if [ "$FGGB" = 1 ]; then
    "$PY" benches/python/fggb_torch.py --from-reference "$REF" --n-pairs "$PAIRS" --out-images "$OUT/pairs" >/dev/null
    RAYON_NUM_THREADS=$THREADS "$BENCH" --model "$CK" fggb --pairs "$OUT/pairs/pairs.txt" --tau "$TAU" --out "$OUT/maps-facelens" | tee -a "$LOG"
    "$PY" benches/python/fggb_torch.py --onnx "$ONNX" --pairs "$OUT/pairs/pairs.txt" --tau "$TAU" --threads "$THREADS" \
        --out "$OUT/maps-pytorch" --time | tee -a "$LOG"
    "$PY" benches/python/compare_maps.py "$OUT/maps-facelens" "$OUT/maps-pytorch" > "$OUT/compare.txt"
    tail -1 "$OUT/compare.txt" | tee -a "$LOG"
    # The perturbation baselines are streams of forward passes: their time follows the forward's.
    RAYON_NUM_THREADS=$THREADS "$BENCH" --model "$CK" methods --pairs "$OUT/pairs/pairs.txt" --tau "$TAU" --limit 3 | tee -a "$LOG"
fi
if [ "$DECODER" = 1 ]; then
    cargo build --release -q -p facelens-recon --example train_bench
    # The default recipe (nearest up-blocks with the binomial output filter, pixel + identity)
    # and the grid-free alternative (bilinear, + feature matching at 0.5), each in both
    # implementations, alternating in rounds (the table keeps each one's best round).
    for _ in $(seq "$ROUNDS"); do
        for cfg in "--block nearest-conv --perceptual 0 --output-blur 0.25" "--block bilinear-conv --perceptual 0.5"; do
            # shellcheck disable=SC2086
            RAYON_NUM_THREADS=$THREADS "$CARGO_TARGET_DIR/release/examples/train_bench" \
                --width 128 --batch 16 --steps 8 $cfg | tee -a "$LOG"
            # shellcheck disable=SC2086
            "$PY" benches/python/decoder_train_torch.py --onnx "$ONNX" --width 128 --batch 16 --steps 8 \
                --threads "$THREADS" $cfg | tee -a "$LOG"
        done
    done
fi
"$PY" - "$LOG" <<'PYEOF' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
meta = rows[0]
print(f"\nCPU: {meta['machine']}, {meta['cores']} cores, {meta['threads']} threads, load average at start {meta.get('loadavg', '?')}\n")
emb = [r for r in rows if "images_per_s" in r and r.get("bench") != "decoder_train"]
# Best round of each implementation at each batch size (see --rounds).
best = {}
for r in emb:
    key = (r.get("model", "w600k_mbf"), r["impl"], r["batch"])
    if key not in best or r["images_per_s"] > best[key]["images_per_s"]:
        best[key] = r
for model in dict.fromkeys(m for m, _, _ in best):
    b0 = min(b for m, _, b in best if m == model)
    rounds = sum(1 for r in emb if r.get("model", "w600k_mbf") == model and r["impl"] == "facelens" and r["batch"] == b0)
    print(f"\n| embedding ({model}), best of {rounds} rounds | batch | images/s | ms/batch | facelens / this |")
    print("|---|---|---|---|---|")
    for b in sorted({b for m, _, b in best if m == model}):
        fl = best.get((model, "facelens", b))
        for (m, impl, bb), r in best.items():
            if m != model or bb != b:
                continue
            ratio = "" if impl == "facelens" or not fl else f"{fl['images_per_s'] / r['images_per_s']:.2f}x"
            print(f"| {impl} | {b} | {r['images_per_s']:.1f} | {r['ms_per_batch']:.1f} | {ratio} |")
fg = [r for r in rows if "seconds_per_pair_median" in r and "forward_images_per_pair" not in r]
if fg:
    print("\n| FGGB (512 maps per face, both faces) | pairs | s/pair (median) | time vs PyTorch |")
    print("|---|---|---|---|")
    torch = next((r for r in fg if r["impl"] == "pytorch"), None)
    for r in fg:
        ratio = r["seconds_per_pair_median"] / torch["seconds_per_pair_median"] if torch else float("nan")
        print(f"| {r['impl']} | {r['pairs']} | {r['seconds_per_pair_median']:.2f} | {ratio:.2f}x |")
cmp = [r for r in rows if "min_pearson" in r]
if cmp:
    c = cmp[-1]
    print(f"\nmaps facelens vs PyTorch: min Pearson {c['min_pearson']:.6f}, max abs diff {c['max_abs_diff']:.3e}")
meth = [r for r in rows if "forward_images_per_pair" in r]
if meth:
    print("\n| perturbation baseline (facelens) | pairs | s/pair (median) | forward images / pair |")
    print("|---|---|---|---|")
    for r in meth:
        print(f"| {r['method']} | {r['pairs']} | {r['seconds_per_pair_median']:.2f} | {r['forward_images_per_pair']:.0f} |")
dec = [r for r in rows if r.get("bench") == "decoder_train"]
if dec:
    print("\n| decoder training | model | width | block | output blur | feature loss | batch | images/s | ms/step "
          "| ms fwd / losses / bwd / rest | facelens/pytorch (images/s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    key = lambda r: (r["width"], r["min_channels"], r["block"], r.get("output_blur", 0.0), r["batch"], r["loss"].get("perceptual", 0.0))
    best = {}
    for r in dec:  # best round of each implementation and recipe
        k = (r["impl"],) + key(r)
        if k not in best or r["images_per_s"] > best[k]["images_per_s"]:
            best[k] = r
    for r in best.values():
        other = best.get(("pytorch",) + key(r))
        ratio = best[("facelens",) + key(r)]["images_per_s"] / other["images_per_s"] if other and ("facelens",) + key(r) in best else float("nan")
        phases = " / ".join(f"{r[k]:.0f}" for k in ("ms_decoder_forward", "ms_losses_forward", "ms_backward", "ms_optimizer_and_rest"))
        print(f"| {r['impl']} | {r['model']} | {r['width']} | {r['block']} | {r.get('output_blur', 0.0)} | {r['loss'].get('perceptual', 0.0)} | {r['batch']} | {r['images_per_s']:.1f} "
              f"| {r['ms_per_step']:.0f} | {phases} | {ratio:.2f}x |")
PYEOF
