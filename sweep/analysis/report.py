"""A results report: ``tables.md`` and its figures, from the frame of the measured rows and the 2020
reference rows (``scripts/make_results.py`` is its command line)."""

from __future__ import annotations

import os

import pandas as pd

from sweep.analysis import figures
from sweep.analysis.markdown import fmt_gib, fmt_ratio, fmt_thousands, markdown
from sweep.analysis.memory import memory_fit, memory_points
from sweep.analysis.pairs import pair_ratio
from sweep.analysis.report_figures import (
    mfu_figure,
    ratio_figure,
    save_figure,
    seed_figure,
    speedup_figure,
)
from sweep.analysis.report_rows import gpu_title
from sweep.analysis.report_tables import (
    breakdown_selection,
    breakdown_table,
    largest_batch,
    memory_table,
    mfu_table,
    repeat_stats,
    seed_comparison,
    seed_like,
    status_counts,
)
from sweep.analysis.selection import numeric


def env_summary(meas: pd.DataFrame) -> list[str]:
    lines = []
    keys = ["gpu", "env.driver_version", "env.cuda_version", "env.torch_version"]
    keys += ["env.transformers_version", "env.lightning_version", "env.git_commit"]
    present = [k for k in keys if k in meas]
    for vals, g in meas.dropna(subset=["env.torch_version"]).groupby(present, dropna=False):
        vals = dict(zip(present, vals if isinstance(vals, tuple) else (vals,), strict=True))
        dates = sorted(str(x)[:10] for x in g["finished_at"].dropna())
        span = f"{dates[0]} to {dates[-1]}" if dates else "dates unrecorded"
        text = ", ".join(
            f"{k.removeprefix('env.').removesuffix('_version')} {v}"
            for k, v in vals.items()
            if isinstance(v, str) and v
        )
        lines.append(f"- {text}; {len(g)} row(s), {span}")
    return lines


