"""SFace (OpenCV zoo, face_recognition_sface_2021dec) for the CPU benchmarks: PyTorch and a float ONNX.

* SFaceTorch: the network in torch (conv -> BatchNorm -> PReLU chain, bn1, pre_fc1, BatchNorm1d fc1)
  with the float weights of facelens' import (`checkpoints/sface.safetensors`, from the int8
  block-quantised ONNX). Input: [N,3,112,112] RGB normalised (x-127.5)/128; output: raw 128-D.
* shipped_onnx / float_onnx: the released graph with its unused graph inputs dropped (onnxruntime would
  demand them) and a free batch size, and the same graph with every DequantizeLinear of a constant folded into a float
  initializer, so onnxruntime is timed both on the file as shipped and without per-run dequantisation.
  Both take raw RGB pixels (the graph subtracts 127.5 and scales by 1/128 itself).

    python sface_torch.py --onnx face_recognition_sface_2021dec_int8bq.onnx --safetensors sface.safetensors

prints the minimum cosine and max abs difference of PyTorch and the float graph against onnxruntime on the
shipped graph (random pixels).
"""
import argparse
import json

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from safetensors import safe_open
from safetensors.numpy import load_file
from torch import nn

CONV_BN_EPS = 1e-3
HEAD_BN_EPS = 2e-5


def _bn(sd, name, eps, dims):
    m = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(sd[f"{name}.weight"].shape[0], eps=eps)
    for p in ("weight", "bias", "running_mean", "running_var"):
        getattr(m, p).data.copy_(torch.from_numpy(sd[f"{name}.{p}"]))
    return m


class SFaceTorch(nn.Module):
    def __init__(self, safetensors_path):
        super().__init__()
        sd = load_file(safetensors_path)
        with safe_open(safetensors_path, "np") as f:
            # Depthwise strides of conv_2_dw, conv_3_dw, ...: the architecture facelens recorded.
            strides = [s for _, s in json.loads(f.metadata()["facelens.config"])["blocks"]]
        names = ["conv_1"] + [f"conv_{n}{sfx}" for n in range(2, len(strides) + 2) for sfx in ("_dw", "")]
        layers = []
        for name in names:
            w = torch.from_numpy(sd[f"{name}_conv2d.weight"])
            cout, cin_g, k, _ = w.shape
            dw = name.endswith("_dw")
            stride = strides[int(name.split("_")[1]) - 2] if dw else 1
            conv = nn.Conv2d(cin_g * (cout if dw else 1), cout, k, stride=stride, padding=k // 2,
                             groups=cout if dw else 1, bias=False)
            conv.weight.data.copy_(w)
            prelu = nn.PReLU(cout)
            prelu.weight.data.copy_(torch.from_numpy(sd[f"{name}_relu.weight"]).reshape(-1))
            layers += [conv, _bn(sd, f"{name}_batchnorm", CONV_BN_EPS, 2), prelu]
        self.body = nn.Sequential(*layers)
        self.bn1 = _bn(sd, "bn1", HEAD_BN_EPS, 2)
        w = torch.from_numpy(sd["pre_fc1.weight"])
        self.pre_fc1 = nn.Linear(w.shape[1], w.shape[0])
        self.pre_fc1.weight.data.copy_(w)
        self.pre_fc1.bias.data.copy_(torch.from_numpy(sd["pre_fc1.bias"]))
        self.fc1 = _bn(sd, "fc1", HEAD_BN_EPS, 1)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        x = self.bn1(self.body(x)).flatten(1)
        return self.fc1(self.pre_fc1(x))


def _image_input_only(model):
    # The released graph still lists its former float weights as inputs, though no node reads them.
    init = {t.name for t in model.graph.initializer}
    read = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.input if i.name not in init and i.name in read]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    # The graph declares batch 1; any batch runs through it.
    for v in list(model.graph.input) + list(model.graph.output):
        v.type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def shipped_onnx(path):
    """The released graph, unused graph inputs dropped, serialised."""
    return _image_input_only(onnx.load(path)).SerializeToString()


def float_onnx(path):
    """The released graph with each DequantizeLinear of constants replaced by its float result."""
    from onnx.reference import ReferenceEvaluator

    model = _image_input_only(onnx.load(path))
    g = model.graph
    init = {t.name: t for t in g.initializer}
    keep_nodes = []
    for node in g.node:
        if node.op_type == "DequantizeLinear" and all(i in init for i in node.input if i):
            sub = onnx.helper.make_model(
                onnx.helper.make_graph([node], "dq", [], [onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)],
                                       initializer=[init[i] for i in node.input if i]),
                opset_imports=model.opset_import)
            (value,) = ReferenceEvaluator(sub).run(None, {})
            g.initializer.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
        else:
            keep_nodes.append(node)
    del g.node[:]
    g.node.extend(keep_nodes)
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    return model.SerializeToString()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--safetensors", required=True)
    a = ap.parse_args()
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    shipped = ort.InferenceSession(shipped_onnx(a.onnx), so, providers=["CPUExecutionProvider"])
    flt = ort.InferenceSession(float_onnx(a.onnx), so, providers=["CPUExecutionProvider"])
    model = SFaceTorch(a.safetensors)
    x = np.random.default_rng(0).uniform(0, 255, (8, 3, 112, 112)).astype(np.float32)
    name = shipped.get_inputs()[0].name
    ref = shipped.run(None, {name: x})[0]
    got_f = flt.run(None, {name: x})[0]
    with torch.inference_mode():
        got_t = model(torch.from_numpy((x - 127.5) / 128.0)).numpy()

    def cos(a, b):
        return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())

    print(json.dumps({"n": len(x), "min_cos_torch_vs_ort": cos(got_t, ref), "min_cos_float_onnx_vs_ort": cos(got_f, ref),
                      "max_abs_torch_vs_ort": float(np.abs(got_t - ref).max()), "ref_abs_max": float(np.abs(ref).max())}))


if __name__ == "__main__":
    main()
