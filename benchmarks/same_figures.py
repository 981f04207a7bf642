"""Do two runs of the same grid give the same figures? Per configuration (every config field but
the measurement's), the new run's tokens/s over the reference's and its peak allocated memory
against the reference's, on the configurations whose launch-bound share is under a threshold in
both (a launch-bound step measures the host, which differs between machines). Issue 22's check:
within 2% on every such configuration, identical peak allocated memory.

    python benchmarks/same_figures.py --new run.jsonl --ref ui/data/reference_h200_graph.jsonl \
        --sweep seed seed-graph [--launch-bound-below 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sweep.plan.config import MEASUREMENT, field_names, field_role  # noqa: E402

TOLERANCE = 0.02


def _rows(path: str, sweeps: list[str] | None) -> dict[tuple, dict]:
    from sweep.results.record import Trial

    fields = [f for f in field_names() if field_role(f) != MEASUREMENT]
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            t = Trial.from_json(line)
            if t.status != "ok" or (sweeps and t.sweep not in sweeps):
                continue
            key = (t.sweep, *(str(t.config.get(f)) for f in fields))
            out[key] = {"metrics": t.metrics, "config": t.config, "sweep": t.sweep}
    return out


def compare(new: dict, ref: dict, launch_below: float) -> dict:
    pairs, skipped = [], 0
    for key, r in ref.items():
        n = new.get(key)
        if n is None:
            continue
        # rows of code older than the launch-bound measure (2026-11-29) lack it: the share is the
        # configuration's on that machine, so the other side's stands for both when both ran there
        lb = [v for x in (r, n) if (v := x["metrics"].get("launch_bound_pct")) is not None]
        if not lb or any(v >= launch_below for v in lb):
            skipped += 1
            continue
        c = r["config"]
        ratio = n["metrics"]["tokens_per_s"] / r["metrics"]["tokens_per_s"]
        pairs.append(
            {
                "sweep": r["sweep"],
                "config": f"{c['model']} s{c['seq_len']} b{c['batch_size']}",
                "ratio": ratio,
                "peak_new_gib": n["metrics"].get("peak_allocated_gib"),
                "peak_ref_gib": r["metrics"].get("peak_allocated_gib"),
            }
        )
    within = sum(abs(p["ratio"] - 1) <= TOLERANCE for p in pairs)
    same_peak = sum(p["peak_new_gib"] == p["peak_ref_gib"] for p in pairs)
    return {
        "compared": len(pairs),
        "skipped_launch_bound": skipped,
        "within_2pct": within,
        "same_peak": same_peak,
        "ratio_min": min((p["ratio"] for p in pairs), default=None),
        "ratio_max": max((p["ratio"] for p in pairs), default=None),
        "pairs": pairs,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--new", required=True, help="JSONL records of the new run")
    p.add_argument("--ref", required=True, nargs="+", help="JSONL records to compare against")
    p.add_argument("--sweep", nargs="*", help="only these sweeps")
    p.add_argument("--launch-bound-below", type=float, default=5.0)
    p.add_argument("--json")
    args = p.parse_args(argv)
    ref: dict = {}
    for path in args.ref:
        ref.update(_rows(path, args.sweep))
    out = compare(_rows(args.new, args.sweep), ref, args.launch_bound_below)
    print(
        f"{out['compared']} configurations compared ({out['skipped_launch_bound']} launch-bound "
        f">= {args.launch_bound_below}% left out): {out['within_2pct']} within 2% "
        f"(new/ref {out['ratio_min']:.3f}-{out['ratio_max']:.3f}), "
        f"{out['same_peak']} with identical peak allocated memory"
        if out["compared"]
        else "no configuration in common"
    )
    for p_ in out["pairs"]:
        if abs(p_["ratio"] - 1) > TOLERANCE or p_["peak_new_gib"] != p_["peak_ref_gib"]:
            print(f"  {p_['sweep']} {p_['config']}: {p_['ratio']:.3f}x, peak "
                  f"{p_['peak_new_gib']} vs {p_['peak_ref_gib']} GiB")  # fmt: skip
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
