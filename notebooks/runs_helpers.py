"""Shared helpers for the notebooks: find the newest run of an experiment and read its files.

Run directories are `<runs root>/<experiment>/<UTC timestamp>-<config hash>[-N]/` (docs/design.md §10), written by
`facelens_board::RunDir`: `meta.json`, `config.toml`, `results.json` when finished, TensorBoard event files,
PNG figures and JSON/CSV results. `facelens runs list` prints the same runs from the command line.
"""

import io
import json
import os
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

# Notebooks execute in notebooks/, so the default is the repository's runs/ folder.
RUNS = Path(os.environ.get("FACELENS_RUNS", "../runs")).resolve()


def _start_key(run):
    """Sort key: start time from meta.json, then the folder name (ids begin with the UTC time)."""
    try:
        start = json.loads((run / "meta.json").read_text())["start_time_unix"]
    except (OSError, ValueError, KeyError, TypeError):
        start = 0
    return start, run.name


def newest_run(experiment, required=("meta.json",)):
    """The newest run directory of `experiment` holding every file in `required`, or None."""
    folder = RUNS / experiment
    if not folder.is_dir():
        return None
    runs = [p for p in folder.iterdir() if p.is_dir() and all((p / f).is_file() for f in required)]
    return max(runs, key=_start_key) if runs else None


def no_run(experiment, command):
    """The message a notebook shows instead of its figures when there is no run to read."""
    display(Markdown(
        f"**No `{experiment}` run under `{RUNS}` yet.** Create one from the repository root with\n\n"
        f"    {command}\n\n"
        "and run this notebook again. The cells below skip until then."
    ))


def describe(run):
    """Prints where a run came from (meta.json) and returns meta.json as a dict."""
    meta = json.loads((run / "meta.json").read_text())
    git = meta.get("git", {})
    rev = (git.get("revision") or "-")[:10]
    dirty = " (dirty)" if git.get("dirty") else ""
    print(f"run      {run}")
    print(f"started  {meta.get('start_time_utc', '?')}")
    print(f"git      {rev}{dirty}")
    print(f"config   {meta.get('config_sha256', '?')[:8]}   device {meta.get('machine', {}).get('device', '?')}")
    return meta


def load_events(run):
    """All scalars and images of the run's event files, through TensorBoard's own reader."""
    # Imported here: tensorboard is slow to import and only needed once a run exists.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # 0 = keep every value (the default samples scalars down to 10,000 and images to 4 per tag).
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def scalar_frame(acc):
    """Scalars as a long table (tag, step, value, wall_time), sorted by tag and step.

    A resumed run logs the steps after its last checkpoint twice (once before the interruption, once
    after); the value written last is kept, as it is the one the final model went through.
    """
    rows = [(tag, e.step, e.value, e.wall_time) for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)]
    frame = pd.DataFrame(rows, columns=["tag", "step", "value", "wall_time"])
    frame = frame.sort_values("wall_time", kind="stable").drop_duplicates(["tag", "step"], keep="last")
    return frame.sort_values(["tag", "step"]).reset_index(drop=True)


def decode_image(encoded):
    """A PNG/JPEG from an event file's image summary as a PIL image."""
    from PIL import Image

    return Image.open(io.BytesIO(encoded)).convert("RGB")
