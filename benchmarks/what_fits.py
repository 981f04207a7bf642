"""docs/RESULTS.md's "What fits" tables from stored atlas records, offline: per card size, each
configuration's longest sequence at batch 1 as the atlas measured it, beside what LLaMA-Factory's
table, accelerate's estimate-memory and Unsloth's context table say for it, and by how much each
is off (``sweep.analysis.calculators``, with the sources). Nothing runs: no GPU needed. The
figures come from the records given; the machine they ran on is printed from them.

    python benchmarks/what_fits.py benchmarks/results/2026-12-07-h100/atlas-1b.jsonl
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sweep.analysis.calculators import what_fits  # noqa: E402
from sweep.analysis.selection import combine, config_text  # noqa: E402
from sweep.results.frame import trials_frame  # noqa: E402
from sweep.results.record import Trial  # noqa: E402

METHODS = {"full": "full", "lora": "LoRA", "qlora": "QLoRA"}


def _n(v, fmt="{:,.0f}") -> str:
    return "-" if v is None or v != v else fmt.format(v)


def _pct(v) -> str:
    return "" if v is None or v != v else f" ({v:+.0f}%)"


def table(rows) -> list[str]:
    """Markdown lines, one table per card size."""
    out = []
    for card, at in rows.groupby("card_gb", sort=True):
        out += [
            f"**{card:g} GB**",
            "",
            "| configuration | on | longest seq, batch 1 | peak at b1 s2048 (GB) | "
            "LLaMA-Factory GB | accelerate GB | Unsloth / HF+FA2 context |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in at.itertuples():
            knobs = [k for k, on in (("checkpointing", r.checkpointing), ("Liger", r.liger)) if on]
            name = f"{METHODS.get(r.method, r.method)} {r.precision}" + "".join(
                f" + {k}" for k in knobs
            )
            seq = _n(r.longest_seq) + ("" if r.exact else " (search not ended)")
            factory = _n(r.llama_factory_gb, "{:.1f}") + _pct(r.llama_factory_off_pct)
            if r.llama_factory_fits is not None and r.llama_factory_fits == r.llama_factory_fits:
                factory += ": fits" if r.llama_factory_fits else ": does not fit"
            accel = _n(r.accelerate_gb, "{:.1f}") + _pct(r.accelerate_off_pct)
            unsloth = "-"
            if r.unsloth_seq is not None and r.unsloth_seq == r.unsloth_seq:
                hf = _n(r.hf_fa2_seq) if r.hf_fa2_seq == r.hf_fa2_seq else "OOM"
                unsloth = (
                    f"{_n(r.unsloth_seq)}{_pct(r.unsloth_off_pct)} / {hf}{_pct(r.hf_fa2_off_pct)}"
                )
            out.append(
                f"| {name} | {r.on} | {seq} | {_n(r.peak_2048_gb, '{:.1f}')} | {factory} | "
                f"{accel} | {unsloth} |"
            )
        out.append("")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("records", nargs="+", help="JSONL records of stored max-seq atlas runs")
    args = p.parse_args(argv)
    records = []
    for path in args.records:
        with open(path, encoding="utf-8") as fh:
            records += [Trial.from_json(line) for line in fh if line.strip()]
    frame = combine(trials_frame(records), {})
    machines = sorted(
        {f"{t.env['gpu_name']} (commit {t.env.get('git_commit')})" for t in records if t.env}
    )
    print("records:", ", ".join(args.records), "| ran on:", "; ".join(machines))
    print("offsets: rule's GB against the measured peak at batch 1, 2,048 tokens; Unsloth's")
    print("context against the measured longest sequence (a + is the rule saying more fits)")
    print()
    for model in sorted(set(config_text(frame, "model"))):
        rows = what_fits(frame, model)
        if len(rows):
            print(f"### {model}\n")
            print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
