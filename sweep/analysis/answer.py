"""The answer table: for one model, sequence length and precision, one row per GPU with what a
person choosing a GPU asks first (fastest rate and where, what fits, what it costs, how much
faster than a baseline, how far the figure can be trusted, and what else differs).

One pure function, ``answer``, builds it for the web app and for ``python -m sweep compare``.

Matching. Rows always agree in the match fields (``match_fields()``: model, task, mode,
sequence length, precision, GPUs per trial, fine-tuning method). By default (relaxed) they may
differ in the option fields (``option_fields()``: attention kernel, compile, CUDA graph,
optimizer, gradient checkpointing, harness, and every option added since) and in software: each
GPU's row is its configuration closest to the baseline's (fewest options differing; the faster on
a tie), and "Differs in" names what differs by its label, so a ratio between a 2020 row and a new
one says what it mixes. ``strict=True`` keeps only the
configurations equal to the baseline's in every option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sweep.analysis.cost import DEFAULT_PRICES, _has_word, price_for
from sweep.analysis.interference import without_perturbed
from sweep.analysis.landing import what_exists
from sweep.analysis.parity import parity_marks
from sweep.analysis.selection import (
    OOM_STATUSES,
    capped,
    config_text,
    dataset_kind,
    dataset_label,
    gpu_column,
    numeric,
    select,
    short_gpu,
)
from sweep.plan.config import MAIN_FIELDS, field_label, match_fields, option_fields
from sweep.results.memory_model import predicted_limits
from sweep.results.record import OK
from sweep.results.trust import host_bound

# Always equal between compared rows: what is measured (an N-GPU trial's rate is N GPUs').
MATCH_FIELDS = match_fields()
# May differ in relaxed matching, and are then named in "Differs in" by their label.
OPTION_FIELDS = option_fields()
# Card sizes of the answer (GB as sold): V100, A10G/L4, A100 40GB, A100/H100 80GB, H200.
ANSWER_CAPACITIES_GB = (16, 24, 40, 80, 141)

TRUST_GPU_BOUND = "measured, GPU-bound"
TRUST_HOST_BOUND = "measured, host-bound"
TRUST_UNREAD = "measured, GPU busy not read"
TRUST_2020 = "2020 host timers"


def fits_column(gb: float) -> str:
    return f"Fits {gb:g} GB (predicted)"


# "Tokens/s (like baseline)" is the rate of each GPU's configuration closest to the baseline's
# (what the speedups divide); "GPU's best tokens/s" is the GPU's fastest, whatever its options.
COLUMNS = [  # the figures first: at a phone's width only the first columns show
    "GPU",
    "Tokens/s (like baseline)",
    "Speedup",
    "At batch",
    "Speedup at equal batch",
    "Equal batch",
    "GPU's best tokens/s",
    "GPU's best config",
    "Largest batch run",
    "First OOM batch",
    *(fits_column(c) for c in ANSWER_CAPACITIES_GB),
    "$ per million tokens",
    "GPU busy %",
    "Step time CV %",
    "Trust",
    "Loss parity",
    "Differs in",
    "Data",
]

# Whole numbers, empty where unknown (pandas' nullable integers: no "256.0").
INT_COLUMNS = [
    "Tokens/s (like baseline)",
    "At batch",
    "Equal batch",
    "GPU's best tokens/s",
    "Largest batch run",
    "First OOM batch",
    *(fits_column(c) for c in ANSWER_CAPACITIES_GB),
]


@dataclass
class Answer:
    """The table (``COLUMNS``, one row per GPU, fastest first), the baseline GPU it was compared
    against, and sentences on what was left out or cannot be said."""

    table: pd.DataFrame
    baseline: str | None
    notes: list[str] = field(default_factory=list)


def gpu_names(df: pd.DataFrame) -> pd.Series:
    """The short GPU name of each row ("H200", "A100-SXM4-40GB"; "cpu" for CPU rows)."""
    if df.empty:
        return pd.Series([], dtype=str, index=df.index)
    return gpu_column(df).map(short_gpu)


def trust_of(row: pd.Series | dict[str, Any]) -> str:
    """The trust badge of one measured row: host timers of the 2020 method, host-bound, GPU-bound,
    or GPU busy not read (the CPU, rows without NVML)."""
    if pd.notna(row.get("forward_ms_host_mean")) and pd.isna(row.get("step_time_ms_p50")):
        return TRUST_2020
    bound = host_bound(
        {
            "gpu_util_pct_mean": row.get("gpu_util_pct_mean"),
            "launch_bound_pct": row.get("launch_bound_pct"),
        }
    )
    return TRUST_UNREAD if bound is None else TRUST_HOST_BOUND if bound else TRUST_GPU_BOUND


def _software(rows: pd.DataFrame) -> str | None:
    """The torch version the rows ran (major.minor), None where not recorded."""
    if "env.torch_version" not in rows:
        return None
    v = rows["env.torch_version"].dropna().astype(str)
    return ".".join(v.mode().iloc[0].split(".")[:2]) if len(v) else None


def resolve_gpu(name: str, names: list[str]) -> str | None:
    """The GPU of ``names`` that ``name`` means: the same short name, else the one name that
    holds it as a word ("A100" -> "A100-SXM4-40GB"), case-insensitive; None if none or several."""
    want = short_gpu(name).lower()
    exact = [n for n in names if n.lower() == want]
    if exact:
        return exact[0]
    words = [n for n in names if _has_word(n.lower(), want)]
    return words[0] if len(words) == 1 else None


@dataclass
class _Variant:
    """One GPU's rows of one configuration (options and dataset equal)."""

    gpu: str
    dataset: str
    options: dict[str, str]
    rows: pd.DataFrame
    per_batch: pd.Series  # median tokens/s by batch size, ok rows

    @property
    def best(self) -> float:
        return float(self.per_batch.max()) if len(self.per_batch) else float("nan")


