"""What the web app shows, as plain pandas functions: filter, pivot, fit, cost.

Every function takes the flat results frame (``sweep.results.record.flatten`` rows, one per
trial, plus a ``dataset`` column: "measured" or the name of a shipped reference file) and
returns a DataFrame or plain values. No Gradio, no plotting, no torch: tested on a recorded set
of trials.

Units are in the column names, as in the records: ``*_per_s``, ``*_gib``, ``*_ms_*``, ``usd_*``.
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Any

import pandas as pd

from sweep.plan.config import TrialConfig, field_names, workload_fields
from sweep.results.record import ENV_KEYS, OK, OOM, SKIPPED_OOM
from sweep.results.trust import host_bound

ANY = "(any)"
MEASURED_DATASET = "measured"

# Config fields that define a series (a workload but its batch size): two rows that differ in one
# of these are never one series.
WORKLOAD_FIELDS = tuple(f for f in workload_fields() if f != "batch_size")
# The filters the app offers, in the order shown.
FILTER_FIELDS = (
    "model",
    "seq_len",
    "precision",
    "attention",
    "compile",
    "harness",
    "optimizer",
    "mode",
    "gradient_checkpointing",
)
OOM_STATUSES = (OOM, SKIPPED_OOM)

THROUGHPUT_METRICS = {"sequences_per_s": "sequences / s", "tokens_per_s": "tokens / s"}
# Memory metrics, most useful first. nvml_mean_used_gib exists only on the 2020 reference rows
# (a mean of nvidia-smi samples, not a peak: see ui/data/ and scripts/convert_seed_results.py).
MEMORY_METRICS = {
    "nvml_peak_used_gib": "peak device memory used, NVML (GiB)",
    "peak_reserved_gib": "peak reserved by torch (GiB)",
    "peak_allocated_gib": "peak allocated by torch (GiB)",
    "nvml_mean_used_gib": "mean device memory used, nvidia-smi (GiB, 2020 reference: not a peak)",
}
# Nominal capacities of common GPUs, in GB as marketed: 16 (V100), 24 (A10G/L4/RTX 4090),
# 40 (A100 40GB), 80 (A100/H100 80GB), 141 (H200). Drawn as GiB; usable memory is a bit lower.
CAPACITIES_GB = (16, 24, 40, 80, 141)
# Time split: synchronized medians (this project) or the 2020 host timers (reference rows).
PHASES = ("forward", "backward", "optimizer", "other")
EFFICIENCY_METRICS = {
    "mfu": "MFU (fraction of dense peak)",
    "tflops_per_s": "achieved TFLOP/s",
    "gpu_util_pct_mean": "GPU utilization (%)",
    "power_w_mean": "board power (W)",
    "joules_per_token": "energy per token (J)",
}


# -- selecting -------------------------------------------------------------------------------


def combine(measured: pd.DataFrame | None, references: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One frame of the user's rows and every reference set, with a ``dataset`` column."""
    parts = []
    if measured is not None and len(measured):
        parts.append(measured.assign(dataset=MEASURED_DATASET))
    for name, frame in references.items():
        if len(frame):
            parts.append(frame.assign(dataset=name))
    if not parts:
        return pd.DataFrame(columns=["key", "status", "gpu", "dataset", "batch_size"])
    out = pd.concat(parts, ignore_index=True, sort=False)
    return out


def choices(df: pd.DataFrame, column: str) -> list[str]:
    """The distinct values of a column as strings (what a dropdown holds), numbers in numeric
    order."""
    if column not in df or df.empty:
        return []
    values = df[column].dropna().unique().tolist()
    try:
        values.sort(key=lambda v: (float(v), str(v)))
    except (TypeError, ValueError):
        values.sort(key=str)
    return [str(v) for v in values]


def _matches(series: pd.Series, value: Any) -> pd.Series:
    # Dropdowns hand back strings; the frame holds ints and bools. Compare as text.
    return series.astype(str) == str(value)


def select(
    df: pd.DataFrame, filters: dict[str, Any] | None = None, datasets: list[str] | None = None
) -> pd.DataFrame:
    """Rows whose fields equal the chosen values. A value of None, "" or ANY means any value;
    datasets=None keeps every dataset, a list keeps those named."""
    mask = pd.Series(True, index=df.index)
    for col, value in (filters or {}).items():
        if value in (None, "", ANY):
            continue
        if col not in df:
            return df.iloc[0:0]
        mask &= _matches(df[col], value)
    if datasets is not None:
        mask &= df["dataset"].isin(datasets) if "dataset" in df else False
    return df[mask]


