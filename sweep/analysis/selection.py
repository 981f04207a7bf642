"""Choosing rows: the combined frame of the user's rows and the shipped reference sets, the
filters the app offers, and the series label that keeps two configurations apart.

Every analysis function takes the flat results frame (``sweep.results.record.flatten`` rows, one
per trial, plus a ``dataset`` column: "measured", the name of a pooled results file or of a
shipped reference file, and a ``dataset_kind`` column saying which). Units are in the column
names, as in the records: ``*_per_s``, ``*_gib``, ``*_ms_*``, ``usd_*``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sweep.plan.config import (
    TrialConfig,
    field_names,
    filter_fields,
    shape_fields,
    workload_fields,
)
from sweep.results.record import OK, OOM, SKIPPED_OOM

ANY = "(any)"
MEASURED_DATASET = "measured"
# What a data set is (the frame's ``dataset_kind``): the user's own rows, a results file pooled
# with ``--data FILE`` (another team's measurements: a data set of its own, not a reference), or
# a reference set shipped in ui/data.
MEASURED_KIND, POOLED_KIND, REFERENCE_KIND = "measured", "data", "reference"
UNKNOWN_GPU = "?"  # a row nothing names the GPU of: never offered as a GPU to choose

# Config fields that define a series (the workload but its batch size, and where it runs): two
# rows that differ in one of these are never one series.
WORKLOAD_FIELDS = shape_fields()
# The filters the app offers, in the order shown: the main ones (MAIN_FIELDS), then every other
# match and option field (any of them may split the rows of one main selection).
FILTER_FIELDS = filter_fields()
OOM_STATUSES = (OOM, SKIPPED_OOM)
CONFIG_FIELDS = frozenset(field_names())
# The fields a report names a configuration by, in its column order: the workload but its batch
# size (a table that shows the batch says so).
CONFIG_ORDER = [f for f in workload_fields() if f != "batch_size"]


def combine(
    measured: pd.DataFrame | None,
    references: dict[str, pd.DataFrame],
    pooled: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One frame of the user's rows, every pooled results file's (``pooled``, by data set name)
    and every reference set's, with ``dataset`` (its name) and ``dataset_kind`` columns."""
    parts = []
    if measured is not None and len(measured):
        parts.append(measured.assign(dataset=MEASURED_DATASET, dataset_kind=MEASURED_KIND))
    for kind, sets in ((POOLED_KIND, pooled or {}), (REFERENCE_KIND, references)):
        for name, frame in sets.items():
            if len(frame):
                parts.append(frame.assign(dataset=name, dataset_kind=kind))
    if not parts:
        return pd.DataFrame(
            columns=["key", "status", "gpu", "dataset", "dataset_kind", "batch_size"]
        )
    out = pd.concat(parts, ignore_index=True, sort=False)
    return out


def filter_choices(df: pd.DataFrame, column: str) -> list[str]:
    """The distinct values of a column as strings (what a dropdown holds; a config field's as
    ``select`` reads them, ``value_text``: a capacity of 40.0 reads "40"), numbers in numeric
    order."""
    if column not in df or df.empty:
        return []
    values = df[column].dropna().unique().tolist()
    try:
        values.sort(key=lambda v: (float(v), str(v)))
    except (TypeError, ValueError):
        values.sort(key=str)
    out = [value_text(v) if column in CONFIG_FIELDS else str(v) for v in values]
    # a config field missing on some rows: they ran with its default ("None" for capacity_gb:
    # the whole card), which select matches (config_text), so it is a choice too, listed last
    if column in CONFIG_FIELDS and df[column].isna().any():
        out.append(_default_text(column))
    return list(dict.fromkeys(out))


def value_text(v: Any) -> str:
    """A config value as text, the way dropdowns and ``config_text`` write it (2.0 reads "2")."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def config_text(df: pd.DataFrame, name: str) -> pd.Series:
    """Config field ``name`` of each row as text (what a dropdown holds; 2.0 reads "2"), a
    missing value (a row stored before the field existed, a frame without its column) read as
    the field's default: such a row ran with it."""
    default = _default_text(name)
    if name not in df:
        return pd.Series(default, index=df.index, dtype=object)
    return df[name].map(lambda v: default if v is None or v is pd.NA or v != v else value_text(v))


