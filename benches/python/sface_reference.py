"""Reference embeddings of SFace (OpenCV zoo, int8 block-quantised ONNX) from onnxruntime.

Writes crates/facelens-models/tests/fixtures/sface_synthetic.json: the raw 128-D outputs for four
synthetic 112x112 RGB images defined by an integer formula (the Rust test rebuilds them), so the
parity test needs neither face data nor onnxruntime. With --crops, also prints the parity of facelens
embeddings (a safetensors file from `facelens embed`) against onnxruntime on real aligned crops.

    python sface_reference.py --onnx checkpoints/face_recognition_sface_2021dec_int8bq.onnx --out FIXTURE
"""
import argparse
import json

import numpy as np
import onnx
import onnxruntime as ort


def synthetic(k):
    """Image k, HWC uint8: pixel = (7x + 13y + 50c + 5 * ((x*y) mod 23) + 31k) mod 256."""
    y, x, c = np.meshgrid(np.arange(112), np.arange(112), np.arange(3), indexing="ij")
    return ((7 * x + 13 * y + 50 * c + 5 * ((x * y) % 23) + 31 * k) % 256).astype(np.uint8)


def embed(sess, hwc_batch):
    x = np.ascontiguousarray(hwc_batch.transpose(0, 3, 1, 2).astype(np.float32))
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    # The released graph still lists its float weights (and input scaling) as graph inputs, though
    # nothing reads them any more; onnxruntime would demand them. Keep only the image input.
    model = onnx.load(a.onnx)
    keep = [i for i in model.graph.input if i.name == "data"]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    imgs = np.stack([synthetic(k) for k in range(4)])
    emb = np.concatenate([embed(sess, imgs[i : i + 1]) for i in range(4)])
    with open(a.out, "w") as f:
        json.dump({"formula": synthetic.__doc__, "onnxruntime": ort.__version__, "embeddings": emb.tolist()}, f)
    print(f"wrote {a.out}: {emb.shape}, |e| {np.linalg.norm(emb, axis=1)}")


if __name__ == "__main__":
    main()
