"""The results table (every column, the useful ones first), one row's environment, and trials
counted by status."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import pandas as pd

from sweep.analysis.selection import ANY
from sweep.plan.config import MAIN_FIELDS, field_label, field_names, workload_fields
from sweep.results.record import ENV_KEYS

# The configuration: the main fields, the batch size, then every other workload field.
_CONFIG = [*MAIN_FIELDS, "batch_size"]
FIRST_COLUMNS = [
    "key",
    "dataset",
    "status",
    "gpu",
    *_CONFIG,
    *(f for f in workload_fields() if f not in _CONFIG),
    "sequences_per_s",
    "tokens_per_s",
    "step_time_ms_p50",
    "peak_allocated_gib",
    "nvml_peak_used_gib",
    "mfu",
    "mfu_analytic",
    "gpu_util_pct_mean",
    "step_time_cv",
    "error",
]


def table(df: pd.DataFrame, search: str = "", status: str | None = None) -> pd.DataFrame:
    """Every column, the most useful first; rows whose any cell contains ``search``
    (case-insensitive) and of the chosen status."""
    d = df
    if status not in (None, "", ANY):
        d = d[d["status"] == status]
    if search and search.strip():
        needle = search.strip().lower()
        text = d.astype(str).apply(lambda col: col.str.lower().str.contains(needle, regex=False))
        d = d[text.any(axis=1)]
    first = [c for c in FIRST_COLUMNS if c in d]
    rest = [c for c in d.columns if c not in first]
    # Columns with no value in any row are noise in a wide table.
    rest = [c for c in rest if d[c].notna().any()]
    return d[first + rest].reset_index(drop=True)


def download_name(what: str, filters: dict[str, Any], extra: Iterable[str] = ()) -> str:
    """A file name (no extension) that says what a downloaded table holds: "<what>_<model>_
    seq<N>_<precision>", then each other chosen filter as field-value and ``extra``; "(any)" and
    empty choices are left out, a model of "(any)" reads "all-models". Only letters, digits, ".",
    "-" and "_" (safe in every file system)."""
    parts = [what, str(filters.get("model") or ANY)]
    if filters.get("seq_len") not in (None, "", ANY):
        parts.append(f"seq{filters['seq_len']}")
    if filters.get("precision") not in (None, "", ANY):
        parts.append(str(filters["precision"]))
    parts += [
        f"{k}-{v}"
        for k, v in filters.items()
        if k not in ("model", "seq_len", "precision") and v not in (None, "", ANY)
    ]
    parts += [str(e) for e in extra if e]
    parts = ["all-models" if p == ANY else p for p in parts]
    return "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", p).strip("-") for p in parts)[:150]


# Words of column names as people write them (units included).
_WORDS = {
    "gpu": "GPU",
    "pct": "%",
    "gib": "GiB",
    "gb": "GB",
    "ms": "ms",
    "usd": "$",
    "mfu": "MFU",
    "cv": "CV",
    "oom": "OOM",
    "tflops": "TFLOP/s",
    "w": "W",
    "j": "J",
    "r2": "R²",
    "seq": "sequence",
    "nvml": "NVML",
    "util": "utilization",
    "env.": "",
}
_CONFIG_FIELDS = frozenset(field_names())


def header(name: str) -> str:
    """A column name for people: "gpu_busy_pct_at_best" -> "GPU busy % at best",
    "tokens_per_s" -> "Tokens/s", "max_batch_40gb" -> "Max batch 40 GB"; a configuration field
    by its label ("seq_len" -> "Sequence length (tokens)")."""
    if name in _CONFIG_FIELDS:
        return field_label(name)
    parts = str(name).split("_")
    words: list[str] = []
    for i, w in enumerate(parts):
        if w == "s" and i and parts[i - 1] == "per":
            words[-1] = words[-2] + "/s" if len(words) > 1 else "/s"
            del words[-2]
        elif w.endswith("gb") and w[:-2].isdigit():
            words.append(f"{w[:-2]} GB")
        else:
            words.append(_WORDS.get(w, w))
    out = " ".join(words).replace("TFLOP/s/s", "TFLOP/s")
    return out[:1].upper() + out[1:]


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` for reading: headers for people (``header``), floats to 4 significant digits
    (whole numbers from 1,000 up), whole-number columns as integers."""
    out = frame.copy()
    for col in out.columns:
        values = out[col]
        if pd.api.types.is_float_dtype(values):
            finite = values.dropna()
            if len(finite) and (finite == finite.round()).all():
                out[col] = pd.array(values.round().tolist(), dtype="Int64")
            else:
                out[col] = values.map(_four_digits)
    return out.rename(columns={c: header(c) for c in out.columns})


def _four_digits(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return v
    if abs(v) >= 1000:
        return round(v)
    return float(f"{v:.4g}")


def present(value: Any) -> bool:
    """A cell holds a value (neither None nor NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def environment(row: dict[str, Any] | pd.Series) -> pd.DataFrame:
    """The environment of one trial as (key, value) rows: every ``env.*`` column with a value,
    the known keys first, then where and when it ran and where the row comes from."""
    keys = [f"env.{k}" for k in ENV_KEYS] + sorted(
        k for k in row.keys() if str(k).startswith("env.") and k[4:] not in ENV_KEYS
    )
    rows = [(k[4:], row.get(k)) for k in keys if present(row.get(k))]
    for k in (
        "node",
        "gpu_type",
        "sweep",
        "started_at",
        "finished_at",
        "schema_version",
        "source",
        "provenance",
        "error_type",
        "error",
    ):
        if present(row.get(k)):
            rows.append((k, row.get(k)))
    return pd.DataFrame(rows, columns=["field", "value"]).astype(str)


def status_counts_table(counts: dict[str, int]) -> pd.DataFrame:
    """Counts by status, biggest first, with a total row."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(counts.values())
    rows = [(s, n, round(100 * n / total, 1) if total else 0.0) for s, n in items]
    rows.append(("total", total, 100.0 if total else 0.0))
    return pd.DataFrame(rows, columns=["status", "trials", "percent"])