def _default_text(name: str) -> str:
    """Config field ``name``'s default as text: what a row without the field ran with."""
    return value_text(TrialConfig().to_dict()[name])


def varies(df: pd.DataFrame, col: str) -> bool:
    """Whether ``col`` holds more than one value in ``df``: a config field as text with a missing
    value read as its default (``config_text``), any other column with a missing value counted as
    a value of its own. (Not ``astype(str).nunique()``: pandas 3 keeps NaN through astype(str)
    and nunique leaves it out, so an uncapped row beside a 40 GB one read as one capacity.)"""
    if col in CONFIG_FIELDS:
        return config_text(df, col).nunique() > 1
    return df[col].nunique(dropna=False) > 1


def _matches(df: pd.DataFrame, col: str, value: Any) -> pd.Series:
    # Dropdowns hand back strings; the frame holds ints and bools. Compare as text.
    if col in CONFIG_FIELDS:
        return config_text(df, col) == value_text(value)
    return df[col].astype(str) == str(value)


def select(
    df: pd.DataFrame, filters: dict[str, Any] | None = None, datasets: list[str] | None = None
) -> pd.DataFrame:
    """Rows whose fields equal the chosen values. A value of None, "" or ANY means any value;
    datasets=None keeps every dataset, a list keeps those named."""
    mask = pd.Series(True, index=df.index)
    for col, value in (filters or {}).items():
        if value in (None, "", ANY):
            continue
        if col not in df and col not in CONFIG_FIELDS:
            return df.iloc[0:0]
        mask &= _matches(df, col, value)
    if datasets is not None:
        mask &= df["dataset"].isin(datasets) if "dataset" in df else False
    return df[mask]


def default_filters(df: pd.DataFrame) -> dict[str, str]:
    """A starting selection that shows something: the (model, seq_len, precision) with the most
    ok rows of the user's own on a GPU (not a CPU smoke run), then the most GPUs side by side
    (the app compares GPUs: with the reference rows alone, fp16 has the H200 beside the 2020 A100
    and V100, bf16 the H200 alone), then the most ok rows."""
    ok = df[df["status"] == OK] if "status" in df else df
    if ok.empty or not {"model", "seq_len", "precision"} <= set(ok.columns):
        return {}
    # the user's rows on a GPU: a CPU smoke run is not what the page should open on
    on_gpu = gpu_column(ok).astype(str).str.lower() != "cpu"
    ranked = (
        ok.assign(
            _measured=(ok["dataset"].eq(MEASURED_DATASET) & on_gpu) if "dataset" in ok else 0,
            _gpu=gpu_column(ok).astype(str),
        )
        .groupby(["model", "seq_len", "precision"], dropna=True)
        .agg(measured=("_measured", "sum"), gpus=("_gpu", "nunique"), n=("status", "size"))
        .sort_values(["measured", "gpus", "n"], ascending=False)
    )
    if ranked.empty:
        return {}
    model, seq_len, precision = ranked.index[0]
    return {"model": str(model), "seq_len": str(seq_len), "precision": str(precision)}


def gpu_column(df: pd.DataFrame) -> pd.Series:
    """Each row's GPU name. A row the engine wrote without running (skipped_oom, no_gpu_type)
    has no GPU reading, only the type asked for ("A100"): it takes the name the rows of that
    type read ("NVIDIA A100-SXM4-80GB"); with no type, the GPU the other rows of its dataset read
    on the same node (one GPU name there), or in a frame of one GPU, that GPU; ``UNKNOWN_GPU``
    only when nothing says. So it never makes a series of its own beside its GPU's."""
    gpu = df["gpu"].astype(object) if "gpu" in df else pd.Series(None, index=df.index, dtype=object)
    if "env.gpu_name" in df and "gpu_type" in df:
        read = df["env.gpu_name"].notna() & df["gpu_type"].notna()
        by_type = dict(zip(df.loc[read, "gpu_type"], df.loc[read, "env.gpu_name"], strict=True))
        unread = df["env.gpu_name"].isna() & df["gpu_type"].notna()
        gpu = gpu.where(~unread, df["gpu_type"].map(by_type)).fillna(gpu)
    if gpu.isna().any() and "node" in df:
        dataset = df["dataset"].astype(str) if "dataset" in df else ""
        place = df["node"].astype(str) + "\0" + dataset
        names_at = gpu.groupby(place).agg(lambda g: g.dropna().unique().tolist())
        one = names_at[names_at.map(len) == 1].map(lambda names: names[0])
        gpu = gpu.fillna(place.map(one))
    names = gpu.dropna().unique()
    if gpu.isna().any() and len(names) == 1:
        gpu = gpu.fillna(names[0])
    return gpu.fillna(UNKNOWN_GPU)


