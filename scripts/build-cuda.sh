#!/usr/bin/env bash
# Builds facelens with the `cuda` feature on a machine without a GPU or a system CUDA, and packs a
# tarball for a GPU machine that has the NVIDIA driver but no Rust toolchain and no network.
#
#   bash scripts/build-cuda.sh           # toolkit (cached), release build, dist/facelens-cuda.tar.xz
#   bash scripts/build-cuda.sh --check   # toolkit (cached), `cargo check --features cuda` only (CI)
#
# The CUDA 13.0 toolchain comes from PyPI wheels (nvcc, headers, runtime and cuBLAS/cuRAND link
# libraries; ~1 GB, cached under $FACELENS_CUDA_CACHE, default ~/.cache/facelens-cuda). 13.0 is
# pinned because driver 580 runs CUDA 13.0 and PTX from a newer nvcc would not load there. The
# wheels carry no libcuda (the driver's library), so linking uses a stub generated from cuda.h;
# the real one comes from the GPU machine's driver. Kernels are built for compute capability 9.0
# (H100/H200; CUDA_COMPUTE_CAP overrides). candle-kernels' build script runs nvcc even for
# `cargo check` (about 9 minutes on 2 cores the first time; the target folder caches it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FACELENS_CUDA_CACHE:-$HOME/.cache/facelens-cuda}"
VENV="$CACHE/venv"
R="$CACHE/cuda-home"
export CARGO_TARGET_DIR="${FACELENS_CUDA_TARGET:-$HOME/.cache/facelens-target-cuda}"
MODE=build
case "${1:-}" in
    --check) MODE=check ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
PACKAGES=(facelens-cli xfv-benchmark decoder-train)
t0=$(date +%s)

# 1. The toolchain, once.
CU13="$VENV/lib/python3.11/site-packages/nvidia/cu13"
if [[ ! -x "$CU13/bin/nvcc" ]]; then
    echo "build-cuda: installing the CUDA 13.0 toolchain wheels into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 \
        nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 nvidia-curand==10.4.0.35 \
        'nvidia-cublas>=13.0,<13.1'
fi
CU13="$(cd "$("$VENV/bin/python" -c 'import nvidia, os; print(list(nvidia.__path__)[0])')/cu13" && pwd)"

# 2. A CUDA_HOME laid out as cudarc and candle-kernels expect: unversioned library links and a
#    link-time stub of libcuda (never shipped).
if [[ ! -f "$R/lib/stubs/libcuda.so" ]]; then
    mkdir -p "$R/lib/stubs"
    ln -sfn "$CU13/bin" "$R/bin"; ln -sfn "$CU13/include" "$R/include"; ln -sfn "$CU13/nvvm" "$R/nvvm"
    for l in "$CU13"/lib/*.so.*; do ln -sf "$l" "$R/lib/"; done
    (cd "$R/lib" && for n in cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13 cudart.so.13; do ln -sf "lib$n" "lib${n%.*}"; done)
    gcc -E -P -I"$CU13/include" "$CU13/include/cuda.h" | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d ' (' \
        | sort -u | sed 's/.*/void &(void){}/' > "$CACHE/cuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$R/lib/stubs/libcuda.so" "$CACHE/cuda_stub.c"
fi
export CUDA_HOME="$R" NVCC="$R/bin/nvcc" PATH="$R/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" CUDARC_CUDA_VERSION=13000
NVCC_VERSION="$("$NVCC" --version | grep -o 'release [0-9.]*' | cut -d' ' -f2)"
echo "build-cuda: nvcc $NVCC_VERSION, compute capability $CUDA_COMPUTE_CAP, target $CARGO_TARGET_DIR"

cd "$ROOT"
FEATURES=$(printf '%s/cuda,' "${PACKAGES[@]}"); FEATURES=${FEATURES%,}
PKG_ARGS=(); for p in "${PACKAGES[@]}"; do PKG_ARGS+=(-p "$p"); done
if [[ $MODE == check ]]; then
    cargo check --release "${PKG_ARGS[@]}" --features "$FEATURES"
    echo "build-cuda: cargo check --features cuda passed in $(( $(date +%s) - t0 )) s"
    exit 0
fi
cargo build --release "${PKG_ARGS[@]}" --features "$FEATURES"
echo "build-cuda: built in $(( $(date +%s) - t0 )) s"

# 3. The tarball: stripped binaries, libcudart (0.7 MB), the GPU check, and a runner that finds
#    cuBLAS/cuRAND in the GPU machine's Python `nvidia` wheels (too large to carry: ~700 MB).
DIST="$ROOT/dist/facelens-cuda"
rm -rf "$DIST"; mkdir -p "$DIST/bin" "$DIST/lib"
for b in facelens xfv-benchmark decoder-train; do
    strip -o "$DIST/bin/$b" "$CARGO_TARGET_DIR/release/$b"
done
cp -L "$CU13/lib/libcudart.so.13" "$DIST/lib/"
cp "$ROOT/scripts/gpu-check.sh" "$DIST/"
# What gpu-check.sh needs there: the default model (fetched by scripts/setup.sh; not in git), the
# reference faces of ../shared and the GPU decoder config. Carried to the machine, never committed.
mkdir -p "$DIST/checkpoints"
for f in MANIFEST.toml w600k_mbf.safetensors; do
    [[ -f "$ROOT/checkpoints/$f" ]] || { echo "build-cuda: checkpoints/$f missing (run scripts/setup.sh)" >&2; exit 1; }
    cp "$ROOT/checkpoints/$f" "$DIST/checkpoints/"
done
FACES="$ROOT/../shared/models/w600k_mbf.reference.safetensors"
[[ -f "$FACES" ]] || { echo "build-cuda: $FACES missing (../shared)" >&2; exit 1; }
cp "$FACES" "$DIST/faces.safetensors"
cp "$ROOT/experiments/decoder-train/gpu.toml" "$DIST/decoder-train.toml"
cat > "$DIST/run" <<'EOF'
#!/usr/bin/env bash
# Runs a bundled binary with the CUDA libraries it needs: libcuda from the driver, libcudart
# from lib/, cuBLAS and cuRAND from the Python `nvidia` wheels of this machine (PyTorch's).
#   ./run facelens embed ... --device cuda
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NV="$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null || true)"
export LD_LIBRARY_PATH="$HERE/lib${NV:+:$NV/cu13/lib:$NV/cublas/lib:$NV/curand/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
BIN="$1"; shift
exec "$HERE/bin/$BIN" "$@"
EOF
chmod +x "$DIST/run"
tar -C "$ROOT/dist" -cJf "$ROOT/dist/facelens-cuda.tar.xz" facelens-cuda
SIZE=$(stat -c %s "$ROOT/dist/facelens-cuda.tar.xz")
echo "build-cuda: dist/facelens-cuda.tar.xz $((SIZE / 1024 / 1024)) MiB (nvcc $NVCC_VERSION, $(( $(date +%s) - t0 )) s in all)"
if (( SIZE > 64 * 1024 * 1024 )); then
    echo "build-cuda: the tarball is over 64 MiB" >&2
    exit 1
fi
