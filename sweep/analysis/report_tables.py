"""The tables of a results report (``scripts/make_results.py``): the seed grid beside the 2020
rows, memory and the largest batch, the time split, MFU, repeatability and trials by status.

Each takes the frame of ``sweep.analysis.report_rows.results_frame`` (with its ``db``, ``gpu`` and
``probe`` columns) and returns a DataFrame; no metric is computed here that a record does not hold,
only medians over repeats and ratios of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sweep.analysis.phases import PHASES, time_breakdown
from sweep.analysis.selection import CONFIG_ORDER, numeric, short_gpu, varies
from sweep.analysis.table import status_counts_table
from sweep.analysis.throughput import fit_summary, throughput_points
from sweep.results.record import OK

# The seed grid as the `seed` / `seed-fp16` presets run it (sweep/plan/presets/seed*.yaml): every
# workload field but model, sequence length, precision and batch is fixed.
SEED_FIXED = {
    "task": "seq-cls",
    "mode": "train",
    "attention": "sdpa",
    "compile": False,
    "optimizer": "adamw-fused",
    "gradient_checkpointing": False,
    "harness": "native",
}
SEED_PRECISIONS = ("bf16-mixed", "fp16-mixed")
# The seed-2020 preset: the same grid the 2020 project's way (fp16 AMP, eager attention,
# Lightning; fused AdamW as apex is not installable), its own column beside the 2020 rows: the
# like-for-like comparison. Kept out of every other table: its memory and time split are of
# another method than the seed grid's.
SEED_2020_FIXED = {**SEED_FIXED, "attention": "eager", "harness": "lightning"}
METHOD_2020 = "fp16 Lightning eager"


def collapse_points(sub: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``throughput_points`` of one selection collapsed to one value per batch size:
    median over repeats (and databases), oom where no row of that batch ran ok."""
    pts = throughput_points(sub, metric)
    if pts.empty:
        return pd.DataFrame(columns=["batch_size", "value", "repeats", "oom"])
    return (
        pts.groupby("batch_size")
        .agg(value=("value", "median"), repeats=("repeats", "sum"), oom=("oom", "all"))
        .reset_index()
    )


def seed_like(
    df: pd.DataFrame,
    models: Sequence[str] | None = None,
    fixed: dict[str, Any] = SEED_FIXED,
    precisions: Sequence[str] = SEED_PRECISIONS,
) -> pd.DataFrame:
    """Rows of the seed grid's shape (``fixed``: SEED_FIXED, or SEED_2020_FIXED for the 2020
    method), outside max-batch probes."""
    mask = pd.Series(True, index=df.index)
    for col, value in fixed.items():
        mask &= df[col].astype(str) == str(value)
    mask &= df["precision"].isin(list(precisions))
    if "probe" in df:
        mask &= ~df["probe"].astype(bool)
    if models is not None:
        mask &= df["model"].isin(list(models))
    return df[mask]


def seed_columns(
    meas: pd.DataFrame, ref: pd.DataFrame, meas_2020: pd.DataFrame | None = None
) -> dict[str, pd.DataFrame]:
    """Column label -> the rows behind it: one per measured GPU and precision, one per measured
    GPU run the 2020 way (``meas_2020``, label "<GPU> fp16 Lightning eager"), then the 2020
    reference GPUs (fp16, Lightning, Apex FusedAdam, eager attention: see their provenance)."""
    cols: dict[str, pd.DataFrame] = {}
    meas_2020 = meas.iloc[:0] if meas_2020 is None else meas_2020
    for gpu in sorted(set(meas["gpu"].astype(str)) | set(meas_2020["gpu"].astype(str))):
        for prec in SEED_PRECISIONS:
            sub = meas[(meas["gpu"].astype(str) == gpu) & (meas["precision"] == prec)]
            if len(sub):
                cols[f"{short_gpu(gpu)} {prec.split('-')[0]}"] = sub
        sub = meas_2020[meas_2020["gpu"].astype(str) == gpu]
        if len(sub):
            cols[f"{short_gpu(gpu)} {METHOD_2020}"] = sub
    for gpu_type in ("A100", "V100"):
        sub = ref[ref["gpu_type"] == gpu_type]
        if len(sub):
            cols[f"{gpu_type} 2020 fp16"] = sub
    return cols


