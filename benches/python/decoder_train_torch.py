"""PyTorch CPU training loop of the facelens feature-to-face decoder, for a training-speed comparison
with facelens' own loop (crates/facelens-recon/examples/train_bench.rs).

The decoder mirrors crates/facelens-recon/src/decoder.rs parameter for parameter (BatchNorm, PReLU,
one 3x3 conv per block): L2-normalised z -> Linear(D, width*7*7) -> (width, 7, 7) -> BatchNorm2d ->
PReLU, four x2 blocks with max(width >> (i+1), min_channels) channels (upsample, conv3x3 without
bias, BatchNorm2d, PReLU), conv3x3 to RGB with bias, tanh. Losses as in
crates/facelens-recon/src/losses.rs: masked L1, identity 1 - cos(l2(f(x_hat)), z) through the
frozen w600k_mbf (benches/python/mbf_torch.py), and optionally feature matching on the backbone's
last PReLU output at each of the spatial sides 56, 28, 14 and 7. AdamW with global grad-norm
clipping. Synthetic data like train_bench.rs: uniform [-1, 1] images, all-ones masks, random unit
embeddings, one new batch per step.

    python decoder_train_torch.py [--onnx ../shared/models/w600k_mbf.onnx] [--width 128]
        [--min-channels 16] [--batch 16] [--steps 8] [--block nearest-conv|bilinear-conv|conv-transpose]
        [--threads 1] [--pixel 1] [--identity 1] [--perceptual 0] [--output-blur 0]

Prints one JSON line with the keys of train_bench.rs (impl "pytorch"): images/s and ms per whole
step over --steps timed steps after 2 warm-up steps, and the per-phase times (decoder forward,
loss terms forward, backward, the rest = optimizer, clipping, zeroing, data) from --steps separate
iterations that run forward, losses and backward only.
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mbf_torch import OnnxMobileFaceNet  # noqa: E402

SEED_SIDE = 7
NUM_BLOCKS = 4
OUTPUT_SIDE = SEED_SIDE << NUM_BLOCKS
FEATURE_SIDES = (56, 28, 14, 7)
BLOCKS = ("nearest-conv", "bilinear-conv", "conv-transpose")


def l2_normalise_rows(x):
    """x / sqrt(sum x^2 + 1e-12) per row (decoder.rs l2_normalise_rows)."""
    return x / (x.square().sum(-1, keepdim=True) + 1e-12).sqrt()


class ConvUnit(nn.Module):
    """(upsample) conv -> BatchNorm2d -> PReLU; no conv bias (the norm's shift makes it redundant)."""

    def __init__(self, in_c, out_c, block):
        super().__init__()
        self.block = block
        if block == "conv-transpose":
            self.conv = nn.ConvTranspose2d(in_c, out_c, 4, stride=2, padding=1, bias=False)
        else:
            self.conv = nn.Conv2d(in_c, out_c, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_c, eps=1e-5, momentum=0.1)
        self.act = nn.PReLU(out_c, init=0.25)

    def forward(self, x):
        if self.block == "nearest-conv":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        elif self.block == "bilinear-conv":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.act(self.norm(self.conv(x)))


class Decoder(nn.Module):
    """Parameter names as in decoder.rs: fc, fc_norm, fc_act, blocks.{i}.0.{conv,norm,act}, to_rgb."""

    def __init__(self, dim, width, min_channels, block, output_blur=0.0):
        super().__init__()
        self.width = width
        self.output_blur = output_blur
        self.fc = nn.Linear(dim, width * SEED_SIDE * SEED_SIDE)
        self.fc_norm = nn.BatchNorm2d(width, eps=1e-5, momentum=0.1)
        self.fc_act = nn.PReLU(width, init=0.25)
        blocks, in_c = [], width
        for i in range(NUM_BLOCKS):
            out_c = max(width >> (i + 1), min_channels, 1)
            blocks.append(nn.ModuleList([ConvUnit(in_c, out_c, block)]))
            in_c = out_c
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = nn.Conv2d(in_c, 3, 3, padding=1, bias=True)
        self._init()

    @torch.no_grad()
    def _init(self):
        # decoder.rs init_seeded: weights uniform in +-1/sqrt(fan_in) (fan_in = dim 1 times the
        # kernel size), biases 0, norm scales 1, PReLU slopes 0.25 (running stats 0 / 1 already).
        for name, p in sorted(self.named_parameters()):
            if name.endswith("bias"):
                p.zero_()
            elif "norm" in name:
                p.fill_(1.0)
            elif "act" in name:
                p.fill_(0.25)
            else:
                fan_in = p.shape[1] * math.prod(p.shape[2:])
                bound = 1.0 / math.sqrt(max(fan_in, 1))
                p.uniform_(-bound, bound)

    def forward(self, z):
        n = z.shape[0]
        h = self.fc(l2_normalise_rows(z)).reshape(n, self.width, SEED_SIDE, SEED_SIDE)
        h = self.fc_act(self.fc_norm(h))
        for units in self.blocks:
            for u in units:
                h = u(h)
        rgb = torch.tanh(self.to_rgb(h))
        a = self.output_blur
        if a == 0.0:
            return rgb
        # decoder.rs output_blur: [a, 1 - 2a, a] along rows, then columns, edge replicated.
        for dim in (2, 3):
            p = torch.cat([rgb.narrow(dim, 0, 1), rgb, rgb.narrow(dim, rgb.shape[dim] - 1, 1)], dim)
            n = rgb.shape[dim]
            rgb = (p.narrow(dim, 0, n) + p.narrow(dim, 2, n)) * a + p.narrow(dim, 1, n) * (1.0 - 2.0 * a)
        return rgb


def feature_layers(backbone):
    """ONNX names of the last PRelu output at each spatial side in FEATURE_SIDES (112x112 input)."""
    prelus = [out for m, (_, out) in zip(backbone.layers, backbone.wiring) if isinstance(m, nn.PReLU)]
    with torch.no_grad():
        _, acts = backbone.forward_named(torch.zeros(1, 3, OUTPUT_SIDE, OUTPUT_SIDE), prelus)
    last = {}
    for name in prelus:  # graph order: later layers overwrite earlier ones
        a = acts[name]
        if a.dim() == 4 and a.shape[2] == a.shape[3]:
            last[a.shape[2]] = name
    missing = [s for s in FEATURE_SIDES if s not in last]
    if missing:
        raise SystemExit(f"the backbone has no PRelu output at side(s) {missing}")
    return [last[s] for s in FEATURE_SIDES]


def masked_l1(x_hat, x, mask):
    """losses.rs masked_l1: sum(mask * |x_hat - x|) / (sum(mask) * C + 1e-6), mask (N, 1, H, W)."""
    err = ((x_hat - x).abs() * mask).sum()
    return err / (mask.sum() * x.shape[1] + 1e-6)


def decoder_loss(w, x_hat, x, mask, z, backbone, layers):
    """Weighted sum of the enabled terms (a zero weight skips its computation)."""
    total = x_hat.new_zeros(())
    if w["pixel"] != 0:
        total = total + w["pixel"] * masked_l1(x_hat, x, mask)
    if w["identity"] != 0 or w["perceptual"] != 0:
        # w600k_mbf takes (pixel - 127.5) / 127.5, which is the decoder's [-1, 1] output as is.
        names = layers if w["perceptual"] != 0 else []
        emb, acts = backbone.forward_named(x_hat, names, need_output=w["identity"] != 0)
        if w["identity"] != 0:
            cos = (l2_normalise_rows(emb) * z).sum(-1)
            total = total + w["identity"] * (1.0 - cos).mean()
        if w["perceptual"] != 0:
            with torch.no_grad():
                _, target = backbone.forward_named(x, layers, need_output=False)
            per_image = x_hat.new_zeros(x_hat.shape[0])
            for name in layers:
                a, t = acts[name].flatten(1), target[name].flatten(1)
                per_image = per_image + (a - t).square().sum(1) / (t.square().sum(1) + 1e-6)
            total = total + w["perceptual"] * per_image.mean()
    return total


def synthetic_batch(step, n, dim):
    """Uniform [-1, 1] images, all-ones masks, random unit embeddings (train_bench.rs synthetic_batch)."""
    g = torch.Generator().manual_seed(1_000_003 * step + 7)
    x = torch.rand(n, 3, OUTPUT_SIDE, OUTPUT_SIDE, generator=g) * 2.0 - 1.0
    mask = torch.ones(n, 1, OUTPUT_SIDE, OUTPUT_SIDE)
    z = torch.randn(n, dim, generator=g)
    return x, mask, z / z.norm(dim=1, keepdim=True)


def cosine_lr(step, base, floor, warmup, total):
    """schedule.rs CosineSchedule::lr."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min((step - warmup) / max(total - warmup, 1), 1.0)
    return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def main():
    root = Path(__file__).resolve().parents[2]
    shared = Path(os.environ.get("FACELENS_SHARED", root / ".." / "shared"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", default=str(shared / "models" / "w600k_mbf.onnx"))
    ap.add_argument("--model", default="w600k_mbf", help="name reported in the JSON line")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--min-channels", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--block", choices=BLOCKS, default="nearest-conv")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pixel", type=float, default=1.0)
    ap.add_argument("--identity", type=float, default=1.0)
    ap.add_argument("--perceptual", type=float, default=0.0)
    ap.add_argument("--output-blur", type=float, default=0.0, help="decoder.output_blur: [a, 1-2a, a] on the output")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--clip", type=float, default=5.0, help="global grad-norm clipping (0 = off)")
    args = ap.parse_args()
    if args.steps < 1 or args.batch < 1 or args.width < 1 or args.min_channels < 1:
        ap.error("--steps, --batch, --width and --min-channels must be at least 1")
    torch.set_num_interop_threads(1)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    weights = {"pixel": args.pixel, "identity": args.identity, "perceptual": args.perceptual}
    if not any(weights.values()):
        ap.error("--pixel, --identity and --perceptual are all 0: nothing to train")
    backbone = OnnxMobileFaceNet(args.onnx)  # frozen (requires_grad False) and in eval mode
    assert not any(p.requires_grad for p in backbone.parameters()) and not backbone.training
    with torch.no_grad():
        dim = backbone(torch.zeros(1, 3, OUTPUT_SIDE, OUTPUT_SIDE)).shape[1]
    layers = feature_layers(backbone) if args.perceptual != 0 else []

    decoder = Decoder(dim, args.width, args.min_channels, args.block, args.output_blur).train()
    params = [p for p in decoder.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    # AdamW's defaults in adamw.rs: no weight decay on 1-D parameters (biases, norm scales, slopes).
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() > 1], "weight_decay": args.weight_decay},
         {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    total_steps, warmup = args.steps + 2, 1  # as train_bench.rs sets up its TrainConfig

    def step(s):
        x, mask, z = synthetic_batch(s, args.batch, dim)
        lr = cosine_lr(s, args.lr, 1e-5, warmup, total_steps)
        for g in opt.param_groups:
            g["lr"] = lr
        x_hat = decoder(z)
        loss = decoder_loss(weights, x_hat, x, mask, z, backbone, layers)
        if not torch.isfinite(loss):
            raise SystemExit(f"step {s}: loss is {loss.item()}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip > 0:
            nn.utils.clip_grad_norm_(params, args.clip)
        opt.step()

    # Whole steps, two for warm-up.
    for s in range(2):
        step(s)
    t = time.perf_counter()
    for s in range(2, 2 + args.steps):
        step(s)
    step_s = (time.perf_counter() - t) / args.steps

    # The same work split into phases (no optimizer step; batches made outside the timing).
    fwd = loss_t = bwd = 0.0
    for s in range(args.steps):
        x, mask, z = synthetic_batch(100 + s, args.batch, dim)
        opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        x_hat = decoder(z)
        t1 = time.perf_counter()
        loss = decoder_loss(weights, x_hat, x, mask, z, backbone, layers)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        fwd += t1 - t0
        loss_t += t2 - t1
        bwd += t3 - t2
    opt.zero_grad(set_to_none=True)

    def per(v):
        return 1e3 * v / args.steps

    print(json.dumps({
        "impl": "pytorch",
        "bench": "decoder_train",
        "model": args.model,
        "width": args.width,
        "min_channels": args.min_channels,
        "block": args.block,
        "output_blur": args.output_blur,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "loss": weights,
        "params": n_params,
        "images_per_s": args.batch / step_s,
        "ms_per_step": 1e3 * step_s,
        "ms_decoder_forward": per(fwd),
        "ms_losses_forward": per(loss_t),
        "ms_backward": per(bwd),
        "ms_optimizer_and_rest": 1e3 * step_s - per(fwd + loss_t + bwd),
        "version": torch.__version__,
    }), flush=True)


if __name__ == "__main__":
    main()