def default_filters(df: pd.DataFrame) -> dict[str, str]:
    """A starting selection that shows something: the (model, seq_len, precision) with the most
    ok rows, measured rows first."""
    ok = df[df["status"] == OK] if "status" in df else df
    if ok.empty or not {"model", "seq_len", "precision"} <= set(ok.columns):
        return {}
    ranked = (
        ok.assign(_measured=ok["dataset"].eq(MEASURED_DATASET) if "dataset" in ok else 0)
        .groupby(["model", "seq_len", "precision"], dropna=True)
        .agg(measured=("_measured", "sum"), n=("status", "size"))
        .sort_values(["measured", "n"], ascending=False)
    )
    if ranked.empty:
        return {}
    model, seq_len, precision = ranked.index[0]
    return {"model": str(model), "seq_len": str(seq_len), "precision": str(precision)}


def series_labels(df: pd.DataFrame) -> pd.Series:
    """A legend label per row: the GPU, "(ref <sweep>)" for reference rows, and every workload
    field that varies within ``df`` (so that two configurations are never drawn as one line)."""
    if df.empty:
        return pd.Series([], dtype=str, index=df.index)
    gpu = df["gpu"].fillna(df.get("gpu_type", pd.Series("?", index=df.index))).fillna("?")
    label = gpu.astype(str)
    if "dataset" in df:
        ref = df["dataset"] != MEASURED_DATASET
        sweep = df["sweep"] if "sweep" in df else df["dataset"]
        label = label.where(~ref, label + " (ref " + sweep.fillna(df["dataset"]).astype(str) + ")")
    # Varying among the rows that are drawn (ok and out-of-memory): a crashed or unsupported row
    # of another attention kernel must not rename every line.
    drawn = df[df["status"].isin((OK, *OOM_STATUSES))] if "status" in df else df
    for col in WORKLOAD_FIELDS:
        if col in df and drawn[col].astype(str).nunique() > 1:
            label = label + f" · {col}=" + df[col].astype(str)
    return label