def report(meas: pd.DataFrame, ref: pd.DataFrame, docs: str, sources: list[str]) -> list[str]:
    """Write ``tables.md`` and the figures into ``docs``; returns the files written."""
    os.makedirs(docs, exist_ok=True)
    gpus = gpu_title(meas)
    # The seed grid's models: those of the 2020 rows (None: any model of the seed grid's shape).
    models = sorted(ref["model"].dropna().unique()) if len(ref) else None
    written: list[str] = []
    md = [
        f"# Results on {gpus}",
        "",
        f"Made by `scripts/make_results.py` from {', '.join(f'`{s}`' for s in sources)}: "
        f"{len(meas)} measured rows. Every throughput is from the median step time of a "
        "training step timed with CUDA events (forward, backward and optimizer step included, "
        "warm-up excluded); medians are taken again over repeats. Environment:",
        "",
        *env_summary(meas),
        "",
    ]

    # (a)
    wide, ratios = seed_comparison(meas, ref)
    md += [
        "## (a) Seed grid: training tokens/s against the 2020 V100 / A100 rows",
        "",
        f"GPU: {gpus} (this project: native harness, fused AdamW, sdpa attention, no compile, "
        "bf16-mixed or fp16-mixed; columns named 'fp16 Lightning eager': the seed-2020 preset, "
        "the 2020 method as closely as this software allows: fp16 AMP, eager attention, the "
        "Lightning harness, torch's fused AdamW), beside the 2020 project's V100-DGXS-16GB and "
        "A100-SXM4-40GB rows (fp16 AMP, PyTorch Lightning, Apex FusedAdam, eager attention; "
        "step-based throughput that includes the optimizer step, profiler means over all 300 "
        "steps, no warm-up excluded). Units: tokens/s (padded tokens = batch x seq_len per "
        "step); speedup columns: measured tokens/s / 2020 tokens/s at the same (model, "
        "seq_len, batch_size), a ratio (x). OOM: out of memory; —: not run.",
        "",
    ]
    fmt_a = {c: fmt_thousands for c in wide.columns if c not in ratios} | {
        r: fmt_ratio for r in ratios
    }
    md.append(markdown(wide, fmt_a))
    if not wide.empty:
        labels = [c for c in wide.columns if c not in ("model", "seq_len", "batch_size", *ratios)]
        fig = seed_figure(wide, labels, f"Training throughput: {gpus} vs the 2020 V100 / A100")
        written.append(save_figure(fig, docs, "seed_throughput.png"))
        md.append("![seed grid throughput](seed_throughput.png)\n")
        if ratios:
            fig = speedup_figure(wide, ratios, f"Speedup of {gpus} over the 2020 rows")
            written.append(save_figure(fig, docs, "seed_speedup.png"))
            md.append("![speedup over 2020](seed_speedup.png)\n")

    # (b)
    md += [
        "## (b) Peak memory and the largest batch that fits",
        "",
        f"GPU: {gpus}; seed grid. Units: GiB (2^30 bytes) per batch size (sequences per step); "
        "medians over repeats; OOM: out of memory; —: not run.",
        "",
    ]
    for metric, what in (
        ("peak_allocated_gib", "torch's peak allocated memory over the measured steps"),
        ("nvml_peak_used_gib", "NVML's peak device memory used (CUDA context included)"),
    ):
        mem = memory_table(meas, metric, models)
        fmt = {c: fmt_gib for c in mem.columns if str(c).startswith("batch ")}
        md += [f"`{metric}`: {what}, GiB.", "", markdown(mem, fmt)]
    big = largest_batch(meas, models)
    md += [
        f"Largest batch that fits on {gpus}, in sequences per step: from the seed grid (the "
        "largest batch that ran; the smallest that ran out of memory) and from max-batch "
        "searches (doubling, then bisection; peak memory in GiB and tokens/s of that probe, "
        "which measures only a few steps).",
        "",
        markdown(
            big,
            {
                "grid_largest_ok": fmt_thousands,
                "grid_smallest_oom": fmt_thousands,
                "max_batch_search": fmt_thousands,
                "peak_allocated_gib_at_max": fmt_gib,
                "tokens_per_s_at_max": fmt_thousands,
            },
        ),
    ]
    sel = breakdown_selection(meas, models)
    if len(sel):
        seq = int(sel["seq_len"].iloc[0])
        prec = sel["precision"].iloc[0]
        mem_sel = seed_like(meas, models)
        mem_sel = mem_sel[(mem_sel["seq_len"].astype(int) == seq) & (mem_sel["precision"] == prec)]
        points = memory_points(mem_sel, "peak_allocated_gib")
        fig = figures.memory(
            points,
            memory_fit(points),
            "peak_allocated_gib",
            f"Peak memory (torch, GiB) against batch: {gpus}, seq {seq}, {prec}",
        )
        written.append(save_figure(fig, docs, "memory.png"))
        md.append("![peak memory](memory.png)\n")

    # (c)
    tb = breakdown_table(sel)
    md += [
        "## (c) Time breakdown of a training step",
        "",
        f"GPU: {gpus}. Units: ms per step, medians of CUDA-event timings (forward includes the "
        "loss; optimizer includes zero_grad and the grad scaler; other: the rest of the step). "
        "phases_over_step: (forward + backward + optimizer + other) / step time, a ratio "
        "(1.0 = the split adds up).",
        "",
        markdown(
            tb.drop(columns="host_timers", errors="ignore"),
            {c: (lambda v: f"{v:.3f}") for c in tb.columns if c.endswith(("_ms", "_step"))},
        ),
    ]
    if len(tb):
        title = f"Time per step by phase (ms): {gpus}, seq {seq}, {prec}"
        written.append(save_figure(figures.breakdown(tb, title), docs, "time_breakdown.png"))
        md.append("![time breakdown](time_breakdown.png)\n")

    # (d)
    mfu = mfu_table(meas)
    md += [
        "## (d) MFU and achieved TFLOP/s",
        "",
        f"GPU: {gpus}. Per configuration, the batch size with the highest MFU. Units: tokens/s; "
        "tflops_per_s: TFLOP/s achieved (FLOPs counted by torch's FlopCounterMode / median step "
        "time); mfu_pct: percent of peak_tflops, the GPU's dense datasheet peak for the "
        "precision (TFLOP/s; empty where unknown).",
        "",
        markdown(
            mfu,
            {
                "tokens_per_s": fmt_thousands,
                "tflops_per_s": lambda v: f"{v:.1f}",
                "mfu_pct": lambda v: f"{v:.1f}",
                "peak_tflops": lambda v: f"{v:.0f}",
            },
        ),
    ]
    eff_sel = seed_like(meas, models)
    eff_sel = eff_sel[eff_sel["precision"] == (prec if len(sel) else "bf16-mixed")]
    if numeric(eff_sel, "mfu").notna().any():
        fig = mfu_figure(eff_sel, f"MFU against batch: {gpus}, seed grid, {prec}")
        written.append(save_figure(fig, docs, "mfu.png"))
        md.append("![MFU](mfu.png)\n")

    # (e), (f)
    comp = pair_ratio(meas, "compile", True, False)
    attn = pair_ratio(meas, "attention", "sdpa", "eager")
    # a native row of another sweep (another run, another hour) is no baseline for a lightning row
    harn = pair_ratio(meas, "harness", "lightning", "native")
    fmt_r = {"ratio": fmt_ratio} | {c: fmt_thousands for c in ("tokens_per_s",)}
    for t in (comp, attn, harn):
        fmt_r |= {c: fmt_thousands for c in t.columns if c.startswith("tokens_per_s")}
    md += [
        "## (e) torch.compile on / off, sdpa / eager attention",
        "",
        f"GPU: {gpus}. Pairs from the same run (same database and sweep) that differ only in "
        "that option, at the same batch size. Units: tokens/s (median over repeats); ratio: "
        "first option / second, x (above 1: the first is faster). Pairs where either side did "
        "not run ok are left out (see (h)).",
        "",
        "compile=True / compile=False:",
        "",
        markdown(comp, fmt_r),
        "attention=sdpa / attention=eager:",
        "",
        markdown(attn, fmt_r),
        "## (f) Lightning / native harness",
        "",
        f"GPU: {gpus}. The same configuration and batch measured with both harnesses side by "
        "side (one database, one sweep). Units: tokens/s; ratio: lightning / native, x (below "
        "1: Lightning is slower).",
        "",
        markdown(harn, fmt_r),
    ]
    parts = {
        n: t
        for n, t in (("compile/no-compile", comp), ("sdpa/eager", attn), ("lightning/native", harn))
        if len(t)
    }
    if parts:
        fig = ratio_figure(parts, f"Option ratios, tokens/s: {gpus}")
        written.append(save_figure(fig, docs, "option_ratios.png"))
        md.append("![option ratios](option_ratios.png)\n")

    # (g)
    rep = repeat_stats(meas)
    md += [
        "## (g) Repeatability",
        "",
        f"GPU: {gpus}. Configurations run more than once (same database and configuration, "
        "different repeat index). Units: step_time_ms_p50_mean in ms; cv_across_repeats_pct: "
        "sample standard deviation / mean of the trials' median step times, percent; "
        "within_trial_cv_pct: each trial's own step-time std / mean over its measured steps, "
        "percent (median and max over the repeats).",
        "",
        markdown(rep, {"step_time_ms_p50_mean": lambda v: f"{v:.3f}"}),
    ]

    # (h)
    md += [
        "## (h) Trials by status",
        "",
        f"GPU: {gpus}. Units: number of trials (rows), per database, sweep and GPU. ok: "
        "measured; oom: ran out of memory; skipped_oom: not run because a smaller batch of the "
        "same configuration ran out of memory; other statuses: see the rows' error fields.",
        "",
        markdown(status_counts(meas)),
    ]
    with open(os.path.join(docs, "tables.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(md).rstrip() + "\n")
    written.append("tables.md")
    return written
