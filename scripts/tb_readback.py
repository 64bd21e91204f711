#!/usr/bin/env python3
"""Read a TensorBoard log directory with TensorBoard's own reader; print JSON.

Used by facelens-board's readback test to prove that the Rust event writer
produces files the real TensorBoard understands (CRCs, protobuf field numbers,
image width/height, plugin metadata).

Usage: tb_readback.py <logdir-or-event-file>

Output (stdout, one JSON object):
  file_version: float (EventAccumulator parses "brain.Event:2" to 2.0)
  scalars:    {tag: [{step, value}]}
  images:     {tag: [{step, width, height, png_width, png_height, mode, pixels_hex}]}
  histograms: {tag: [{step, min, max, num, sum, sum_squares, bucket_limit, bucket}]}
  texts:      {tag: [{step, text}]}
  hparams:    {tag: <HParamsPluginData as JSON dict>}
"""

import io
import json
import sys

from google.protobuf import json_format
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util


def main(path):
    # 0 = keep every event (the default guidance samples images/histograms).
    guidance = {key: 0 for key in ea.DEFAULT_SIZE_GUIDANCE}
    acc = ea.EventAccumulator(path, size_guidance=guidance)
    acc.Reload()
    tags = acc.Tags()

    out = {
        "file_version": acc.file_version,
        "scalars": {},
        "images": {},
        "histograms": {},
        "texts": {},
        "hparams": {},
    }

    for tag in tags.get(ea.SCALARS, []):
        out["scalars"][tag] = [{"step": e.step, "value": e.value} for e in acc.Scalars(tag)]

    for tag in tags.get(ea.IMAGES, []):
        images = []
        for e in acc.Images(tag):
            img = Image.open(io.BytesIO(e.encoded_image_string))
            img.load()
            images.append(
                {
                    "step": e.step,
                    "width": e.width,
                    "height": e.height,
                    "png_width": img.width,
                    "png_height": img.height,
                    "mode": img.mode,
                    "pixels_hex": img.convert("RGB").tobytes().hex(),
                }
            )
        out["images"][tag] = images

    for tag in tags.get(ea.HISTOGRAMS, []):
        out["histograms"][tag] = [
            {
                "step": e.step,
                "min": e.histogram_value.min,
                "max": e.histogram_value.max,
                "num": e.histogram_value.num,
                "sum": e.histogram_value.sum,
                "sum_squares": e.histogram_value.sum_squares,
                "bucket_limit": list(e.histogram_value.bucket_limit),
                "bucket": list(e.histogram_value.bucket),
            }
            for e in acc.Histograms(tag)
        ]

    for tag in tags.get(ea.TENSORS, []):
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        if plugin != "text":
            continue
        texts = []
        for e in acc.Tensors(tag):
            value = tensor_util.make_ndarray(e.tensor_proto)
            item = value.item() if value.shape == () else value.reshape(-1)[0]
            texts.append({"step": e.step, "text": item.decode("utf-8")})
        out["texts"][tag] = texts

    try:
        hparams_content = acc.PluginTagToContent("hparams")
    except KeyError:  # no hparams logged
        hparams_content = {}
    for tag, content in hparams_content.items():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        out["hparams"][tag] = json_format.MessageToDict(data, preserving_proto_field_name=True)

    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        sys.exit(2)
    main(sys.argv[1])