def _variants(sel: pd.DataFrame, fields: tuple[str, ...]) -> dict[str, list[_Variant]]:
    """Each GPU's configurations: its rows grouped by ``fields`` (the options, and the precision
    where none was chosen) and dataset."""
    d = sel.assign(_gpu=gpu_names(sel), _tps=numeric(sel, "tokens_per_s"))
    keys = pd.DataFrame({f: config_text(d, f) for f in fields}, index=d.index)
    d = d.assign(_var=list(keys.itertuples(index=False, name=None)))
    out: dict[str, list[_Variant]] = {}
    for (gpu, dataset, var), rows in d.groupby(["_gpu", "dataset", "_var"], sort=True):
        ok = rows[(rows["status"] == OK) & rows["_tps"].notna()]
        per_batch = ok.groupby("batch_size")["_tps"].median().sort_index()
        if per_batch.empty:
            continue  # only failures: no configuration measured here
        options = dict(zip(fields, var, strict=True))
        out.setdefault(gpu, []).append(_Variant(gpu, dataset, options, rows, per_batch))
    return out


def _differs(v: _Variant, base: _Variant) -> str:
    bits = [
        f"{field_label(f)} {v.options[f]} vs {base.options[f]}"
        for f in v.options
        if v.options[f] != base.options[f]
    ]
    sw, sw_base = _software(v.rows), _software(base.rows)
    if sw and sw_base and sw != sw_base:
        bits.append(f"software torch {sw} vs {sw_base}")
    t, t_base = _best_row_trust(v), _best_row_trust(base)
    if (t == TRUST_2020) != (t_base == TRUST_2020):
        bits.append(
            "method 2020 host timers" + (" (this row)" if t == TRUST_2020 else " (baseline)")
        )
    return "; ".join(bits)


def _best_rows(v: _Variant) -> pd.DataFrame:
    b = v.per_batch.idxmax()
    return v.rows[(v.rows["status"] == OK) & (v.rows["batch_size"] == b)]


def _best_row_trust(v: _Variant) -> str:
    trusts = _best_rows(v).apply(trust_of, axis=1)
    return trusts.mode().iloc[0] if len(trusts) else TRUST_UNREAD


def _median(rows: pd.DataFrame, col: str, scale: float = 1.0, digits: int = 1) -> float | None:
    v = numeric(rows, col).dropna()
    return round(float(v.median()) * scale, digits) if len(v) else None


def _limits(v: _Variant) -> dict[float, int | None]:
    """Predicted largest batch per card size from the memory model (None for a configuration
    with fewer than two ok batches or no peak memory recorded)."""
    pred = predicted_limits(v.rows, ANSWER_CAPACITIES_GB)
    if pred.empty:
        return {}
    # several groups only where another workload field (the device) differs: the one most fitted
    top = pred.sort_values("fit_points", ascending=False).drop_duplicates("capacity_gb")
    return {
        float(c): (None if pd.isna(b) else int(b))
        for c, b in zip(top["capacity_gb"], top["predicted_max_batch"], strict=True)
    }


