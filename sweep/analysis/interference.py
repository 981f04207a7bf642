"""The interference check: how much co-located trials slowed a reference configuration.

A sweep with ``interference: {...}`` runs its reference configuration alone on the node first
(repeat INTERFERENCE_ALONE), then again handed out first among the sweep's trials (repeat
INTERFERENCE_FULL), so that it measures while they fill the node's other GPUs. The slowdown is

    slowdown_pct = (tokens_per_s alone / tokens_per_s among the others - 1) x 100

and ``beside`` counts the sweep's trials whose run overlapped the second one's (from the rows'
start and end times, to the second). Pure pandas.
"""

from __future__ import annotations

import pandas as pd

from sweep.analysis.selection import config_text
from sweep.plan.config import workload_fields
from sweep.plan.grid import INTERFERENCE_ALONE, INTERFERENCE_FULL
from sweep.results.record import OK

INTERFERENCE_COLUMNS = [
    "model",
    "seq_len",
    "batch_size",
    "precision",
    "gpu",
    "status_alone",
    "status_full",
    "tokens_per_s_alone",
    "tokens_per_s_full",
    "step_time_ms_p50_alone",
    "step_time_ms_p50_full",
    "slowdown_pct",
    "beside",
]


def without_perturbed(frame: pd.DataFrame) -> pd.DataFrame:
    """Every row but the check's second run, which measured among the others on purpose: the
    views compare configurations, and that row would pull its configuration's medians down."""
    if frame.empty or "repeat" not in frame:
        return frame
    return frame[pd.to_numeric(frame["repeat"], errors="coerce") != INTERFERENCE_FULL]


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the interference check's rows, every other row)."""
    if frame.empty or "repeat" not in frame:
        return frame.iloc[0:0], frame
    mine = pd.to_numeric(frame["repeat"], errors="coerce").isin(
        [INTERFERENCE_ALONE, INTERFERENCE_FULL]
    )
    return frame[mine], frame[~mine]


def interference(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per reference configuration with both rows stored (alone and among the others):
    their statuses, tokens/s, median step times, the slowdown (NaN unless both are ok) and how
    many other trials ran beside the second."""
    check, rest = split(frame)
    if check.empty:
        return pd.DataFrame(columns=INTERFERENCE_COLUMNS)
    alone = check[pd.to_numeric(check["repeat"]) == INTERFERENCE_ALONE]
    full = check[pd.to_numeric(check["repeat"]) == INTERFERENCE_FULL]

    # the two runs of one reference: the same sweep and workload
    def keys(rows: pd.DataFrame) -> list[tuple]:
        fields = (config_text(rows, f) for f in workload_fields())
        return list(zip(rows["sweep"].astype(str), *fields, strict=True))

    full_keys, out = keys(full), []
    for (_, a), key in zip(alone.iterrows(), keys(alone), strict=True):
        same = full[[k == key for k in full_keys]]
        if same.empty:
            continue
        f = same.iloc[0]
        ok = a["status"] == OK and f["status"] == OK
        ta, tf = pd.to_numeric(a.get("tokens_per_s")), pd.to_numeric(f.get("tokens_per_s"))
        out.append(
            {
                "model": a["model"],
                "seq_len": a["seq_len"],
                "batch_size": a["batch_size"],
                "precision": a["precision"],
                "gpu": a.get("gpu"),
                "status_alone": a["status"],
                "status_full": f["status"],
                "tokens_per_s_alone": ta,
                "tokens_per_s_full": tf,
                "step_time_ms_p50_alone": a.get("step_time_ms_p50"),
                "step_time_ms_p50_full": f.get("step_time_ms_p50"),
                "slowdown_pct": (ta / tf - 1.0) * 100.0 if ok and tf else float("nan"),
                "beside": _overlapping(f, rest),
            }
        )
    return pd.DataFrame(out, columns=INTERFERENCE_COLUMNS)


def _overlapping(row: pd.Series, others: pd.DataFrame) -> int:
    """How many of ``others`` ran while ``row`` did (start and end times overlap)."""
    start, end = _time(row.get("started_at")), _time(row.get("finished_at"))
    if start is None or end is None or others.empty or "started_at" not in others:
        return 0
    n = 0
    for s, e in zip(others["started_at"], others["finished_at"], strict=True):
        s, e = _time(s), _time(e)
        if s is not None and e is not None and s <= end and e >= start:
            n += 1
    return n


def _time(value) -> pd.Timestamp | None:
    if value is None or value != value:
        return None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        return None


def format_interference(frame: pd.DataFrame) -> str:
    """The interference check as text for the run's summary ("" without one)."""
    table = interference(frame)
    if table.empty:
        return ""
    text = table.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
    return (
        "Interference (the reference configuration alone on the node, then among the sweep's "
        "trials; slowdown = alone / among others - 1; beside: trials that overlapped it):\n" + text
    )
