"""Reference FGGB (docs/design.md §6) in PyTorch, with per-pair timing.

For an aligned pair (I_A, I_B) and threshold tau:
  F = l2(f(I));  g^k = mean_RGB |dF[k]/dI|  (k = 0..N-1, derivative of the L2-normalised embedding);
  G^k = g^k / (||g^k||_2 + 1e-8);  w_k = F_A[k] F_B[k];  v_k = w_k - tau/N;  S = sum_k v_k G^k;
  S+ = max(S, 0), S- = max(-S, 0). Raw maps at 112x112, no blur.
I is the network input tensor (RGB, (x-127.5)/127.5); differentiating w.r.t. 0..255 pixels instead only
rescales every g^k by 1/127.5, which the G normalisation removes.

The N x (3*112*112) Jacobian per image is computed with batched vector-Jacobian products; weights are
frozen so only the input gradient is computed. --method picks how:
  replicate  the image replicated B=--chunk times with requires_grad, one-hot seed row b = dim k0+b,
             one backward per chunk (one forward of B copies, graph reused with retain_graph) [default;
             fastest measured on 2 CPU threads, with B = 8..16]
  vmap       torch.func.vjp once, then torch.func.vmap over one-hot cotangents (chunked)
  batched    autograd.grad(..., is_grads_batched=True), one forward, chunked seeds (slowest batched)
  loop       one row at a time (slow; for checking the batched methods)

Usage:
  python fggb_torch.py --onnx w600k_mbf.onnx --pairs pairs.txt --out DIR [--tau 0.0] [--threads 2] [--time]
      pairs.txt: lines "pathA pathB" (aligned 112x112 PNG/JPG; grayscale is converted to RGB; relative
      paths are relative to the pairs file). Writes DIR/<i>.safetensors (i = 0-based line index) with
      float32 [112,112] sa_pos, sa_neg, sb_pos, sb_neg and metadata score (cosine), tau.
      --time prints one JSON line: wall seconds per pair (median, all; full FGGB of both images incl.
      forward, excl. image decoding) after one untimed warm-up pair, plus process CPU seconds per pair.
  python fggb_torch.py --from-reference w600k_mbf.reference.safetensors --n-pairs 12 --out-images DIR
      writes the first 40 reference faces as DIR/<Name_NNNN>.png and DIR/pairs.txt with K pairs.
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from mbf_torch import OnnxMobileFaceNet, preprocess


def embed_l2(model, x):
    return torch.nn.functional.normalize(model(x), dim=1)


def jacobian(model, x, method="replicate", chunk=16):
    """x: [1,3,H,W] -> (F [N], J [N,3,H,W]) with J[k] = dF[k]/dx, F = l2(f(x))."""
    if method in ("vmap", "batched"):
        if method == "vmap":
            F, vjp_fn = torch.func.vjp(lambda t: embed_l2(model, t), x)
            n = F.shape[1]
            eye = torch.eye(n).unsqueeze(1)  # [N,1,N] cotangents
            J = torch.func.vmap(vjp_fn, chunk_size=chunk)(eye)[0]
        else:
            x = x.detach().requires_grad_(True)
            F = embed_l2(model, x)
            n = F.shape[1]
            eye = torch.eye(n).unsqueeze(1)
            J = torch.cat([torch.autograd.grad(F, x, eye[k:k + chunk], retain_graph=True,
                                               is_grads_batched=True)[0]
                           for k in range(0, n, chunk)])
        return F.detach()[0], J.reshape(n, *x.shape[1:])
    if method == "replicate":
        xb = x.detach().expand(chunk, *x.shape[1:]).clone().requires_grad_(True)
        Fb = embed_l2(model, xb)
        n = Fb.shape[1]
        rows = []
        for k0 in range(0, n, chunk):
            b = min(chunk, n - k0)
            seed = torch.zeros_like(Fb)
            seed[torch.arange(b), k0 + torch.arange(b)] = 1.0
            (g,) = torch.autograd.grad(Fb, xb, seed, retain_graph=k0 + chunk < n)
            rows.append(g[:b])
        return Fb.detach()[0], torch.cat(rows)
    if method == "loop":
        x = x.detach().requires_grad_(True)
        F = embed_l2(model, x)[0]
        J = torch.stack([torch.autograd.grad(F[k], x, retain_graph=True)[0][0] for k in range(F.shape[0])])
        return F.detach(), J
    raise ValueError(method)


def unit_maps(J):
    """J [N,3,H,W] -> G [N,H,W]: mean-abs over RGB, then L2-normalised per dimension."""
    g = J.abs().mean(1)
    return g / (g.flatten(1).norm(dim=1)[:, None, None] + 1e-8)


def fggb(model, xa, xb, tau, method="replicate", chunk=16):
    """xa, xb: [1,3,H,W] normalised. Returns dict of [H,W] maps and the cosine score."""
    Fa, Ja = jacobian(model, xa, method, chunk)
    Fb, Jb = jacobian(model, xb, method, chunk)
    w = Fa * Fb
    v = w - tau / w.numel()
    sa = torch.einsum("k,khw->hw", v, unit_maps(Ja))
    sb = torch.einsum("k,khw->hw", v, unit_maps(Jb))
    return {"sa_pos": sa.clamp(min=0), "sa_neg": (-sa).clamp(min=0),
            "sb_pos": sb.clamp(min=0), "sb_neg": (-sb).clamp(min=0)}, float(w.sum())


def load_image(path):
    from PIL import Image
    im = np.asarray(Image.open(path).convert("RGB"))
    assert im.shape == (112, 112, 3), f"{path}: expected an aligned 112x112 face, got {im.shape}"
    return preprocess(im[None])


def read_pairs(path):
    base = os.path.dirname(os.path.abspath(path))
    pairs = []
    for line in open(path):
        parts = line.split()
        if len(parts) == 2:
            pairs.append(tuple(p if os.path.isabs(p) else os.path.join(base, p) for p in parts))
    return pairs


def write_reference_pairs(ref_path, n_pairs, out_dir, n_faces=40):
    """First n_faces reference faces -> PNGs + pairs.txt. Same-identity pairs come from shared names; the
    40 LFW faces are 40 different people, so 'same' pairs are a self-pair (S- must be 0 at tau 0) and
    mirror pairs (face vs its horizontal flip, written as <name>_mirror.png); the rest are different people."""
    from PIL import Image
    from safetensors import safe_open
    with safe_open(ref_path, "np") as f:
        imgs = f.get_tensor("images_rgb_u8")[:n_faces]
        files = f.metadata()["files"].split("\n")[:n_faces]
    os.makedirs(out_dir, exist_ok=True)
    names = [os.path.splitext(os.path.basename(p))[0].replace(".jpg.chip", "") for p in files]
    for im, nm in zip(imgs, names):
        Image.fromarray(im).save(os.path.join(out_dir, nm + ".png"))
    person = [nm.rsplit("_", 1)[0] for nm in names]
    same = [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))
            if person[i] == person[j]]
    n_same = n_pairs // 3
    if len(same) < n_same:
        same.append((names[0], names[0]))
    for i in range(1, len(names)):
        if len(same) >= n_same:
            break
        Image.fromarray(imgs[i][:, ::-1].copy()).save(os.path.join(out_dir, names[i] + "_mirror.png"))
        same.append((names[i], names[i] + "_mirror"))
    same = same[:n_same]
    diff, i = [], 0
    while len(same) + len(diff) < n_pairs:
        a, b = (2 * i) % len(names), (2 * i + 7) % len(names)
        if person[a] != person[b]:
            diff.append((names[a], names[b]))
        i += 1
    pairs = [p for pr in zip(same, diff) for p in pr] + diff[len(same):]  # interleave
    with open(os.path.join(out_dir, "pairs.txt"), "w") as f:
        for a, b in pairs:
            f.write(f"{a}.png {b}.png\n")
    print(f"wrote {len(names)} faces and {len(pairs)} pairs ({len(same)} same, {len(diff)} different) "
          f"to {os.path.join(out_dir, 'pairs.txt')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx")
    ap.add_argument("--pairs")
    ap.add_argument("--out", help="output directory for <i>.safetensors maps")
    ap.add_argument("--tau", type=float, default=0.0, help="cosine threshold (default 0.0)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--method", default="replicate", choices=["vmap", "batched", "replicate", "loop"])
    ap.add_argument("--chunk", type=int, default=16, help="Jacobian rows per backward (default 16)")
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--max-pairs", type=int, default=0, help="use only the first K pairs (0 = all)")
    ap.add_argument("--from-reference")
    ap.add_argument("--n-pairs", type=int, default=12)
    ap.add_argument("--out-images")
    args = ap.parse_args()

    if args.from_reference:
        write_reference_pairs(args.from_reference, args.n_pairs, args.out_images)
        return
    if not (args.onnx and args.pairs):
        ap.error("--onnx and --pairs are required")
    torch.set_num_threads(args.threads)
    model = OnnxMobileFaceNet(args.onnx)
    pairs = read_pairs(args.pairs)
    if args.max_pairs:
        pairs = pairs[:args.max_pairs]
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        from safetensors.torch import save_file
    if args.time:  # untimed warm-up
        fggb(model, load_image(pairs[0][0]), load_image(pairs[0][1]), args.tau, args.method, args.chunk)
    times, cpu = [], []
    for i, (pa, pb) in enumerate(pairs):
        xa, xb = load_image(pa), load_image(pb)
        t0, c0 = time.perf_counter(), time.process_time()
        maps, score = fggb(model, xa, xb, args.tau, args.method, args.chunk)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if args.out:
            save_file({k: m.contiguous() for k, m in maps.items()}, os.path.join(args.out, f"{i}.safetensors"),
                      metadata={"score": repr(score), "tau": repr(args.tau), "impl": "pytorch"})
        if not args.time:
            print(f"{i}: cos={score:.4f} {times[-1]:.2f}s  {os.path.basename(pa)} {os.path.basename(pb)}")
    if args.time:
        print(json.dumps({"impl": "pytorch", "threads": args.threads, "pairs": len(pairs),
                          "method": args.method, "chunk": args.chunk,
                          "seconds_per_pair_median": statistics.median(times),
                          "seconds_per_pair_all": [round(t, 4) for t in times],
                          "cpu_seconds_per_pair_median": statistics.median(cpu),
                          "loadavg_1min_at_end": os.getloadavg()[0],
                          "torch": torch.__version__}))


if __name__ == "__main__":
    main()