def _data_label(v: _Variant) -> str:
    sweeps = sorted(set(v.rows.loc[v.rows["status"] == OK, "sweep"].dropna().astype(str)))
    where = dataset_label(v.dataset, dataset_kind(v.rows).iloc[0])
    return where + (f" ({', '.join(sweeps)})" if sweeps else "")


def _row(
    v: _Variant, base: _Variant | None, prices: pd.DataFrame, marks: dict[str, str]
) -> dict[str, Any]:
    ok_batches = v.per_batch.index
    oom = v.rows[v.rows["status"].isin(OOM_STATUSES) & ~v.rows["batch_size"].isin(ok_batches)]
    best_at = int(v.per_batch.idxmax())
    best_rows = _best_rows(v)
    full_name = str(best_rows["gpu"].dropna().iloc[0]) if best_rows["gpu"].notna().any() else v.gpu
    match = price_for(full_name, prices)
    limits = _limits(v)
    row: dict[str, Any] = {
        "GPU": v.gpu,
        "Data": _data_label(v),
        "Trust": _best_row_trust(v),
        "Loss parity": next((marks[k] for k in best_rows["key"] if k in marks), ""),
        "Tokens/s (like baseline)": round(v.best),
        "At batch": best_at,
        "Largest batch run": int(max(ok_batches)),
        "First OOM batch": int(oom["batch_size"].min()) if len(oom) else None,
        **{fits_column(c): limits.get(float(c)) for c in ANSWER_CAPACITIES_GB},
        "$ per million tokens": round(match[0] / (v.best * 3600) * 1e6, 4) if match else None,
        "GPU busy %": _median(best_rows, "gpu_util_pct_mean"),
        "Step time CV %": _median(best_rows, "step_time_cv", 100.0),
        "Differs in": "" if base is None or v is base else _differs(v, base),
    }
    if base is not None:
        row["Speedup"] = round(v.best / base.best, 2)
        common = v.per_batch.index.intersection(base.per_batch.index)
        if len(common):
            b = int(max(common))
            row["Speedup at equal batch"] = round(float(v.per_batch[b] / base.per_batch[b]), 2)
            row["Equal batch"] = b
    return row


def _closest(variants: list[_Variant], base: _Variant) -> _Variant:
    def distance(v: _Variant) -> tuple[int, float]:
        return (sum(v.options[f] != base.options[f] for f in base.options), -v.best)

    return min(variants, key=distance)


def _precision(v: _Variant) -> str:
    p = v.rows["precision"].dropna().astype(str) if "precision" in v.rows else pd.Series()
    return p.iloc[0] if len(p) else ""


def _own_best(chosen: _Variant, vs: list[_Variant]) -> dict[str, Any]:
    """The GPU's own best rate among ``vs`` (whatever its options) and how its configuration
    differs from the row's, which is the one closest to the baseline's."""
    top = max(vs, key=lambda v: v.best)
    config = ", ".join(
        f"{field_label(k)} {v}" for k, v in top.options.items() if chosen.options[k] != v
    )
    return {
        "Precision": _precision(chosen),
        "GPU's best tokens/s": round(top.best),
        "GPU's best config": config or "this row's",
    }


def _chosen(
    gpu: str, vs: list[_Variant], base: _Variant, strict: bool, notes: list[str]
) -> _Variant | None:
    """The GPU's row among configurations ``vs``: the baseline itself, else the configuration
    closest to it (strict: equal options, else None and a note)."""
    if base in vs:
        return base
    if not strict:
        return _closest(vs, base)
    same = [v for v in vs if v.options == base.options]
    if not same:
        notes.append(
            f"{gpu}: left out (strict): no configuration with the baseline's options "
            f"({', '.join(f'{k}={v}' for k, v in base.options.items())})."
        )
        return None
    return max(same, key=lambda v: v.best)