def series_labels(df: pd.DataFrame) -> pd.Series:
    """A legend label per row: the GPU, "(ref <sweep>)" for reference rows, "(data <name>)" for
    a pooled results file's, and every workload field that varies within ``df`` (so that two
    configurations are never drawn as one line)."""
    if df.empty:
        return pd.Series([], dtype=str, index=df.index)
    label = gpu_column(df).astype(str)
    if "dataset" in df:
        kind = dataset_kind(df)
        sweep = df["sweep"] if "sweep" in df else df["dataset"]
        ref = label + " (ref " + sweep.fillna(df["dataset"]).astype(str) + ")"
        pooled = label + " (data " + df["dataset"].astype(str) + ")"
        label = label.where(kind != REFERENCE_KIND, ref).where(kind != POOLED_KIND, pooled)
    # Varying among the rows that are drawn (ok and out-of-memory): a crashed or unsupported row
    # of another attention kernel must not rename every line.
    drawn = df[df["status"].isin((OK, *OOM_STATUSES))] if "status" in df else df
    for col in WORKLOAD_FIELDS:
        # as text with a missing value read as the field's default (pandas 3's astype(str) keeps
        # NaN missing, and a missing part made the whole label NaN: the row left every chart)
        if col in df and varies(drawn, col):
            label = label + f" · {col}=" + config_text(df, col)
    return label


def with_series(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``series`` column (``series_labels``)."""
    return df.assign(series=series_labels(df))


def dataset_kind(df: pd.DataFrame) -> pd.Series:
    """Each row's kind of data set (``MEASURED_KIND``, ``POOLED_KIND``, ``REFERENCE_KIND``): its
    ``dataset_kind``; where a frame has none, the user's rows are measured and any other a
    reference."""
    if "dataset" not in df:
        return pd.Series(MEASURED_KIND, index=df.index, dtype=object)
    guess = df["dataset"].map(lambda d: MEASURED_KIND if d == MEASURED_DATASET else REFERENCE_KIND)
    return df["dataset_kind"].fillna(guess) if "dataset_kind" in df else guess


def dataset_label(name: str, kind: str) -> str:
    """A data set as tables and notes name it: "your results", "data <name>" (a pooled results
    file) or "reference <name>" (a shipped set)."""
    if kind == MEASURED_KIND:
        return "your results"
    return f"{'data' if kind == POOLED_KIND else 'reference'} {name}"


def is_reference(df: pd.DataFrame) -> pd.Series:
    """True for rows of a shipped reference set, False for the user's and a pooled file's."""
    return dataset_kind(df) == REFERENCE_KIND


def short_gpu(name: Any) -> str:
    """ "NVIDIA H200" -> "H200"; "Tesla V100-DGXS-16GB" -> "V100-DGXS-16GB"."""
    text = str(name)
    for prefix in ("NVIDIA ", "Tesla "):
        text = text.removeprefix(prefix)
    return text


def numeric(df: pd.DataFrame, col: str) -> pd.Series:
    """Column ``col`` as numbers: NaN where a cell is not one, all NaN where ``col`` is absent."""
    if col not in df:
        return pd.Series(float("nan"), index=df.index)
    return pd.to_numeric(df[col], errors="coerce")


def capped(df: pd.DataFrame) -> pd.Series:
    """True for rows run under an allocator cap (capacity_gb: a smaller card emulated on a
    bigger one): what fits is that card's, the speed is not, so no rate is ever read from them."""
    return numeric(df, "capacity_gb").notna()
