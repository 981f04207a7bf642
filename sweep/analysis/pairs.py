"""Ratios between rows that differ in one thing: one GPU over a baseline GPU (same workload and
batch), and one option over another (compile, attention, harness) measured side by side."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sweep.analysis.selection import (
    CONFIG_ORDER,
    WORKLOAD_FIELDS,
    config_text,
    gpu_column,
    numeric,
    series_labels,
    short_gpu,
    varies,
)
from sweep.results.record import OK
from sweep.results.trust import GPU_BUSY_MIN_PCT


def gpu_labels(df: pd.DataFrame) -> list[str]:
    """The GPUs in ``df`` as speedup baselines: the GPU name, with "(ref ...)" for references and
    "(data ...)" for a pooled results file's."""
    if df.empty:
        return []
    one = df.copy()
    for col in WORKLOAD_FIELDS:  # label by GPU and dataset only
        if col in one:
            one[col] = "x"
    return sorted(series_labels(one).unique().tolist())


def speedup(df: pd.DataFrame, baseline: str, metric: str = "sequences_per_s") -> pd.DataFrame:
    """Every GPU's ``metric`` divided by the baseline GPU's, for the same configuration (every
    workload field and the batch size equal). Columns: config, batch_size, gpu, value,
    baseline_value, speedup. Configurations the baseline did not run (or ran out of memory on)
    have no speedup."""
    cols = ["config", "batch_size", "gpu", "value", "baseline_value", "speedup"]
    d = df[df["status"] == OK] if "status" in df else df.iloc[0:0]
    if d.empty or metric not in d:
        return pd.DataFrame(columns=cols)
    one = d.copy()
    for col in WORKLOAD_FIELDS:
        if col in one:
            one[col] = "x"
    gpu = series_labels(one)
    # The configuration must match in every workload field; the label names model, sequence
    # length and precision, and whichever other fields vary in this selection.
    fields = [c for c in WORKLOAD_FIELDS if c in d]
    shown = [c for c in fields if c in ("model", "seq_len", "precision") or varies(d, c)]
    # Fields left out of the label have one value here, so the label identifies the config; a
    # missing value reads as the field's default (an uncapped row: capacity_gb=None)
    text = pd.DataFrame({c: config_text(d, c) for c in shown}, index=d.index)
    config = text.apply(lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1)
    d = pd.DataFrame(
        {
            "config": config,
            "batch_size": d["batch_size"].astype(int),
            "gpu": gpu,
            "value": pd.to_numeric(d[metric], errors="coerce"),
        }
    ).dropna()
    med = d.groupby(["config", "batch_size", "gpu"])["value"].median().reset_index()
    base = (
        med[med["gpu"] == baseline].rename(columns={"value": "baseline_value"}).drop(columns="gpu")
    )
    out = med.merge(base, on=["config", "batch_size"], how="inner")
    out["speedup"] = (out["value"] / out["baseline_value"]).round(3)
    return out[cols].sort_values(["config", "batch_size", "gpu"]).reset_index(drop=True)


