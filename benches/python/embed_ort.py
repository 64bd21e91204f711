"""CPU embedding throughput of w600k_mbf: onnxruntime and the PyTorch port (mbf_torch.py).

For each batch size (default 1 and 32) runs a few warm-up batches, then --repeats timed forward passes
(random normalised input; inference only, no preprocessing) and prints one JSON line per impl and batch:
  {"impl":"onnxruntime"|"pytorch","threads":t,"batch":b,"images_per_s":x,"ms_per_batch":y}
where ms_per_batch is the median over repeats. Threads: onnxruntime intra_op_num_threads (inter_op 1),
torch.set_num_threads. loadavg_1min is reported because other processes on the machine skew timings.

    python embed_ort.py --onnx w600k_mbf.onnx [--threads 2] [--batches 1 32] [--repeats 20]
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


def bench(fn, x, warmup, repeats):
    for _ in range(warmup):
        fn(x)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # the graph declares batch 1 on its output; ORT warns on every batch-32 run
    sess = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    torch.set_num_threads(args.threads)
    model = OnnxMobileFaceNet(args.onnx)

    def run_torch(x):
        with torch.inference_mode():
            return model(x)

    impls = [("onnxruntime", lambda x: sess.run(None, {name: x}), lambda x: x, ort.__version__),
             ("pytorch", run_torch, torch.from_numpy, torch.__version__)]
    rng = np.random.default_rng(0)
    for b in args.batches:
        x = rng.uniform(-1, 1, (b, 3, 112, 112)).astype(np.float32)
        for impl, fn, conv, ver in impls:
            s = bench(fn, conv(x), args.warmup, args.repeats)
            print(json.dumps({"impl": impl, "version": ver, "threads": args.threads, "batch": b,
                              "images_per_s": round(b / s, 2), "ms_per_batch": round(1000 * s, 3),
                              "loadavg_1min": os.getloadavg()[0]}),
                  flush=True)


if __name__ == "__main__":
    main()