def seed_comparison(meas: pd.DataFrame, ref: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Tokens/s per (model, seq_len, batch_size) for each column of ``seed_columns`` (median over
    repeats; the string "OOM" where the batch ran out of memory), and the measured / 2020 ratio
    at matching (model, seq_len, batch_size). Returns the table and the ratio column names."""
    models = sorted(ref["model"].dropna().unique()) if len(ref) else None
    meas_2020 = seed_like(meas, models, SEED_2020_FIXED, ("fp16-mixed",))
    meas = seed_like(meas, models)
    if meas.empty and meas_2020.empty:
        return pd.DataFrame(), []
    cols = seed_columns(meas, ref, meas_2020)
    both = pd.concat([meas, meas_2020])
    keys = sorted(
        {(m, int(s)) for m, s in zip(both["model"], both["seq_len"], strict=True)},
    )
    long = []
    for label, sub in cols.items():
        for model, seq in keys:
            part = sub[(sub["model"] == model) & (sub["seq_len"].astype(int) == seq)]
            for r in collapse_points(part, "tokens_per_s").itertuples(index=False):
                value = "OOM" if r.oom else float(r.value)
                long.append((model, seq, int(r.batch_size), label, value))
    frame = pd.DataFrame(long, columns=["model", "seq_len", "batch_size", "column", "value"])
    wide = frame.pivot_table(
        index=["model", "seq_len", "batch_size"], columns="column", values="value", aggfunc="first"
    )
    wide = wide.reindex(columns=[c for c in cols if c in wide.columns]).reset_index()
    wide.columns.name = None
    ratios = []
    mine = [c for c in cols if "2020" not in c and c in wide]
    theirs = [c for c in cols if "2020" in c and c in wide]
    for m in mine:
        for r in theirs:
            name = f"{m} / {r.split()[0]} 2020"
            a = pd.to_numeric(wide[m], errors="coerce")
            b = pd.to_numeric(wide[r], errors="coerce")
            wide[name] = a / b
            ratios.append(name)
    return wide.sort_values(["model", "seq_len", "batch_size"]).reset_index(drop=True), ratios


def memory_table(
    meas: pd.DataFrame, metric: str, models: Sequence[str] | None = None
) -> pd.DataFrame:
    """Seed grid: one row per GPU, model, seq_len and precision, one column per batch size
    ("batch N"): the median of ``metric`` (GiB) over repeats, "OOM" where the batch ran out of
    memory."""
    d = seed_like(meas, models)
    out = []
    for (gpu, model, seq, prec), g in d.groupby(
        ["gpu", "model", "seq_len", "precision"], sort=True
    ):
        row: dict[str, Any] = {"gpu": short_gpu(gpu), "model": model, "seq_len": int(seq)}
        row["precision"] = prec
        points = collapse_points(g, metric)
        if points.empty:  # only rows that neither ran nor ran out of memory
            continue
        for r in points.itertuples(index=False):
            row[int(r.batch_size)] = "OOM" if r.oom else float(r.value)
        out.append(row)
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    batches = sorted(c for c in frame.columns if isinstance(c, int))
    frame = frame[["gpu", "model", "seq_len", "precision", *batches]]
    return frame.rename(columns={b: f"batch {b}" for b in batches})


def largest_batch(meas: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Per GPU, model, seq_len and precision: from the seed grid, the largest batch that ran
    and the smallest that ran out of memory (``fit_summary``); from max-batch searches, the
    largest batch found, with its peak memory and tokens/s."""
    key = ["gpu", "model", "seq_len", "precision"]
    rows = []
    for k, g in seed_like(meas, models).groupby(key, sort=True):
        fit = fit_summary(throughput_points(g.assign(gpu=k[0]), "tokens_per_s"))
        if len(fit) == 1:
            f = fit.iloc[0]
            rows.append(
                dict(zip(key, k, strict=True))
                | {
                    "grid_largest_ok": f["largest_batch_that_fits"],
                    "grid_smallest_oom": f["smallest_oom_batch"],
                }
            )
    grid = pd.DataFrame(rows, columns=key + ["grid_largest_ok", "grid_smallest_oom"])
    mb = meas[numeric(meas, "max_batch_size").notna()]
    search = pd.DataFrame(
        {
            "gpu": mb["gpu"],
            "model": mb["model"],
            "seq_len": mb["seq_len"],
            "precision": mb["precision"],
            "max_batch_search": numeric(mb, "max_batch_size"),
            "peak_allocated_gib_at_max": numeric(mb, "peak_allocated_gib"),
            "tokens_per_s_at_max": numeric(mb, "tokens_per_s"),
        }
    )
    search = search.groupby(key, sort=True).max().reset_index()
    out = grid.merge(search, on=key, how="outer")
    out["gpu"] = out["gpu"].map(short_gpu)
    return out.sort_values(key).reset_index(drop=True)


def breakdown_selection(meas: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """A few configurations: the seed grid in its first precision present (bf16 before fp16) at
    its longest sequence, every model and batch."""
    d = seed_like(meas, models)
    d = d[d["status"] == OK]
    if d.empty:
        return d
    prec = next(p for p in SEED_PRECISIONS if (d["precision"] == p).any())
    d = d[d["precision"] == prec]
    return d[d["seq_len"].astype(int) == int(d["seq_len"].astype(int).max())]


def breakdown_table(sel: pd.DataFrame) -> pd.DataFrame:
    tb = time_breakdown(sel)
    if tb.empty:
        return tb
    named = tb[[f"{p}_ms" for p in PHASES]].sum(axis=1)
    return tb.assign(phases_over_step=(named / tb["step_ms"]).round(4))


def mfu_table(meas: pd.DataFrame) -> pd.DataFrame:
    """Per GPU and configuration (every workload field): the batch with the highest median MFU
    (or TFLOP/s where MFU is unknown), its tokens/s, TFLOP/s, MFU and the peak it was divided
    by. Max-batch probes are left out."""
    d = meas[(meas["status"] == OK) & ~meas["probe"].astype(bool)].copy()
    metrics = ["mfu", "tflops_per_s", "peak_tflops", "tokens_per_s"]
    for m in metrics:
        d[m] = numeric(d, m)
    d = d[d["mfu"].notna() | d["tflops_per_s"].notna()]
    if d.empty:
        return pd.DataFrame()
    fields = ["gpu", *[f for f in CONFIG_ORDER if f != "batch_size"]]
    med = (
        d.groupby([*fields, "batch_size"], dropna=False)[metrics]
        .median()
        .reset_index()
        .assign(_rank=lambda x: x["mfu"].fillna(x["tflops_per_s"] / 1e6))
    )
    best = med.loc[med.groupby(fields, dropna=False)["_rank"].idxmax()].drop(columns="_rank")
    best = best.assign(gpu=best["gpu"].map(short_gpu), mfu_pct=(best["mfu"] * 100).round(2))
    varying = [f for f in fields if varies(best, f) or f in ("gpu", "model")]
    cols = [*varying, "batch_size", "tokens_per_s", "tflops_per_s", "mfu_pct", "peak_tflops"]
    return best[cols].sort_values([*varying, "batch_size"]).reset_index(drop=True)


def repeat_stats(meas: pd.DataFrame) -> pd.DataFrame:
    """Configurations run several times (same database, GPU and full configuration, different
    repeat index): the spread of the median step time across repeats (CV = sample std / mean)
    and the within-trial step-time CV (median and max over the repeats)."""
    d = meas[(meas["status"] == OK) & ~meas["probe"].astype(bool)].copy()
    if d.empty:
        return pd.DataFrame()
    from sweep.plan.config import field_names

    fields = [f for f in field_names() if f in d]
    d["_cfg"] = d[fields].map(str).agg("|".join, axis=1)  # a missing value reads "nan"
    d["_p50"] = numeric(d, "step_time_ms_p50")
    d["_cv"] = numeric(d, "step_time_cv")
    rows = []
    for (db, gpu, _cfg), g in d.groupby(["db", "gpu", "_cfg"], sort=True):
        g = g[g["_p50"].notna()]
        if g["repeat"].nunique() < 2:
            continue
        first = g.iloc[0]
        mean = float(g["_p50"].mean())
        std = float(g["_p50"].std(ddof=1))
        rows.append(
            {
                "gpu": short_gpu(gpu),
                "model": first["model"],
                "seq_len": int(first["seq_len"]),
                "batch_size": int(first["batch_size"]),
                "precision": first["precision"],
                "compile": first["compile"],
                "harness": first["harness"],
                "repeats": int(g["repeat"].nunique()),
                "step_time_ms_p50_mean": round(mean, 4),
                "cv_across_repeats_pct": round(100 * std / mean, 3) if mean else None,
                "within_trial_cv_pct_median": round(100 * float(g["_cv"].median()), 3),
                "within_trial_cv_pct_max": round(100 * float(g["_cv"].max()), 3),
                "db": db,
            }
        )
    return pd.DataFrame(rows)


def status_counts(meas: pd.DataFrame) -> pd.DataFrame:
    """Rows by database, sweep and GPU, one column per status, and a total."""
    d = meas.assign(gpu=meas["gpu"].map(short_gpu), sweep=meas["sweep"].fillna("-"))
    table = d.pivot_table(
        index=["db", "sweep", "gpu"], columns="status", values="key", aggfunc="count", fill_value=0
    )
    order = [s for s in status_counts_table(Counter(d["status"])).status if s != "total"]
    table = table.reindex(columns=order, fill_value=0)
    table["total"] = table.sum(axis=1)
    table.columns.name = None
    return table.reset_index()
