"""The memory models against a stored max-seq atlas's capped cards, offline (issue 24's target:
predicted limits within 3% of the capped runs' measured limits, never above with the margin).

For every family (a configuration on one GPU type) of the atlas, two models predict the longest
sequence at batch 1 on each capped card size from the family's *uncapped* rows only:

- **surface**: the planner's memory model in batch and sequence length
  (``sweep.analysis.plan_evidence.fit_across``: the peak NVML saw, one line across the lengths
  measured, a card of C GB taken as C GiB), bare and with its MARGIN;
- **transient**: the seeded capped searches' model (``sweep.results.memory_transient``: the
  allocated peak's broken line plus a transient per token bounded by the uncapped fits and
  failures, against the card's share less what the process held outside the allocator).

Each is set against what the capped rows measured: the last length that fitted and the first
that did not (exact where they are 128 tokens apart; else bounds of a search that did not end).
Nothing runs here: no GPU needed.

    python benchmarks/atlas_model_check.py benchmarks/results/2026-12-07-h100/atlas-1b.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sweep.analysis.plan_evidence import GROUP_FIELDS, fit_across, prepare  # noqa: E402
from sweep.analysis.selection import combine, numeric  # noqa: E402
from sweep.plan.grid import SEQ_RESOLUTION  # noqa: E402
from sweep.results.frame import trials_frame  # noqa: E402
from sweep.results.memory_model import GIB, MARGIN, card_size_gb  # noqa: E402
from sweep.results.memory_surface import materialises_attention  # noqa: E402
from sweep.results.memory_transient import TransientModel  # noqa: E402
from sweep.results.record import OK, Trial  # noqa: E402

AXIS_LIMIT = 131072  # tokens: past every catalog model's positions
TOLERANCE_PCT = 3.0


def _transient(rows) -> tuple[TransientModel, float, float]:
    """The transient model of a family's uncapped rows, the card's shown total and what the
    process held outside the allocator (NVML's peak less the reserved one, their median)."""
    ok = rows[rows["status"] == OK]
    total = float(numeric(ok, "device_total_gib").median())
    outside = (numeric(ok, "nvml_peak_used_gib") - numeric(ok, "peak_reserved_gib")).dropna()
    held = float(statistics.median(outside)) if len(outside) else 0.75
    model = TransientModel()
    tokens = rows["_batch"] * rows["_seq"]
    allocated = numeric(rows, "peak_allocated_gib")
    for n, a, status in zip(tokens, allocated, rows["status"], strict=True):
        if status == OK and not math.isnan(a):
            model.add_point(n, a)
    for n, a, status in zip(tokens, allocated, rows["status"], strict=True):
        if status == OK and not math.isnan(a):
            model.fitted(n, a, total - held)
        elif status != OK:
            model.failed(n, total - held)
    return model, total, held


def check(records: list[Trial]) -> list[dict]:
    frame = combine(trials_frame(records), {})
    out = []
    for model_name in sorted(set(frame["model"].dropna())):
        d = prepare(frame, model_name)
        for (gpu, cfg), rows in d.groupby(["_gpu", "_cfg"]):
            fields = dict(zip(GROUP_FIELDS, cfg, strict=True))
            real = rows[rows["_cap"].isna()]
            ok = real[real["status"] == OK]
            surface, lengths = fit_across(ok, materialises_attention(fields.get("attention")))
            transient, total, held = _transient(real)
            share = total / card_size_gb(total * GIB)
            for cap, capped in rows[rows["_cap"].notna()].groupby("_cap"):
                fits = capped.loc[capped["status"] == OK, "_seq"]
                fails = capped.loc[~capped["status"].isin([OK]) & (capped["_seq"] > 0), "_seq"]
                lo = int(fits.max()) if len(fits) else None
                hi = int(fails.min()) if len(fails) else None
                # whether the first failure was by fragmentation (memory_model.fragmented): one
                # step past the limit most are (the step before's freed logits, split); below a
                # longer fit it is the allocator's history, not the card (the whole H100 fitted
                # 49,792 tokens where the capped run failed at 48,128 so; docs/RESULTS.md)
                first = capped[capped["_seq"] == hi]
                split = bool(hi is not None and first["_frag"].any())
                row = {
                    "model": model_name,
                    "gpu": gpu,
                    "finetune": fields["finetune"],
                    "checkpointing": fields["gradient_checkpointing"],
                    "capacity_gb": float(cap),
                    "fitted": lo,
                    "failed": hi,
                    "exact": lo is not None and hi == lo + SEQ_RESOLUTION,
                    "failed_by": "fragmentation" if split else "capacity" if hi else None,
                    "surface_lengths": lengths,
                }
                if surface is not None:
                    room = cap * GIB
                    row["surface"] = surface.longest_seq(room, 1, 0.0, SEQ_RESOLUTION).value
                    row["surface_margin"] = surface.longest_seq(room, 1, step=SEQ_RESOLUTION).value
                if transient.bracketed:
                    room = cap * share - held
                    row["transient"] = transient.limit(room, AXIS_LIMIT, SEQ_RESOLUTION)
                    row["transient_margin"] = transient.limit(
                        room - MARGIN * cap * share, AXIS_LIMIT, SEQ_RESOLUTION
                    )
                out.append(row)
    return out


def _said(row: dict, name: str) -> str:
    v = row.get(name)
    if v is None:
        return "-"
    if row["exact"]:
        return f"{v} ({(v - row['fitted']) / row['fitted'] * 100:+.1f}%)"
    over = row["failed"] is not None and v >= row["failed"]
    under = row["fitted"] is not None and v < row["fitted"]
    return f"{v}" + (" (over)" if over else " (under)" if under else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("records", help="JSONL records of a stored max-seq atlas")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    with open(args.records, encoding="utf-8") as fh:
        records = [Trial.from_json(line) for line in fh if line.strip()]
    rows = check(records)
    gpus = sorted({r.env["gpu_name"] for r in records if r.env.get("gpu_name")})
    print(f"machine: {platform.node()} (offline); records from {', '.join(gpus)}")
    print(
        f"{'model':14} {'method':6} {'ckpt':5} {'card':>4} {'fitted':>7} {'failed':>7}  "
        f"{'surface':>16} {'+margin':>16}  {'transient':>16} {'+margin':>16}"
    )
    for r in rows:
        print(
            f"{r['model']:14} {r['finetune']:6} {str(r['checkpointing']):5} "
            f"{r['capacity_gb']:>4g} {str(r['fitted']):>7} {str(r['failed']):>7}  "
            f"{_said(r, 'surface'):>16} {_said(r, 'surface_margin'):>16}  "
            f"{_said(r, 'transient'):>16} {_said(r, 'transient_margin'):>16}"
            + ("  failed by fragmentation" if r["failed_by"] == "fragmentation" else "")
        )
    exact = [r for r in rows if r["exact"]]
    for name in ("surface", "transient"):
        known = [r for r in exact if r.get(name) is not None]
        off = [abs(r[name] - r["fitted"]) / r["fitted"] * 100 for r in known]
        within = [r for r, pct in zip(known, off, strict=True) if pct <= TOLERANCE_PCT]
        above = [
            r
            for r in rows
            if r.get(f"{name}_margin") is not None
            and (
                (r["exact"] and r[f"{name}_margin"] > r["fitted"])
                or (r["failed"] is not None and r[f"{name}_margin"] >= r["failed"])
            )
        ]
        print(
            f"{name}: {len(within)} of {len(known)} exact answers within {TOLERANCE_PCT:g}% "
            f"(of {len(exact)}); with the margin, above what the capped card measured: "
            f"{len(above)} of {sum(r.get(f'{name}_margin') is not None for r in rows)}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
