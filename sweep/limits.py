"""The memory model on the command line: ``--capacities`` (card sizes in GB for the predicted
largest batch) and the limits table that ``python -m sweep export`` writes beside the trials.

Pure over frames (pandas; no ray, no torch); the arithmetic is sweep/results/memory_model.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext

from sweep.results.memory_model import CAPACITIES_GB, parse_capacities, predicted_limits


def add_capacities_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--capacities",
        default=None,
        metavar="GB,GB,...",
        help="card sizes for the predicted largest batch per group "
        f"(default: {','.join(f'{c:g}' for c in CAPACITIES_GB)})",
    )


def capacities_of(args: argparse.Namespace) -> tuple[float, ...]:
    """The card sizes asked for; one ValueError naming --capacities and the bad entry."""
    value = getattr(args, "capacities", None)
    if value is None:
        return CAPACITIES_GB
    try:
        return parse_capacities(value)
    except ValueError as exc:
        raise ValueError(f"--{exc}") from None


def limits_path(trials_path: str) -> str:
    """Where ``export -o FILE`` puts the limits: FILE's stem + ``.limits`` + its suffix."""
    stem, suffix = os.path.splitext(trials_path)
    return f"{stem}.limits{suffix}"


def write_limits(frame, capacities: tuple[float, ...], fmt: str, out: str | None) -> int:
    """The predicted largest batch per group and card size (predicted_limits: one row each) as
    CSV, JSON lines or parquet, to ``out`` or stdout; returns the number of rows. Groups with
    fewer than two ok batches have none."""
    limits = predicted_limits(frame, capacities)
    if fmt == "csv":
        limits.to_csv(out if out else sys.stdout, index=False)
    elif fmt == "jsonl":
        text = limits.to_json(orient="records", lines=True) if len(limits) else ""
        with open(out, "w", encoding="utf-8") if out else nullcontext(sys.stdout) as fh:
            fh.write(text if not text or text.endswith("\n") else text + "\n")
    else:
        limits.to_parquet(out, index=False)
    if out:
        groups = len(limits) // max(len(capacities), 1)
        print(
            f"wrote {len(limits)} predicted limits ({groups} groups x {len(capacities)} card "
            f"sizes) to {os.path.abspath(out)}",
            file=sys.stderr,
        )
    return len(limits)