def _with_series(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(series=series_labels(df))


def _is_reference(df: pd.DataFrame) -> pd.Series:
    return df["dataset"] != MEASURED_DATASET if "dataset" in df else pd.Series(False, df.index)


# -- compare GPUs ----------------------------------------------------------------------------


def throughput_points(df: pd.DataFrame, metric: str = "sequences_per_s") -> pd.DataFrame:
    """Per series and batch size: the median ``metric`` over repeats of ok rows, and whether the
    batch ran out of memory. Columns: series, reference, batch_size, value, repeats, oom,
    gpu_busy_pct (median NVML utilization of those rows, NaN where not measured) and host_bound
    (gpu_busy_pct under sweep.trial.metrics.GPU_BUSY_MIN_PCT: the figure depends on the CPU)."""
    cols = ["series", "reference", "batch_size", "value", "repeats", "oom"]
    cols += ["gpu_busy_pct", "host_bound"]
    if df.empty or "batch_size" not in df:
        return pd.DataFrame(columns=cols)
    d = _with_series(df).assign(reference=_is_reference(df))
    value = d[metric] if metric in d else pd.Series(float("nan"), index=d.index)
    busy = d["gpu_util_pct_mean"] if "gpu_util_pct_mean" in d else pd.Series(float("nan"), d.index)
    d = d.assign(
        value=pd.to_numeric(value, errors="coerce"),
        busy=pd.to_numeric(busy, errors="coerce"),
        is_ok=d["status"].eq(OK),
        is_oom=d["status"].isin(OOM_STATUSES),
    )
    ok = (
        d[d.is_ok & d.value.notna()]
        .groupby(["series", "reference", "batch_size"])
        .agg(value=("value", "median"), repeats=("value", "size"), gpu_busy_pct=("busy", "median"))
        .reset_index()
    )
    oom = d[d.is_oom].groupby(["series", "reference", "batch_size"]).size().rename("n_oom")
    out = ok.merge(oom.reset_index(), on=["series", "reference", "batch_size"], how="outer")
    # A batch with an ok measurement fits, even if another repeat ran out of memory.
    out["oom"] = out["value"].isna() & out["n_oom"].fillna(0).gt(0)
    out["repeats"] = out["repeats"].fillna(0).astype(int)
    out["host_bound"] = out["gpu_busy_pct"].map(host_bound).eq(True)
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


# -- memory ----------------------------------------------------------------------------------


def memory_metrics_present(df: pd.DataFrame) -> list[str]:
    """The memory metrics with at least one value in ``df``, most useful first."""
    return [
        m for m in MEMORY_METRICS if m in df and pd.to_numeric(df[m], errors="coerce").notna().any()
    ]


def memory_points(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Memory against batch size, per series (median over repeats); OOM batches marked."""
    return throughput_points(df, metric)


def memory_fit(
    points: pd.DataFrame, capacities_gb: tuple[int, ...] = CAPACITIES_GB
) -> pd.DataFrame:
    """A least-squares line memory = intercept + slope * batch per series, and from it the largest
    batch that fits each capacity: floor((capacity - intercept) / slope).

    Memory of a training step is close to linear in the batch (weights, gradients and optimizer
    state are fixed; activations grow with the batch), so a line through the measured points is a
    fair estimate within and a little beyond them; far beyond, it is only a guide. Needs two
    distinct batch sizes; a series with fewer gets no estimate.
    """
    cols = ["series", "slope_gib_per_seq", "intercept_gib", "r2", "measured_up_to_batch"] + [
        f"max_batch_{c}gb" for c in capacities_gb
    ]
    rows = []
    for series, g in points[~points["oom"]].groupby("series", sort=True):
        x = g["batch_size"].astype(float)
        y = g["value"].astype(float)
        row: dict[str, Any] = {"series": series, "measured_up_to_batch": int(x.max())}
        if x.nunique() < 2:
            rows.append(row)
            continue
        xm, ym = x.mean(), y.mean()
        slope = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
        intercept = float(ym - slope * xm)
        ss_tot = float(((y - ym) ** 2).sum())
        ss_res = float(((y - (intercept + slope * x)) ** 2).sum())
        row.update(
            slope_gib_per_seq=round(slope, 5),
            intercept_gib=round(intercept, 3),
            r2=round(1 - ss_res / ss_tot, 4) if ss_tot > 0 else None,
        )
        for cap in capacities_gb:
            if slope <= 0:
                fits = None  # memory not growing with batch: no meaningful limit from this fit
            else:
                n = math.floor((cap - intercept) / slope)
                fits = max(n, 0)
            row[f"max_batch_{cap}gb"] = fits
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


# -- time breakdown --------------------------------------------------------------------------

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
    d = _with_series(df[df["status"] == OK]) if "status" in df else df.iloc[0:0]
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


# -- efficiency ------------------------------------------------------------------------------


def efficiency(df: pd.DataFrame) -> pd.DataFrame:
    """Per series and batch size, the median of each efficiency metric over ok repeats (NaN where
    a record does not have it: e.g. the 2020 references have no power readings)."""
    cols = ["series", "batch_size", *EFFICIENCY_METRICS]
    d = _with_series(df[df["status"] == OK]) if "status" in df else df.iloc[0:0]
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


# -- cost ------------------------------------------------------------------------------------

PRICE_COLUMNS = ["gpu_name_contains", "usd_per_gpu_hour", "source"]
# Default hourly prices for one GPU: public list prices of AWS, per GPU (instance price / GPU
# count), US East, Linux, as published in 2024. They are a starting point for the comparison,
# not a quote: every user should put in their own prices (the table is editable in the app).
# - V100 16GB: p3.2xlarge on-demand, $3.06/h for 1 GPU (https://aws.amazon.com/ec2/pricing/on-demand/)
# - A100 40GB, H100, H200: EC2 Capacity Blocks for ML, effective accelerator hourly rate of
#   p4d.24xlarge ($1.844), p5.48xlarge ($4.916) and p5e.48xlarge ($5.408), US East (Ohio), rates
#   listed until 1 Jan 2025 (https://aws.amazon.com/ec2/capacityblocks/pricing/): the one AWS list
#   that names A100, H100 and H200 at one date. On-demand p5.48xlarge was $98.32/h ($12.29 per GPU).
# - T4, A10G, L4: g4dn.xlarge $0.526/h, g5.xlarge $1.006/h, g6.xlarge $0.8048/h on-demand.
DEFAULT_PRICES = pd.DataFrame(
    [
        ["V100", 3.06, "AWS p3.2xlarge on-demand, us-east-1, 2024 ($3.06/h, 1 GPU)"],
        ["A100", 1.844, "AWS Capacity Blocks p4d.24xlarge (A100 40GB), per GPU, 2024"],
        ["H100", 4.916, "AWS Capacity Blocks p5.48xlarge, per GPU, 2024"],
        ["H200", 5.408, "AWS Capacity Blocks p5e.48xlarge, per GPU, 2024"],
        ["T4", 0.526, "AWS g4dn.xlarge on-demand, us-east-1, 2024"],
        ["A10G", 1.006, "AWS g5.xlarge on-demand, us-east-1, 2024"],
        ["L4", 0.8048, "AWS g6.xlarge on-demand, us-east-1, 2024"],
    ],
    columns=PRICE_COLUMNS,
)


def parse_prices(table: pd.DataFrame | list | None) -> tuple[pd.DataFrame, list[str]]:
    """Read the editable price table. Returns the valid rows and one message per bad row (a row
    with an empty name and price is ignored silently: it is the blank row an editor leaves)."""
    if table is None:
        return DEFAULT_PRICES.iloc[0:0].copy(), []
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    if frame.shape[1] < 2:
        return DEFAULT_PRICES.iloc[0:0].copy(), [
            "price table: needs at least two columns, a GPU name and a price in $ per GPU-hour"
        ]
    frame = frame.iloc[:, :3].copy()
    while frame.shape[1] < 3:
        frame[f"_{frame.shape[1]}"] = ""
    frame.columns = PRICE_COLUMNS
    good, errors = [], []
    for i, (name, price, source) in enumerate(frame.itertuples(index=False), start=1):
        name = (
            ""
            if name is None or (isinstance(name, float) and math.isnan(name))
            else str(name).strip()
        )
        text = (
            ""
            if price is None or (isinstance(price, float) and math.isnan(price))
            else str(price).strip().lstrip("$").replace(",", "")
        )
        if not name and not text:
            continue
        if not name:
            errors.append(f"price row {i}: no GPU name (the GPU name must contain this text)")
            continue
        try:
            value = float(text)
        except ValueError:
            errors.append(
                f"price row {i} ({name}): {price!r} is not a number of dollars per GPU-hour"
            )
            continue
        if not math.isfinite(value) or value <= 0:
            errors.append(
                f"price row {i} ({name}): the price must be a positive number of "
                f"dollars per GPU-hour, got {price!r}"
            )
            continue
        good.append([name, value, "" if source is None else str(source)])
    return pd.DataFrame(good, columns=PRICE_COLUMNS), errors


def _has_word(name: str, word: str) -> bool:
    """``word`` occurs in ``name`` with no letter or digit right before or after it."""
    return re.search(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])", name) is not None


def price_for(gpu_name: str, prices: pd.DataFrame) -> tuple[float, str] | None:
    """The hourly price whose name best matches a GPU name: every word of the entry must occur in
    the GPU name as a whole word or dash-separated part (case-insensitive: "L4" is not the price
    of an "L40S", nor "A10" of an "A100-SXM4-80GB"); the entry with the most text wins
    ("A100 80GB" over "A100")."""
    name = str(gpu_name).lower()
    best = None
    for pattern, price, _source in prices.itertuples(index=False):
        words = str(pattern).lower().split()
        if words and all(_has_word(name, w) for w in words):
            if best is None or len(pattern) > len(best[1]):
                best = (float(price), str(pattern))
    return best


def cost_table(df: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """Per series: its best tokens/s over the batch sizes that fit, the GPU's hourly price and the
    dollars per million training tokens at that rate: price / (tokens_per_s * 3600) * 1e6."""
    cols = [
        "series",
        "gpu",
        "best_tokens_per_s",
        "at_batch",
        "usd_per_gpu_hour",
        "price_entry",
        "usd_per_million_tokens",
    ]
    d = df[(df["status"] == OK)] if "status" in df else df.iloc[0:0]
    if d.empty or "tokens_per_s" not in d:
        return pd.DataFrame(columns=cols)
    d = _with_series(d).assign(tps=pd.to_numeric(d["tokens_per_s"], errors="coerce"))
    d = d[d["tps"].notna()]
    med = d.groupby(["series", "gpu", "batch_size"])["tps"].median().reset_index()
    rows = []
    for (series, gpu), g in med.groupby(["series", "gpu"], sort=True):
        best = g.loc[g["tps"].idxmax()]
        match = price_for(gpu, prices)
        usd = match[0] if match else None
        rows.append(
            {
                "series": series,
                "gpu": gpu,
                "best_tokens_per_s": round(float(best["tps"]), 1),
                "at_batch": int(best["batch_size"]),
                "usd_per_gpu_hour": usd,
                "price_entry": match[1] if match else None,
                "usd_per_million_tokens": round(usd / (best["tps"] * 3600) * 1e6, 6)
                if usd
                else None,
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("usd_per_million_tokens", na_position="last").reset_index(drop=True)


def cheapest(costs: pd.DataFrame, target_tokens_per_s: float) -> tuple[str, pd.DataFrame]:
    """The cheapest GPU (lowest $ per GPU-hour) whose best rate reaches the target, as a sentence,
    and the GPUs that reach it, cheapest first."""
    if (
        target_tokens_per_s is None
        or not math.isfinite(float(target_tokens_per_s))
        or float(target_tokens_per_s) < 0
    ):
        return "Target: enter a number of tokens per second (0 or more).", costs.iloc[0:0]
    target = float(target_tokens_per_s)
    reach = costs[(costs["best_tokens_per_s"] >= target) & costs["usd_per_gpu_hour"].notna()]
    reach = reach.sort_values(["usd_per_gpu_hour", "usd_per_million_tokens"]).reset_index(drop=True)
    if reach.empty:
        fastest = costs["best_tokens_per_s"].max() if len(costs) else None
        extra = (
            f" (the fastest here does {fastest:,.0f} tokens/s)"
            if fastest == fastest and fastest is not None
            else ""
        )
        return (
            f"No single priced GPU reaches {target:,.0f} tokens/s for this selection{extra}.",
            reach,
        )
    top = reach.iloc[0]
    return (
        f"Cheapest GPU reaching {target:,.0f} tokens/s: **{top['series']}** at "
        f"${top['usd_per_gpu_hour']:.2f}/h ({top['best_tokens_per_s']:,.0f} tokens/s at batch "
        f"{top['at_batch']}, ${top['usd_per_million_tokens']:.4f} per million tokens).",
        reach,
    )


# -- speedup ---------------------------------------------------------------------------------


def gpu_labels(df: pd.DataFrame) -> list[str]:
    """The GPUs in ``df`` as speedup baselines: the GPU name, with "(ref ...)" for references."""
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
    shown = [
        c
        for c in fields
        if c in ("model", "seq_len", "precision") or d[c].astype(str).nunique() > 1
    ]
    # Fields left out of the label have one value here, so the label identifies the config.
    config = (
        d[shown].astype(str).apply(lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1)
    )
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


# -- table, environment, reproduction --------------------------------------------------------

FIRST_COLUMNS = [
    "key",
    "dataset",
    "status",
    "gpu",
    "model",
    "seq_len",
    "batch_size",
    "precision",
    "compile",
    "attention",
    "harness",
    "sequences_per_s",
    "tokens_per_s",
    "step_time_ms_p50",
    "peak_allocated_gib",
    "nvml_peak_used_gib",
    "mfu",
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


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def reproduce_command(row: dict[str, Any] | pd.Series) -> str:
    """The command that measures this configuration again, with every config field spelled out
    (so a changed default cannot change what it runs): ``python -m sweep trial --model ... ``."""
    defaults = TrialConfig().to_dict()
    parts = ["python", "-m", "sweep", "trial"]
    for name in field_names():
        value = row.get(name) if _present(row.get(name)) else defaults[name]
        if isinstance(defaults[name], bool):
            value = str(value).lower() in ("true", "1", "1.0")
            text = "true" if value else "false"
        elif isinstance(defaults[name], int):
            text = str(int(float(value)))
        elif isinstance(defaults[name], float):
            text = repr(float(value))
        else:
            text = str(value)
        parts += ["--" + name.replace("_", "-"), text]
    return " ".join(shlex.quote(p) for p in parts)


def environment(row: dict[str, Any] | pd.Series) -> pd.DataFrame:
    """The environment of one trial as (key, value) rows: every ``env.*`` column with a value,
    the known keys first, then where and when it ran and where the row comes from."""
    keys = [f"env.{k}" for k in ENV_KEYS] + sorted(
        k for k in row.keys() if str(k).startswith("env.") and k[4:] not in ENV_KEYS
    )
    rows = [(k[4:], row.get(k)) for k in keys if _present(row.get(k))]
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
        if _present(row.get(k)):
            rows.append((k, row.get(k)))
    return pd.DataFrame(rows, columns=["field", "value"]).astype(str)


# -- progress --------------------------------------------------------------------------------


def progress(counts: dict[str, int]) -> pd.DataFrame:
    """Counts by status, biggest first, with a total row."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(counts.values())
    rows = [(s, n, round(100 * n / total, 1) if total else 0.0) for s, n in items]
    rows.append(("total", total, 100.0 if total else 0.0))
    return pd.DataFrame(rows, columns=["status", "trials", "percent"])
