"""Compare two directories of FGGB maps (<i>.safetensors with sa_pos, sa_neg, sb_pos, sb_neg).

For every <i>.safetensors present in both directories and every map: Pearson correlation (over the
112x112 pixels) and max abs difference, plus the max abs of the map in DIR_A for scale, and the
'score' metadata of both files. Prints a table, then one JSON summary line:
  {"pairs":n,"min_pearson":x,"max_abs_diff":y,"max_abs_score_diff":z,"worst":[...]}
A map that is all zero in both directories counts as Pearson 1 (e.g. S- of a self-pair at tau 0).

    python compare_maps.py DIR_A DIR_B
"""
import argparse
import json
import os

import numpy as np
from safetensors import safe_open

MAPS = ("sa_pos", "sa_neg", "sb_pos", "sb_neg")


def load(path):
    with safe_open(path, "np") as f:
        return {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}, f.metadata() or {}


def pearson(a, b):
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir_a")
    ap.add_argument("dir_b")
    args = ap.parse_args()

    names = sorted(set(os.listdir(args.dir_a)) & set(os.listdir(args.dir_b)),
                   key=lambda n: (len(n), n))
    names = [n for n in names if n.endswith(".safetensors")]
    if not names:
        raise SystemExit("no common <i>.safetensors files")
    rows, score_diffs = [], []
    print(f"{'pair':>6} {'map':>7} {'pearson':>9} {'max_abs_diff':>13} {'max_abs_A':>11}")
    for n in names:
        (ma, meta_a), (mb, meta_b) = load(os.path.join(args.dir_a, n)), load(os.path.join(args.dir_b, n))
        if "score" in meta_a and "score" in meta_b:
            score_diffs.append(abs(float(meta_a["score"]) - float(meta_b["score"])))
        for k in MAPS:
            a, b = ma[k], mb[k]
            assert a.shape == b.shape, f"{n}/{k}: shape {a.shape} vs {b.shape}"
            r, d = pearson(a, b), float(np.abs(a - b).max())
            rows.append({"pair": n.split(".")[0], "map": k, "pearson": r, "max_abs_diff": d})
            print(f"{n.split('.')[0]:>6} {k:>7} {r:9.6f} {d:13.3e} {np.abs(a).max():11.3e}")
    worst = sorted(rows, key=lambda r: r["pearson"])[:3]
    print(json.dumps({"pairs": len(names), "min_pearson": min(r["pearson"] for r in rows),
                      "max_abs_diff": max(r["max_abs_diff"] for r in rows),
                      "max_abs_score_diff": max(score_diffs) if score_diffs else None,
                      "worst": worst}))


if __name__ == "__main__":
    main()