def answer(
    frame: pd.DataFrame,
    model: Any,
    seq_len: Any,
    precision: Any = None,
    baseline: str | None = None,
    strict: bool = False,
    gpus: list[str] | None = None,
    prices: pd.DataFrame | None = None,
    filters: dict[str, Any] | None = None,
) -> Answer:
    """The answer table for ``model`` at ``seq_len`` (and ``precision``; None: every precision,
    one row per GPU and precision, with a "Precision" column where several) over the rows of
    ``frame`` (a combined results frame, ``sweep.analysis.selection.combine``), optionally
    narrowed by more ``filters`` and to ``gpus`` (short names). ``baseline``: the GPU the
    speedups divide by (default: the slowest).
    ``prices``: the hourly price table (``sweep.analysis.cost``; default: its defaults)."""
    prices = DEFAULT_PRICES if prices is None else prices
    notes: list[str] = []
    frame = without_perturbed(frame)  # the interference check's run among the others
    sel = select(frame, {**(filters or {}), "model": model, "seq_len": seq_len})
    # No precision chosen: every precision measured, one row per GPU and precision (a GPU
    # measured in fp16 only must not vanish because another GPU has more bf16 rows).
    any_precision = precision in (None, "")
    fields = (*OPTION_FIELDS, "precision") if any_precision else OPTION_FIELDS
    sel = select(sel, {"precision": None if any_precision else precision})
    if gpus:
        present = sorted(set(gpu_names(sel)))
        wanted = {resolve_gpu(g, present) for g in gpus} - {None}
        sel = sel[gpu_names(sel).isin(wanted)]
    frame = frame[~capped(frame)]
    if capped(sel).any():  # an emulated card's speed is the bigger card's: never a rate here
        sel = sel[~capped(sel)]
        notes.append(
            "Rows run under a capacity_gb cap (emulated cards) are left out: their speed "
            "is the GPU they ran on, not the card emulated."
        )
    for name in MATCH_FIELDS:  # task, mode, GPUs per trial, ...: the most measured one
        if name in MAIN_FIELDS:
            continue
        values = config_text(sel, name)
        if values.nunique() > 1:
            counts = values[sel["status"] == OK].value_counts()
            keep = counts.idxmax() if len(counts) else values.iloc[0]
            sel = sel[values == keep]
            notes.append(f"{name} {keep} shown (filter on {name} for the others).")
    variants = _variants(sel, fields)
    if not variants:
        what = f"{model} at seq_len {seq_len}" + (f", {precision}" if precision else "")
        chosen = {**(filters or {}), "model": model, "seq_len": seq_len, "precision": precision}
        notes.append(f"No GPU has an ok measurement of {what}. {what_exists(frame, chosen)}")
        return Answer(pd.DataFrame(columns=COLUMNS), None, notes)
    fastest = {g: max(vs, key=lambda v: v.best) for g, vs in variants.items()}
    base_gpu = resolve_gpu(baseline, sorted(variants)) if baseline else None
    if baseline and base_gpu is None:
        notes.append(f"Baseline {baseline} has no ok row here; the slowest GPU is the baseline.")
    if base_gpu is None:
        base_gpu = min(fastest, key=lambda g: fastest[g].best)
    base = fastest[base_gpu]
    # a knob's plain row may differ in a match field (bf16-true against bf16-mixed): the model's
    # rows, not the selection's
    marks = (
        parity_marks(frame[frame["model"].astype(str) == str(model)]) if "model" in frame else {}
    )
    rows = []
    for gpu, all_vs in variants.items():
        by_precision: dict[str, list[_Variant]] = {}
        for v in all_vs:
            by_precision.setdefault(v.options.get("precision", ""), []).append(v)
        for vs in by_precision.values():
            chosen = _chosen(gpu, vs, base, strict, notes)
            if chosen is not None:
                rows.append({**_row(chosen, base, prices, marks), **_own_best(chosen, vs)})
    several = any_precision and len({r["Precision"] for r in rows}) > 1
    columns = [*COLUMNS[:1], "Precision", *COLUMNS[1:]] if several else COLUMNS
    table = pd.DataFrame(rows, columns=columns)
    table = table.sort_values("Tokens/s (like baseline)", ascending=False)
    for col in INT_COLUMNS:
        table[col] = pd.array(table[col].tolist(), dtype="Int64")
    table = table.rename(columns={"Speedup": f"Speedup vs {base_gpu}"})
    if table[fits_column(ANSWER_CAPACITIES_GB[0])].isna().any():
        notes.append(
            "No prediction where a GPU has fewer than two ok batches or no peak memory recorded "
            "(the 2020 rows recorded a mean, not a peak)."
        )
    return Answer(table.reset_index(drop=True), base_gpu, notes)


def speedup_column(table: pd.DataFrame) -> str | None:
    """The name of the answer table's speedup column ("Speedup vs <GPU>")."""
    return next((c for c in table.columns if c.startswith("Speedup vs ")), None)
