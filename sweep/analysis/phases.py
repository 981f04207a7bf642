"""Where a training step goes: forward, backward, optimizer and the rest, per batch size."""

from __future__ import annotations

import pandas as pd

from sweep.analysis.selection import with_series
from sweep.results.record import OK

# Time split: synchronized medians (this project) or the 2020 host timers (reference rows).
PHASES = ("forward", "backward", "optimizer", "other")

_PHASE_SOURCES = {
    # synchronized medians (this project), then the 2020 host timers
    "forward": ("forward_ms_p50", "forward_ms_host_mean"),
    "backward": ("backward_ms_p50", "backward_ms_host_mean"),
    "optimizer": ("optimizer_ms_p50", "optimizer_ms_host_mean"),
    "other": ("other_ms_p50", "other_ms_host_mean"),
}


def time_breakdown(df: pd.DataFrame) -> pd.DataFrame:
    """Per series and batch size, the median ms of each phase of a step (ok rows only).

    Columns: series, batch_size, forward_ms, backward_ms, optimizer_ms, other_ms, step_ms,
    host_timers (True where the phases are the 2020 reference's unsynchronized host timers).
    ``other_ms`` is what the step took beyond the named phases when the record does not say.
    """
    cols = ["series", "batch_size"] + [f"{p}_ms" for p in PHASES] + ["step_ms", "host_timers"]
    d = with_series(df[df["status"] == OK]) if "status" in df else df.iloc[0:0]
    if d.empty:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame({"series": d["series"], "batch_size": d["batch_size"].astype(int)})
    host = pd.Series(False, index=d.index)
    for phase, (sync, hostname) in _PHASE_SOURCES.items():
        a = (
            pd.to_numeric(d[sync], errors="coerce")
            if sync in d
            else pd.Series(float("nan"), index=d.index)
        )
        b = pd.to_numeric(d[hostname], errors="coerce") if hostname in d else a * float("nan")
        out[f"{phase}_ms"] = a.fillna(b)
        host |= a.isna() & b.notna()
    step = pd.Series(float("nan"), index=d.index)
    for name in ("step_time_ms_p50", "step_time_ms_mean"):
        if name in d:
            step = step.fillna(pd.to_numeric(d[name], errors="coerce"))
    named = out[["forward_ms", "backward_ms", "optimizer_ms"]].sum(axis=1, min_count=1)
    out["other_ms"] = out["other_ms"].fillna((step - named).clip(lower=0))
    out["step_ms"] = step
    out["host_timers"] = host
    out = out.dropna(subset=["forward_ms", "backward_ms", "optimizer_ms"], how="all")
    agg = {c: "median" for c in cols if c.endswith("_ms")} | {"host_timers": "any"}
    return (
        out.groupby(["series", "batch_size"])
        .agg(agg)
        .reset_index()[cols]
        .round(3)
        .sort_values(["series", "batch_size"])
        .reset_index(drop=True)
    )
