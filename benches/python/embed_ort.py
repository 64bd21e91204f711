"""CPU embedding throughput: onnxruntime and PyTorch, on w600k_mbf (mbf_torch.py) or SFace (sface_torch.py).

For each batch size (default 1 and 32) runs a few warm-up batches, then --repeats timed forward passes
(random input; inference only, no preprocessing) and prints one JSON line per impl and batch:
  {"model":m,"impl":"onnxruntime"|"onnxruntime-float"|"pytorch","threads":t,"batch":b,"images_per_s":x,"ms_per_batch":y}
SFace is timed in onnxruntime twice: on the int8 block-quantised file as shipped ("onnxruntime") and with
its weights dequantised once ("onnxruntime-float"); PyTorch runs the float weights of --safetensors.
where ms_per_batch is the median over repeats. Threads: onnxruntime intra_op_num_threads (inter_op 1),
torch.set_num_threads. loadavg_1min is reported because other processes on the machine skew timings.

    python embed_ort.py --onnx w600k_mbf.onnx [--threads 2] [--batches 1 32] [--repeats 20]
    python embed_ort.py --model sface --onnx face_recognition_sface_2021dec_int8bq.onnx --safetensors sface.safetensors
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort
import torch

from mbf_torch import OnnxMobileFaceNet
from sface_torch import SFaceTorch, float_onnx, shipped_onnx


def bench(fn, x, warmup, repeats, seconds):
    """Median time of up to `repeats` runs, stopping after `seconds` once 3 have run."""
    for _ in range(warmup):
        fn(x)
    ts = []
    start = time.perf_counter()
    while len(ts) < repeats and (len(ts) < 3 or time.perf_counter() - start < seconds):
        t0 = time.perf_counter()
        fn(x)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--model", choices=["w600k_mbf", "sface"], default="w600k_mbf")
    ap.add_argument("--safetensors", help="SFace: facelens' checkpoint, the weights PyTorch runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0, help="time budget per impl and batch (at least 3 runs)")
    args = ap.parse_args()

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # the graph declares batch 1 on its output; ORT warns on every batch-32 run
    torch.set_num_threads(args.threads)

    def session(graph):
        sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})

    if args.model == "sface":
        if not args.safetensors:
            ap.error("--model sface needs --safetensors")
        model = SFaceTorch(args.safetensors)
        graphs = [("onnxruntime", shipped_onnx(args.onnx)), ("onnxruntime-float", float_onnx(args.onnx))]
        # The ONNX graph takes raw pixels and normalises inside; the torch module takes normalised input.
        to_onnx, to_torch = (lambda x: x * 127.5 + 127.5), (lambda x: torch.from_numpy(x * 127.5 / 128.0))
    else:
        model = OnnxMobileFaceNet(args.onnx)
        graphs = [("onnxruntime", args.onnx)]
        to_onnx, to_torch = (lambda x: x), torch.from_numpy

    def run_torch(x):
        with torch.inference_mode():
            return model(x)

    impls = [(name, session(g), to_onnx, ort.__version__) for name, g in graphs]
    impls.append(("pytorch", run_torch, to_torch, torch.__version__))
    rng = np.random.default_rng(0)
    for b in args.batches:
        x = rng.uniform(-1, 1, (b, 3, 112, 112)).astype(np.float32)
        for impl, fn, conv, ver in impls:
            s = bench(fn, conv(x), min(args.warmup, max(1, 64 // b)), args.repeats, args.seconds)
            print(json.dumps({"model": args.model, "impl": impl, "version": ver, "threads": args.threads, "batch": b,
                              "images_per_s": round(b / s, 2), "ms_per_batch": round(1000 * s, 3),
                              "loadavg_1min": os.getloadavg()[0]}),
                  flush=True)


if __name__ == "__main__":
    main()
