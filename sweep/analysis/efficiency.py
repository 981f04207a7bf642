"""MFU, achieved TFLOP/s, GPU utilization, power and energy per token, per batch size."""

from __future__ import annotations

import pandas as pd

from sweep.analysis.selection import with_series
from sweep.results.record import OK

EFFICIENCY_METRICS = {
    "mfu": "MFU (fraction of dense peak)",
    "tflops_per_s": "achieved TFLOP/s",
    "gpu_util_pct_mean": "GPU utilization (%)",
    "power_w_mean": "board power (W)",
    "joules_per_token": "energy per token (J)",
}


def efficiency(df: pd.DataFrame) -> pd.DataFrame:
    """Per series and batch size, the median of each efficiency metric over ok repeats (NaN where
    a record does not have it: e.g. the 2020 references have no power readings)."""
    cols = ["series", "batch_size", *EFFICIENCY_METRICS]
    d = with_series(df[df["status"] == OK]) if "status" in df else df.iloc[0:0]
    if d.empty:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame({"series": d["series"], "batch_size": d["batch_size"].astype(int)})
    for m in EFFICIENCY_METRICS:
        out[m] = pd.to_numeric(d[m], errors="coerce") if m in d else float("nan")
    return (
        out.groupby(["series", "batch_size"])
        .median()
        .reset_index()[cols]
        .sort_values(["series", "batch_size"])
        .reset_index(drop=True)
    )
