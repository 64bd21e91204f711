#!/usr/bin/env bash
# Seed corpora for the fuzz targets, from real files: the sample photos and checkpoints that
# scripts/setup.sh fetches, the committed decoder and configs, and (when present) ../shared.
# Large files are cut to their first 64 KiB: enough for every header, and fast to execute.
# Writes fuzz/corpus/<target>/ (git-ignored); safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
root=..
shared=../../shared
c=corpus
mkdir -p $c/{image_align,checkpoint,onnx,landmarks,pairs,hub_ref,config,records}
# Copy (cut to 64 KiB) when the source exists; missing optional sources are skipped.
head64() { if [ -f "$1" ]; then head -c 65536 "$1" > "$2"; fi; }

# Images: JPEG photos (with EXIF), LFW/UTKFace JPEGs, a PNG, BMP and WebP made from them.
for f in "$root"/checkpoints/samples/*.jpg; do head64 "$f" "$c/image_align/$(basename "$f")"; done
for f in "$shared"/data/lfw/images/Abel_Pacheco/Abel_Pacheco_0001.jpg "$shared"/data/utkface/images/1_0_0_20161219140623097.jpg.chip.jpg; do
  head64 "$f" "$c/image_align/$(basename "$f")"
done
# A PNG (RGB and grey+alpha) and a BMP, written with the standard library only.
python3 - "$c/image_align" <<'PY'
import struct, sys, zlib
out, w, h = sys.argv[1], 48, 40
def png(path, colour, channels):
    raw = b"".join(b"\0" + bytes((x * 5 + y * 3 + k * 40) % 256 for x in range(w) for k in range(channels)) for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
png(out + "/rgb.png", 2, 3)
png(out + "/grey-alpha.png", 4, 2)
pad = b"\0" * (-(3 * w) % 4)
pixels = b"".join(b"".join(bytes(((x * 7) % 256, (y * 5) % 256, 90)) for x in range(w)) + pad for y in range(h))
header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
open(out + "/small.bmp", "wb").write(header + pixels)
PY

# Checkpoints and decoders: safetensors with and without decoder metadata.
for f in "$root"/checkpoints/decoder-w600k_mbf.safetensors "$root"/checkpoints/scrfd_500m_bnkps.safetensors "$root"/checkpoints/w600k_mbf.safetensors; do
  head64 "$f" "$c/checkpoint/$(basename "$f")"
done
# A complete small safetensors file with a decoder header (a tiny config, one tensor).
python3 - "$c/checkpoint/tiny-decoder.safetensors" <<'PY'
import json, struct, sys
meta = {"facelens.recon.decoder": json.dumps({"embedding_dim": 4, "width": 8, "min_channels": 2, "block": "nearest-conv",
        "norm": "batch", "groups": 2, "activation": "prelu", "convs_per_block": 1})}
header = {"__metadata__": meta, "fc.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"\0" * 16)
PY

# ONNX graphs: the three fetched models, cut.
for f in "$root"/checkpoints/*.onnx; do head64 "$f" "$c/onnx/$(basename "$f")"; done

# Landmark CSVs and pair lists.
for d in lfw utkface; do
  if [ -f "$shared/data/$d/landmarks.csv" ]; then head -n 40 "$shared/data/$d/landmarks.csv" > "$c/landmarks/$d.csv"; fi
done
printf 'file,status,score,box_x1,box_y1,box_x2,box_y2,lm0_x,lm0_y,lm1_x,lm1_y,lm2_x,lm2_y,lm3_x,lm3_y,lm4_x,lm4_y\na.jpg,ok,0.9,1,1,100,100,38,51,73,51,56,71,41,92,70,92\nb.jpg,nodet,,,,,,,,,,,,,,,\n' > "$c/landmarks/made.csv"
if [ -f "$shared/data/lfw/pairs.txt" ]; then
  { echo "2	2"; sed -n '2,3p;302,303p;602,603p;902,903p' "$shared/data/lfw/pairs.txt"; } > "$c/pairs/lfw-small.txt"
fi
printf '1\t1\nAbel_Pacheco\t1\t4\nAJ_Lamas\t1\tAbel_Pacheco\t2\n' > "$c/pairs/made.txt"

# hf: references.
i=0
for s in 'hf:org/repo/model.safetensors' 'hf:org/repo@main/sub/dir/w.safetensors' 'hf:org/repo@refs/pr/1/w.safetensors' 'hf:org/repo/../x' 'hf:a/b@c/d'; do
  printf '%s' "$s" > "$c/hub_ref/$i"; i=$((i + 1))
done

# Configs with overrides (NUL-separated after the file).
for f in "$root"/experiments/decoder-train/*.toml; do
  { cat "$f"; printf '\0train.steps=3\0decoder.width=16'; } > "$c/config/$(basename "$f")"
done

# Records: a real shard's records.json when a run exists, plus a small made one.
if [ -d "$root/runs" ]; then
  find "$root"/runs -name records.json -size -64k | head -n 3 | while read -r f; do cp "$f" "$c/records/$(echo "$f" | tr / _)"; done
fi
cat > "$c/records/made.json" <<'JSON'
{"experiment":"xfv-benchmark","config_sha256":"0aac9587","shard":{"index":1,"count":1},"selected":2,
 "models":[{"name":"toy","threshold":0.5,"threshold_source":"test","fill":-1.0,"embedding_dim":4,"weights_sha256":"00"}],
 "rows":[{"method":"fggb","variant":"configured"}],"table3_method":"fggb","steps":[0.0,50.0,100.0],"perturb":"both",
 "records":[
  {"index":0,"line":2,"fold":1,"a":"a0","b":"b0","genuine":true,"skipped":null,"models":[{"clean_score":0.9,"kind":"similarity",
   "rows":[{"method":"fggb","variant":"configured","perturb":"both","deletion":[0.9,0.9,0.1],"insertion":[0.1,0.9,0.9]}]}]},
  {"index":1,"line":3,"fold":1,"a":"a1","b":"b1","genuine":false,"skipped":null,"models":[{"clean_score":0.1,"kind":"dissimilarity",
   "rows":[{"method":"fggb","variant":"configured","perturb":"both","deletion":[0.1,0.9,0.9],"insertion":[0.9,0.9,0.1]}]}]}]}
JSON
for t in $c/*; do echo "$(basename "$t"): $(ls "$t" | wc -l) seeds"; done
