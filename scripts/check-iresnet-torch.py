#!/usr/bin/env python3
"""PyTorch reference for facelens' IResNet (crates/facelens-models/src/iresnet.rs).

The two networks below are re-typed from their sources, with their original module names:
  * insightface recognition/arcface_torch/backbones/iresnet.py (IBasicBlock, IResNet)
  * mk-minchul/AdaFace net.py (BasicBlockIR, Backbone(mode='ir'))

Usage (bench venv: $HOME/.cache/facelens-bench-venv/bin/python):
  check-iresnet-torch.py layout ARCH
      print `name shape` for every state-dict entry (num_batches_tracked included) and the
      parameter totals.
  check-iresnet-torch.py embed ARCH WEIGHTS.safetensors INPUT.safetensors
      load WEIGHTS (strict, num_batches_tracked absent), run eval-mode forward on the tensor
      `input` of INPUT and print the raw embedding as JSON.
ARCH: iresnet18|34|50|100 or adaface_ir18|34|50|101.
"""
import json
import sys

import torch
from torch import nn


# ---- arcface_torch backbones/iresnet.py -------------------------------------------------
def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        if self.downsample is not None:
            identity = self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    fc_scale = 7 * 7

    def __init__(self, layers, dropout=0, num_features=512):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0], stride=2)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(512 * self.fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes, eps=1e-05))
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(IBasicBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.bn2(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        return self.features(self.fc(x))


# ---- AdaFace net.py (mode='ir', 112x112) ------------------------------------------------
class BasicBlockIR(nn.Module):
    def __init__(self, in_channel, depth, stride):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.BatchNorm2d(depth),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth))

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


class Backbone(nn.Module):
    def __init__(self, units):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.4), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512, affine=False))
        modules = []
        for in_c, depth, n in zip([64, 64, 128, 256], [64, 128, 256, 512], units):
            modules.append(BasicBlockIR(in_c, depth, 2))
            modules += [BasicBlockIR(depth, depth, 1) for _ in range(n - 1)]
        self.body = nn.Sequential(*modules)

    def forward(self, x):
        # Upstream returns (x / ||x||, ||x||); facelens compares the raw embedding.
        return self.output_layer(self.body(self.input_layer(x)))


UNITS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 14, 3], 100: [3, 13, 30, 3], 101: [3, 13, 30, 3]}


def build(arch):
    if arch.startswith("iresnet"):
        return IResNet(UNITS[int(arch[len("iresnet"):])])
    if arch.startswith("adaface_ir"):
        return Backbone(UNITS[int(arch[len("adaface_ir"):])])
    raise SystemExit(f"unknown arch {arch}")


def main():
    cmd, arch = sys.argv[1], sys.argv[2]
    model = build(arch).eval()
    if cmd == "layout":
        sd = model.state_dict()
        for k, v in sd.items():
            print(k, list(v.shape))
        total = sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked"))
        params = sum(p.numel() for p in model.parameters())
        print(f"# state_dict_floats={total} parameters={params} entries={len(sd)}")
    elif cmd == "embed":
        from safetensors.torch import load_file
        weights = load_file(sys.argv[3])
        missing, unexpected = model.load_state_dict(weights, strict=False)
        missing = [m for m in missing if not m.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise SystemExit(f"missing {missing} unexpected {unexpected}")
        x = load_file(sys.argv[4])["input"].double()
        with torch.no_grad():
            y = model.double()(x)
        print(json.dumps(y.tolist()))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
