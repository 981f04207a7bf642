"""The product's memory model against limits measured on capped cards (issue 12), on any machine.

Reads stored trials (``python -m sweep export --format jsonl`` files, or a results database) and
the ``--json`` of ``benchmarks/memory_model_check.py`` (the largest batch that really fitted a
card capped to each size, per model). For every model of the check, the product's own
``predicted_limits`` (sweep/results/memory_model.py: the line through that group's ok NVML peaks)
predicts the largest batch for each capped size, bare and with its 2% margin, and the table says
how far each is from the measured limit and whether the margin kept it at or under it. Prints
the machines (the check's; the trials' GPU, driver, torch, commit); nothing is measured here: no GPU
needed.

    python benchmarks/memory_model_against.py --trials max-batch.jsonl --check memory-check.json
        [--seq-len 512]

Exit status: 0 every prediction within 2% and every margined one at or under the limit; 1 not;
2 unreadable input or no model of the check in the trials.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TOLERANCE_PCT = 2.0


def measured_limits(check: dict) -> dict[tuple[str, float], int]:
    """(model, card GB) -> the largest batch that fitted, from a memory_model_check.py --json."""
    out = {}
    for result in check.get("results", []):
        for row in result.get("rows", []):
            if row.get("measured") is not None:
                out[(result["model"], float(row["cap_gb"]))] = int(row["measured"])
    return out


def compare(frame, measured: dict[tuple[str, float], int], seq_len: int) -> list[dict]:
    """One row per (model, card) of ``measured`` whose group has a fit in ``frame``."""
    from sweep.results.memory_model import predicted_limits

    caps = tuple(sorted({cap for _, cap in measured}))
    frame = frame[frame["seq_len"] == seq_len]
    bare = predicted_limits(frame, caps, margin=0.0)
    kept = predicted_limits(frame, caps)
    rows = []
    for (model, cap), limit in sorted(measured.items()):
        b = bare[(bare["model"] == model) & (bare["capacity_gb"] == cap)]
        k = kept[(kept["model"] == model) & (kept["capacity_gb"] == cap)]
        if len(b) != 1 or len(k) != 1:  # no group, or several (two precisions...): not compared
            continue
        pred, pred_m = int(b["predicted_max_batch"].iloc[0]), int(k["predicted_max_batch"].iloc[0])
        rows.append(
            dict(
                model=model,
                card_gb=cap,
                predicted=pred,
                error_pct=round((pred - limit) / limit * 100.0, 1),
                predicted_margin=pred_m,
                measured=limit,
                margin_ok=pred_m <= limit,
                fit_points=int(b["fit_points"].iloc[0]),
                measured_up_to=int(b["measured_up_to_batch"].iloc[0]),
                peak=str(b["peak_source"].iloc[0]),
            )
        )
    return rows


def trials_machine(frame) -> str:
    """The GPUs, drivers, torch versions and commits the trials name (their environment)."""
    names = ("gpu_name", "driver_version", "torch_version", "git_commit")
    cols = [f"env.{c}" for c in names if f"env.{c}" in frame.columns]
    if not cols:
        return "not recorded"
    seen = frame[cols].dropna().drop_duplicates()
    return "; ".join(", ".join(str(v) for v in row) for row in seen.itertuples(index=False))


def _frame(paths: list[str]):
    import pandas as pd

    from sweep.results.frame import load_frame, read_jsonl, trials_frame

    frames = []
    for path in paths:
        if path.endswith(".jsonl"):
            trials, bad = read_jsonl(path)
            if bad:
                raise ValueError(f"{path}: {len(bad)} unreadable line(s), the first: {bad[0]}")
            frames.append(trials_frame(trials))
        else:
            frames.append(load_frame(path))
    return pd.concat(frames, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", nargs="+", required=True, metavar="FILE", help=".jsonl or .db")
    p.add_argument("--check", required=True, help="the --json of memory_model_check.py")
    p.add_argument("--seq-len", type=int, default=512)
    args = p.parse_args(argv)
    try:
        with open(args.check) as f:
            check = json.load(f)
        frame = _frame(args.trials)
    except (OSError, ValueError) as e:
        print(f"memory_model_against: {e}", file=sys.stderr)
        return 2
    rows = compare(frame, measured_limits(check), args.seq_len)
    if not rows:
        print(
            "memory_model_against: no model of the check has a fit in the trials", file=sys.stderr
        )
        return 2
    cols = list(rows[0])
    print("  ".join(f"{c:>16}" if c == "model" else c for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]!s:>16}" if c == "model" else f"{r[c]!s:>{len(c)}}" for c in cols))
    within = sum(abs(r["error_pct"]) <= TOLERANCE_PCT for r in rows)
    kept = sum(r["margin_ok"] for r in rows)
    errs = [r["error_pct"] for r in rows]
    print(
        f"{within} of {len(rows)} within {TOLERANCE_PCT:g}% (bare: {min(errs):+.1f}% to "
        f"{max(errs):+.1f}%); with the margin {kept} of {len(rows)} at or under the measured limit"
    )
    print(f"check ran on: {check.get('machine') or 'not in its JSON (its printed output says)'}")
    print(f"trials ran on: {trials_machine(frame)}")
    return 0 if within == kept == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
