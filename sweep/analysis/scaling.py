"""Scaling efficiency of N-GPU trials: each against the 1-GPU row of the same configuration.

An N-GPU trial (``gpus_per_trial`` N > 1) trains the same per-GPU batch on each of N GPUs of one
node with DDP; perfect scaling does N times the tokens of one GPU. So

    scaling_efficiency = tokens_per_s(N GPUs) / (N x tokens_per_s(1 GPU))

with both sides the median over ok repeats, the 1-GPU side from any stored sweep whose row has
every workload field equal but ``gpus_per_trial`` and ran on the same GPU model. Pure pandas.
"""

from __future__ import annotations

import pandas as pd

from sweep.plan.config import shape_fields
from sweep.results.record import ADDED_FIELDS, OK

COMM_METRICS = ("allreduce_busbw_gb_s", "allreduce_ms_per_step", "step_time_ms_p50")
SCALING_COLUMNS = [
    "model",
    "seq_len",
    "batch_size",
    "precision",
    "gpu",
    "gpus_per_trial",
    "tokens_per_s",
    "tokens_per_s_1gpu",
    "speedup",
    "scaling_efficiency",
    "allreduce_busbw_gb_s",
    "allreduce_ms_per_step",
]


def _keys(df: pd.DataFrame) -> list[str]:
    keys = [*shape_fields(), "batch_size"]
    return [f for f in keys if f != "gpus_per_trial" and f in df.columns] + ["gpu"]


def scaling(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per N-GPU configuration and GPU with ok rows: its tokens/s, the 1-GPU tokens/s of
    the same configuration (NaN where none is stored), the speedup and the efficiency, and the
    all-reduce figures. Empty (SCALING_COLUMNS) without N-GPU rows."""
    if frame.empty or "status" not in frame:
        return pd.DataFrame(columns=SCALING_COLUMNS)
    df = frame[frame["status"] == OK].copy()
    df["gpus_per_trial"] = (
        pd.to_numeric(df["gpus_per_trial"], errors="coerce").fillna(1).astype(int)
        if "gpus_per_trial" in df
        else 1
    )
    if not (df["gpus_per_trial"] > 1).any():
        return pd.DataFrame(columns=SCALING_COLUMNS)
    df["gpu"] = df["gpu"].fillna(df["gpu_type"]).fillna("any") if "gpu" in df else "any"
    df["tokens_per_s"] = pd.to_numeric(df["tokens_per_s"], errors="coerce")
    for m in COMM_METRICS:
        df[m] = pd.to_numeric(df[m], errors="coerce") if m in df else float("nan")
    keys = _keys(df)
    # compile holds booleans and mode names, a missing field is NaN: compare them as text so that
    # keys match
    for k in keys:
        if k in ADDED_FIELDS:  # a row older than the field ran at its default
            df[k] = df[k].where(df[k].notna(), ADDED_FIELDS[k])
        df[k] = df[k].map(lambda v: "-" if v is None or v != v else str(v))
    medians = (
        df.groupby([*keys, "gpus_per_trial"], sort=True)[["tokens_per_s", *COMM_METRICS]]
        .median()
        .reset_index()
    )
    one = medians[medians["gpus_per_trial"] == 1][[*keys, "tokens_per_s"]]
    one = one.rename(columns={"tokens_per_s": "tokens_per_s_1gpu"})
    many = medians[medians["gpus_per_trial"] > 1].merge(one, on=keys, how="left")
    many["speedup"] = many["tokens_per_s"] / many["tokens_per_s_1gpu"]
    many["scaling_efficiency"] = many["speedup"] / many["gpus_per_trial"]
    for name in ("seq_len", "batch_size"):
        many[name] = pd.to_numeric(many[name], errors="coerce")
    # any other workload field that varies tells the N-GPU rows apart (as the summary does)
    varying = [k for k in keys if k not in SCALING_COLUMNS and many[k].nunique() > 1]
    return many[SCALING_COLUMNS[:4] + varying + SCALING_COLUMNS[4:]].reset_index(drop=True)


def format_scaling(frame: pd.DataFrame) -> str:
    """The scaling table as text for the run's summary ("" without N-GPU rows)."""
    table = scaling(frame)
    if table.empty:
        return ""
    text = table.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
    missing = int(table["tokens_per_s_1gpu"].isna().sum())
    note = (
        f"\n{missing} configuration(s) have no stored 1-GPU row: run them with gpus_per_trial 1"
        if missing
        else ""
    )
    return (
        "Scaling (DDP on N GPUs of one node; efficiency = tokens/s / (N x the 1-GPU tokens/s of"
        " the same configuration); all-reduce: bus bandwidth of the node, gradients' time per"
        " step without overlap):\n" + text + note
    )
