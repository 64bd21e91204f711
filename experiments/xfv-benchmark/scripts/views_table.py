"""One table per backbone over the explanation views: Deletion/Insertion, ROAD, ground-truth patches,
model randomisation and cost, from the per-pair files the `facelens eval` commands write, with paired
bootstrap intervals of the reference method (FGGB) against each other method on the pairs both scored.

    python views_table.py DIR [--reference fggb] [--resamples 2000] [--seed 0]

DIR holds, for one backbone (any part may be missing; a column is empty then):
    xfv-grey/<method>.jsonl   facelens eval xfv --perturb by-kind --fill grey --per-pair ...
    xfv-road/<method>.jsonl   facelens eval xfv --perturb by-kind --fill road --per-pair ...
    sanity/<method>.jsonl     facelens eval sanity --out DIR/sanity-<method> (its per-pair.jsonl)
    patch/*.jsonl             facelens eval patch --out ... (its per-pair.jsonl; several runs merge;
                              --patch patch-reject reads a folder of --reject-only runs instead)
Writes DIR/table.csv, DIR/table.md and DIR/intervals.md. Only the standard library.
"""
import argparse
import glob
import json
import math
import os
import random

from paired_bootstrap import paired_interval

# (column, view, how to read a per-pair row into {key: value}, better: +1 higher / -1 lower)
COLUMNS = [
    ("sim Del", "xfv-grey", ("similarity", "deletion"), -1),
    ("sim Ins", "xfv-grey", ("similarity", "insertion"), +1),
    ("dis Del", "xfv-grey", ("dissimilarity", "deletion"), -1),
    ("dis Ins", "xfv-grey", ("dissimilarity", "insertion"), +1),
    ("sim MoRF", "xfv-road", ("similarity", "deletion"), -1),
    ("sim LeRF", "xfv-road", ("similarity", "insertion"), +1),
    ("dis MoRF", "xfv-road", ("dissimilarity", "deletion"), -1),
    ("dis LeRF", "xfv-road", ("dissimilarity", "insertion"), +1),
    ("patch PG", "patch", "pointing_game", +1),
    ("patch mass", "patch", "mass_in_patch", +1),
    ("patch AUC", "patch", "auc", +1),
    ("rand. Spearman (all)", "sanity", None, -1),
    ("s / expl.", "xfv-grey", "seconds", -1),
]


def lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def load(root, patch_dir="patch"):
    """values[column][method] = {pair line: value}."""
    values = {c[0]: {} for c in COLUMNS}
    for name, view, field, _ in COLUMNS:
        if view == "patch":
            for path in sorted(glob.glob(os.path.join(root, patch_dir, "*.jsonl"))):
                for row in lines(path):
                    for method, s in row["methods"].items():
                        v = s[field]
                        values[name].setdefault(method, {})[row["line"]] = float(v) if not isinstance(v, bool) else float(v)
            continue
        # Seconds per explanation come from every xfv run (both fills explain the same way).
        views = ["xfv-grey", "xfv-road"] if field == "seconds" else [view]
        for path in sorted(p for v in views for p in glob.glob(os.path.join(root, v, "*.jsonl"))):
            method = os.path.basename(path)[: -len(".jsonl")]
            tag = os.path.basename(os.path.dirname(path))
            for row in lines(path):
                if view == "sanity":
                    v = row["cascading"][-1]["spearman"]
                elif field == "seconds":
                    v = row["seconds"]
                else:
                    kind, mode = field
                    if row["kind"] != kind:
                        continue
                    v = row[mode]
                key = (tag, row["line"]) if field == "seconds" else row["line"]
                values[name].setdefault(method, {})[key] = float(v)
    return values


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--reference", default="fggb")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patch", default="patch", help="folder of patch per-pair files (e.g. patch-reject for --reject-only runs)")
    ap.add_argument("--suffix", default="", help="appended to the output file names")
    a = ap.parse_args()
    values = load(a.dir, a.patch)
    methods = sorted({m for col in values.values() for m in col}, key=lambda m: (m != a.reference, m == "random", m))
    mean = lambda d: sum(d.values()) / len(d) if d else math.nan

    header = ["method"] + [c[0] for c in COLUMNS]
    csv = [",".join(["method"] + [f"{c[0]},{c[0]} pairs" for c in COLUMNS])]
    md = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for m in methods:
        cells, row = [], [m]
        for name, *_ in COLUMNS:
            d = values[name].get(m, {})
            row += [f"{mean(d):.4f}" if d else "", str(len(d))]
            cells.append(f"{mean(d):.3f} ({len(d)})" if d else "")
        csv.append(",".join(row))
        md.append(f"| {m} | " + " | ".join(cells) + " |")

    rng = random.Random(a.seed)
    iv = [f"{a.reference} minus each method on the pairs both scored: mean and 95 % percentile-bootstrap "
          f"interval ({a.resamples} resamples). The sign that favours {a.reference} is given per column.", "",
          "| method | " + " | ".join(f"{c[0]} ({'+' if c[3] > 0 else '-'})" for c in COLUMNS) + " |",
          "|---|" + "---|" * len(COLUMNS)]
    for m in methods:
        if m == a.reference:
            continue
        cells = []
        for name, *_ in COLUMNS:
            ref, other = values[name].get(a.reference, {}), values[name].get(m, {})
            n, d, lo, hi = paired_interval(ref, other, a.resamples, rng)
            cells.append(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] ({n})" if n else "")
        iv.append(f"| {m} | " + " | ".join(cells) + " |")

    for name, text in [("table.csv", "\n".join(csv)), ("table.md", "\n".join(md)), ("intervals.md", "\n".join(iv))]:
        stem, ext = os.path.splitext(name)
        with open(os.path.join(a.dir, stem + a.suffix + ext), "w") as f:
            f.write(text + "\n")
    print("\n".join(md))
    print()
    print("\n".join(iv))


if __name__ == "__main__":
    main()
