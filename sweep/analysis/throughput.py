"""Throughput against batch size per series, and per series what fits and where it is fastest."""

from __future__ import annotations

import pandas as pd

from sweep.analysis.selection import OOM_STATUSES, is_reference, numeric, with_series
from sweep.results.record import OK
from sweep.results.trust import host_bound

THROUGHPUT_METRICS = {"sequences_per_s": "sequences / s", "tokens_per_s": "tokens / s"}


def throughput_points(df: pd.DataFrame, metric: str = "sequences_per_s") -> pd.DataFrame:
    """Per series and batch size: the median ``metric`` over repeats of ok rows, and whether the
    batch ran out of memory. Columns: series, reference, batch_size, value, repeats, oom,
    gpu_busy_pct (median NVML utilization of those rows, NaN where not measured) and host_bound
    (gpu_busy_pct under sweep.trial.metrics.GPU_BUSY_MIN_PCT: the figure depends on the CPU),
    value_p10/value_p90 (the rate at the step time's p90/p10; NaN for other metrics), step_cv
    and host_timers (the 2020 method's unsynchronized host timers)."""
    cols = ["series", "reference", "batch_size", "value", "repeats", "oom"]
    cols += ["gpu_busy_pct", "host_bound", "value_p10", "value_p90", "step_cv", "host_timers"]
    if df.empty or "batch_size" not in df:
        return pd.DataFrame(columns=cols)
    d = with_series(df).assign(reference=is_reference(df))
    value = d[metric] if metric in d else pd.Series(float("nan"), index=d.index)
    busy = d["gpu_util_pct_mean"] if "gpu_util_pct_mean" in d else pd.Series(float("nan"), d.index)
    value = pd.to_numeric(value, errors="coerce")
    # A rate is work / step time: the step's p90 time gives the rate's p10 and the reverse.
    p50, p10, p90 = (numeric(d, f"step_time_ms_p{q}") for q in (50, 10, 90))
    d = d.assign(
        value=value,
        busy=pd.to_numeric(busy, errors="coerce"),
        is_ok=d["status"].eq(OK),
        is_oom=d["status"].isin(OOM_STATUSES),
        lo=value * p50 / p90 if metric in THROUGHPUT_METRICS else float("nan"),
        hi=value * p50 / p10 if metric in THROUGHPUT_METRICS else float("nan"),
        cv=numeric(d, "step_time_cv"),
        host=numeric(d, "forward_ms_host_mean").notna() & p50.isna(),
    )
    ok = (
        d[d.is_ok & d.value.notna()]
        .groupby(["series", "reference", "batch_size"])
        .agg(
            value=("value", "median"),
            repeats=("value", "size"),
            gpu_busy_pct=("busy", "median"),
            value_p10=("lo", "median"),
            value_p90=("hi", "median"),
            step_cv=("cv", "median"),
            host_timers=("host", "any"),
        )
        .reset_index()
    )
    oom = d[d.is_oom].groupby(["series", "reference", "batch_size"]).size().rename("n_oom")
    out = ok.merge(oom.reset_index(), on=["series", "reference", "batch_size"], how="outer")
    # A batch with an ok measurement fits, even if another repeat ran out of memory.
    out["oom"] = out["value"].isna() & out["n_oom"].fillna(0).gt(0)
    out["repeats"] = out["repeats"].fillna(0).astype(int)
    out["host_bound"] = out["gpu_busy_pct"].map(host_bound).eq(True)
    out["host_timers"] = out["host_timers"].eq(True)
    out = out[out["value"].notna() | out["oom"]]
    out["batch_size"] = out["batch_size"].astype(int)
    return out[cols].sort_values(["series", "batch_size"]).reset_index(drop=True)


def fit_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per series: the largest batch that fits (ran ok), the smallest that ran out of memory, and
    the best throughput with its batch size."""
    cols = [
        "series",
        "largest_batch_that_fits",
        "smallest_oom_batch",
        "best_value",
        "best_at_batch",
        "gpu_busy_pct_at_best",
    ]
    rows = []
    for series, g in points.groupby("series", sort=True):
        ok, oom = g[~g["oom"]], g[g["oom"]]
        best = ok.loc[ok["value"].idxmax()] if len(ok) else None
        rows.append(
            {
                "series": series,
                "largest_batch_that_fits": int(ok["batch_size"].max()) if len(ok) else None,
                "smallest_oom_batch": int(oom["batch_size"].min()) if len(oom) else None,
                "best_value": round(float(best["value"]), 1) if best is not None else None,
                "best_at_batch": int(best["batch_size"]) if best is not None else None,
                "gpu_busy_pct_at_best": (
                    round(float(best["gpu_busy_pct"]), 1)
                    if best is not None and pd.notna(best.get("gpu_busy_pct"))
                    else None
                ),
            }
        )
    return pd.DataFrame(rows, columns=cols)