def pair_ratio(
    meas: pd.DataFrame,
    field: str,
    num: Any,
    den: Any,
    metric: str = "tokens_per_s",
    same_sweep: bool = True,
) -> pd.DataFrame:
    """``metric`` of the rows with ``field == num`` over those with ``field == den`` where every
    other workload field, the batch, the GPU, the database and the sweep are equal (measured
    side by side); medians over repeats first. Ok rows only; max-batch probes left out.
    ``same_sweep=False``: the sweep may differ (``seed`` against ``seed-graph``: presets that
    differ in the one field, run into one database)."""
    d = meas[(meas["status"] == OK) & ~meas["probe"].astype(bool)].copy()
    d["_v"] = numeric(d, metric)
    d = d[d["_v"].notna() & d[field].astype(str).isin([str(num), str(den)])]
    if d.empty:
        return pd.DataFrame()
    others = [f for f in CONFIG_ORDER if f != field]
    keys = ["db", "gpu", *(["sweep"] if same_sweep else []), *others, "batch_size"]
    d["_side"] = d[field].astype(str)
    med = d.groupby([*keys, "_side"], dropna=False)["_v"].median().unstack("_side")
    if str(num) not in med or str(den) not in med:
        return pd.DataFrame()
    med = med.dropna(subset=[str(num), str(den)]).reset_index()
    if med.empty:
        return pd.DataFrame()
    a, b = f"{metric} {field}={num}", f"{metric} {field}={den}"
    med = med.rename(columns={str(num): a, str(den): b})
    med["ratio"] = med[a] / med[b]
    med["gpu"] = med["gpu"].map(short_gpu)
    shown = [k for k in keys if k in ("gpu", "model", "seq_len", "batch_size")]
    shown += [k for k in keys if k not in shown and varies(med, k)]
    shown = [k for k in keys if k in shown]
    return med[[*shown, a, b, "ratio"]].sort_values(shown).reset_index(drop=True)


def graph_against_eager(meas: pd.DataFrame) -> pd.DataFrame:
    """What the host costs: per configuration run both ways on one GPU into one database, the
    CUDA-graph step's tokens/s over the eager step's, with each side's GPU busy share (100 -
    launch_bound_pct: the measured step's share with a kernel running; NVML's utilization
    where no step was profiled), and whether the eager step was host-bound (its GPU busy under
    ``GPU_BUSY_MIN_PCT``: its rate is the CPU's). Empty without such pairs."""
    if "cuda_graph" not in meas or meas["cuda_graph"].astype(str).nunique() < 2:
        return pd.DataFrame()
    meas = meas.copy()
    if "db" not in meas:  # the app's frame: a dataset (the user's rows, each reference file)
        meas["db"] = meas["dataset"] if "dataset" in meas else "-"
    if "probe" not in meas:
        found = numeric(meas, "max_batch_size")
        meas["probe"] = meas["sweep"].isin(set(meas.loc[found.notna(), "sweep"]))
    if "gpu" not in meas or meas["gpu"].isna().any():
        meas["gpu"] = gpu_column(meas)
    sides = (
        meas[meas["status"] == OK]
        .groupby("db")["cuda_graph"]
        .agg(lambda c: c.astype(str).nunique())
    )
    meas = meas[meas["db"].isin(sides[sides > 1].index)]  # busy shares from the paired rows' db
    ratio = pair_ratio(meas, "cuda_graph", True, False, same_sweep=False)
    if ratio.empty:
        return ratio
    d = meas[(meas["status"] == OK) & ~meas["probe"].astype(bool)].copy()
    launch = numeric(d, "launch_bound_pct")
    d["_busy"] = (100.0 - launch).where(launch.notna(), numeric(d, "gpu_util_pct_mean"))
    d["gpu"] = d["gpu"].map(short_gpu)
    keys = [k for k in ratio.columns if k in d.columns and k not in ("ratio",)]
    busy = d.groupby([*keys, "cuda_graph"], dropna=False)["_busy"].median().unstack("cuda_graph")
    busy = busy.rename(columns={True: "graph busy %", False: "eager busy %"}).reset_index()
    out = ratio.merge(busy, on=keys, how="left").rename(
        columns={
            "tokens_per_s cuda_graph=True": "graph tokens/s",
            "tokens_per_s cuda_graph=False": "eager tokens/s",
            "ratio": "graph/eager",
        }
    )
    busy_eager = out["eager busy %"]
    out["eager step"] = (busy_eager < GPU_BUSY_MIN_PCT).map(
        {True: "host-bound", False: "GPU-bound"}
    )
    out["eager step"] = out["eager step"].where(busy_eager.notna(), None)
    cols = [*keys, "eager tokens/s", "graph tokens/s", "graph/eager", "eager busy %"]
    return out[[*cols, "graph busy %", "eager step"]]
