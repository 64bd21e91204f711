"""Paired differences between one method and the others on an xfv-benchmark run, with bootstrap CIs.

Every method is scored on the same pairs, so the honest comparison is paired: per pair, the AUC of that pair's
0/1 "decision still correct" curve (the table's AUC is the mean of these), then the mean difference between
the reference method and each other method, with a percentile bootstrap over pairs. Only the standard library.

    python paired_bootstrap.py RUN_DIR/records.json [--reference fggb] [--resamples 4000] [--seed 0]

Prints one Markdown table per map kind (first backbone): difference (reference - other) in AUC points and its
95 % interval. Deletion: negative favours the reference; Insertion: positive favours it.
"""
import argparse
import json
import random

PROBE = " (probe only)"


def per_pair_aucs(records):
    tau = records["models"][0]["threshold"]
    steps = records["steps"]
    out = {}
    for rec in records["records"]:
        if rec.get("skipped"):
            continue
        m = rec["models"][0]
        if m["kind"] is None:
            continue
        for curves in m["rows"]:
            method = curves["method"] + (PROBE if curves["variant"] == "probe-only" else "")
            for mode in ("deletion", "insertion"):
                ok = [1.0 if (y >= tau) == rec["genuine"] else 0.0 for y in curves[mode]]
                auc = sum((steps[i + 1] - steps[i]) * (ok[i] + ok[i + 1]) / 2 for i in range(len(steps) - 1))
                out.setdefault((m["kind"], method, mode), {})[rec["index"]] = auc
    return out


def paired_interval(x, y, resamples, rng):
    """Mean of x[k] - y[k] over the keys both hold, with its 95 % percentile-bootstrap interval over
    those keys: (pairs, mean, low, high)."""
    diffs = [x[k] - y[k] for k in sorted(x) if k in y]
    n = len(diffs)
    if n == 0:
        return (0, float("nan"), float("nan"), float("nan"))
    means = sorted(sum(rng.choice(diffs) for _ in range(n)) / n for _ in range(resamples))
    lo, hi = means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]
    return (n, sum(diffs) / n, lo, hi)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("records")
    ap.add_argument("--reference", default="fggb")
    ap.add_argument("--resamples", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    records = json.load(open(a.records))
    aucs = per_pair_aucs(records)
    rng = random.Random(a.seed)
    for kind in ("similarity", "dissimilarity"):
        rows = sorted({m for (k, m, _) in aucs if k == kind})
        print(f"\n{kind} maps: {a.reference} minus each method (AUC points, 95 % bootstrap interval, {a.resamples} resamples)\n")
        print("| method | pairs | Deletion diff | Deletion 95 % | Insertion diff | Insertion 95 % |")
        print("|---|---:|---:|---|---:|---|")
        for other in rows:
            ref = a.reference + PROBE if other.endswith(PROBE) else a.reference
            if other == ref or (kind, ref, "deletion") not in aucs:
                continue
            cells = []
            for mode in ("deletion", "insertion"):
                x, y = aucs[(kind, ref, mode)], aucs[(kind, other, mode)]
                cells.append(paired_interval(x, y, a.resamples, rng))
            (n, d, lo, hi), (_, i, ilo, ihi) = cells
            print(f"| {other} | {n} | {d:+.2f} | [{lo:+.2f}, {hi:+.2f}] | {i:+.2f} | [{ilo:+.2f}, {ihi:+.2f}] |")


if __name__ == "__main__":
    main()
