"""PyTorch MobileFaceNet (w600k_mbf) built generically from its ONNX graph, plus a parity check.

The module is a tiny interpreter: it walks the ONNX nodes in order (Conv, PRelu, Add, Flatten, Gemm,
BatchNormalization), builds one torch layer per node with the initializers as frozen weights, and
evaluates them over a name->tensor environment. Input: [N,3,112,112] RGB normalised (x-127.5)/127.5.
Output: raw 512-D embedding (not L2-normalised).

    python mbf_torch.py --onnx w600k_mbf.onnx --reference w600k_mbf.reference.safetensors

measures the cosine between this model's embeddings and (a) onnxruntime's on the same inputs,
(b) the stored reference embeddings, and prints the minimum cosines and max abs differences.
"""
import argparse
import json

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class Add(nn.Module):
    def forward(self, a, b):
        return a + b


class OnnxMobileFaceNet(nn.Module):
    """Interprets the w600k_mbf ONNX graph with torch layers. Weights are frozen (requires_grad False)."""

    def __init__(self, onnx_path):
        super().__init__()
        model = onnx.load(onnx_path)
        g = model.graph
        init = {t.name: torch.from_numpy(numpy_helper.to_array(t).astype(np.float32).copy())
                for t in g.initializer}
        self.input_name = next(i.name for i in g.input if i.name not in init)
        self.output_name = g.output[0].name
        self.layers = nn.ModuleList()
        self.wiring = []  # (input names, output name) per layer
        for node in g.node:
            a, op = _attrs(node), node.op_type
            if op == "Conv":
                w = init[node.input[1]]
                b = init[node.input[2]] if len(node.input) > 2 else None
                p = a.get("pads", [0, 0, 0, 0])
                assert p[0] == p[2] and p[1] == p[3], "asymmetric padding unsupported"
                m = nn.Conv2d(w.shape[1] * a.get("group", 1), w.shape[0], tuple(w.shape[2:]),
                              stride=tuple(a.get("strides", [1, 1])), padding=(p[0], p[1]),
                              dilation=tuple(a.get("dilations", [1, 1])), groups=a.get("group", 1),
                              bias=b is not None)
                m.weight.data.copy_(w)
                if b is not None:
                    m.bias.data.copy_(b)
                ins = [node.input[0]]
            elif op == "PRelu":
                slope = init[node.input[1]].reshape(-1)  # [C,1,1] -> [C]
                m = nn.PReLU(slope.numel())
                m.weight.data.copy_(slope)
                ins = [node.input[0]]
            elif op == "Add":
                m, ins = Add(), list(node.input)
            elif op == "Flatten":
                m, ins = nn.Flatten(a.get("axis", 1)), [node.input[0]]
            elif op == "Gemm":
                assert a.get("transB", 0) == 1 and a.get("transA", 0) == 0
                assert a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0
                w, b = init[node.input[1]], init[node.input[2]]
                m = nn.Linear(w.shape[1], w.shape[0])
                m.weight.data.copy_(w)
                m.bias.data.copy_(b)
                ins = [node.input[0]]
            elif op == "BatchNormalization":
                sc, bi, mu, var = (init[n] for n in node.input[1:5])
                m = nn.BatchNorm1d(sc.numel(), eps=a.get("epsilon", 1e-5))
                m.weight.data.copy_(sc)
                m.bias.data.copy_(bi)
                m.running_mean.copy_(mu)
                m.running_var.copy_(var)
                ins = [node.input[0]]
            else:
                raise NotImplementedError(f"ONNX op {op}")
            self.layers.append(m)
            self.wiring.append((ins, node.output[0]))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        env = {self.input_name: x}
        for m, (ins, out) in zip(self.layers, self.wiring):
            env[out] = m(*(env[i] for i in ins))
        return env[self.output_name]

    def forward_named(self, x, names, need_output=True):
        """Runs the graph like forward() and also returns the ONNX tensors named in `names`.

        Returns (embedding, {name: tensor}). With need_output False the walk stops once every
        requested tensor is computed and the embedding returned is None.
        """
        want = set(names)
        env = {self.input_name: x}
        got = {}
        for m, (ins, out) in zip(self.layers, self.wiring):
            env[out] = m(*(env[i] for i in ins))
            if out in want:
                got[out] = env[out]
                if not need_output and len(got) == len(want):
                    return None, got
        missing = want - set(got)
        if missing:
            raise KeyError(f"no such tensors in the graph: {sorted(missing)}")
        return env[self.output_name], got


def preprocess(images_u8_nhwc):
    """uint8 [N,H,W,3] RGB -> float32 [N,3,H,W] normalised (x-127.5)/127.5."""
    x = torch.from_numpy(np.array(images_u8_nhwc, dtype=np.uint8)).permute(0, 3, 1, 2).float()
    return (x - 127.5) / 127.5


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--reference", required=True, help="w600k_mbf.reference.safetensors")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import onnxruntime as ort
    from safetensors.numpy import load_file

    ref = load_file(args.reference)
    x = preprocess(ref["images_rgb_u8"])
    model = OnnxMobileFaceNet(args.onnx)
    with torch.no_grad():
        emb_t = model(x).numpy()
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    emb_o = np.concatenate([sess.run(None, {name: x[i:i + 1].numpy()})[0] for i in range(len(x))])
    emb_r = ref["embeddings"]
    res = {
        "n": len(x),
        "min_cos_torch_vs_ort": float(_cos(emb_t, emb_o).min()),
        "min_cos_torch_vs_reference": float(_cos(emb_t, emb_r).min()),
        "min_cos_ort_vs_reference": float(_cos(emb_o, emb_r).min()),
        "max_abs_torch_vs_reference": float(np.abs(emb_t - emb_r).max()),
        "max_abs_ort_vs_reference": float(np.abs(emb_o - emb_r).max()),
        "ref_abs_max": float(np.abs(emb_r).max()),
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
