"""Turn GPU results databases into shipped reference rows, plots and tables.

    .venv/bin/python scripts/make_results.py results-h200.db [more.db ...] \\
        [--out ui/data/reference_h200.jsonl] [--docs docs/results] \\
        [--seed-ref ui/data/reference_seed_v100_a100.jsonl]

Reads every trial of the given databases (read-only) and keeps the rows measured by this project
(``source == "measured"``). Writes:
- ``--out``: each of them as a reference record (``source="reference"``, a provenance sentence
  naming the GPU, driver, versions, date, commit and method), one ``Trial.to_json()`` per line,
  sorted by GPU, sweep, configuration, batch and repeat. Config, status, metrics, environment and
  key are copied unchanged: a metric is never computed, rounded or filled in here.
- ``--docs``: PNG figures and ``tables.md`` (Markdown): (a) the seed grid beside the 2020
  V100/A100 rows with speedups, (b) peak memory and the largest batch that fits, (c) the
  forward/backward/optimizer split, (d) MFU and TFLOP/s, (e) compile and attention ratios,
  (f) Lightning/native harness ratio, (g) repeat statistics, (h) status counts.

Rows of a max-batch search (a sweep in which some row carries ``max_batch_size``) are probes of
a few steps each: they are shipped and counted, and feed the largest-batch table, but no other
table. Tables of the results (not of the reference file) fill a row's missing GPU name (engine
rows for failures carry no environment) with the GPU the rest of its database ran on.

Exit status: 0 done; 1 no measured rows (nothing written); 2 a database is missing or unreadable.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pandas as pd  # noqa: E402

from sweep.results.frame import read_jsonl, trials_frame  # noqa: E402
from sweep.results.record import MEASURED, OK, REFERENCE, Trial  # noqa: E402
from sweep.results.store import Store, StoreError, should_replace  # noqa: E402
from ui import views  # noqa: E402
from ui.data import DATA_DIR  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(DATA_DIR, "reference_h200.jsonl")
DEFAULT_DOCS = os.path.join(ROOT, "docs", "results")
DEFAULT_SEED_REF = os.path.join(DATA_DIR, "reference_seed_v100_a100.jsonl")

# The seed grid as the `seed` / `seed-fp16` presets run it (sweep/plan/presets/seed*.yaml): every
# workload field but model, sequence length, precision and batch is fixed.
SEED_FIXED = {
    "task": "seq-cls",
    "mode": "train",
    "attention": "sdpa",
    "compile": False,
    "optimizer": "adamw-fused",
    "gradient_checkpointing": False,
    "harness": "native",
}
SEED_PRECISIONS = ("bf16-mixed", "fp16-mixed")
CONFIG_ORDER = [f for f in views.WORKLOAD_FIELDS if f != "device"]


class Failure(Exception):
    """A reason to stop, with the exit status to stop with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# -- reading ---------------------------------------------------------------------------------


def load(paths: Sequence[str]) -> list[tuple[str, Trial]]:
    """(database path, trial) for every stored row, in the order of ``paths`` (a ``.jsonl`` path
    is read as one ``Trial`` JSON per line instead of a database). Every path is
    checked before any is read: a missing or unreadable one is a Failure (exit 2) naming it."""
    for path in paths:
        if not os.path.exists(path):
            raise Failure(f"error: results database {path!r} does not exist", 2)
    rows = []
    for path in paths:
        if path.endswith(".jsonl"):  # records written as text (scripts/convert_summary_tables.py)
            trials, problems = read_jsonl(path)
            if problems:
                raise Failure(f"error: {path}: {'; '.join(problems)}", 2)
            rows += [(path, t) for t in trials]
            continue
        try:
            with Store(path, readonly=True) as store:
                rows += [(path, t) for t in store.trials()]
        except StoreError as exc:
            raise Failure(f"error: {exc}", 2) from None
    return rows


def measured(rows: list[tuple[str, Trial]]) -> tuple[list[tuple[str, Trial]], list[str]]:
    """The measured rows, one per key, and notes on what was dropped.

    A key stored in two databases (the same configuration, GPU type and repeat run twice) keeps
    one row by the store's own rule (``sweep.results.store.should_replace``: an ok row is
    only replaced by a later ok row), later databases on the command line counting as later.
    """
    by_key: dict[str, tuple[str, Trial]] = {}
    replaced = kept_old = 0
    for path, t in rows:
        if t.source != MEASURED:
            continue
        old = by_key.get(t.key)
        if old is None:
            by_key[t.key] = (path, t)
        elif old[1] == t:
            continue
        elif should_replace(old[1].status, t.status):
            by_key[t.key] = (path, t)
            replaced += 1
        else:
            kept_old += 1
    notes = []
    if replaced or kept_old:
        notes.append(
            f"{replaced + kept_old} key(s) stored in more than one database: kept one row each "
            f"({replaced} from the later database, {kept_old} earlier ok rows kept)"
        )
    return list(by_key.values()), notes


# -- reference records -----------------------------------------------------------------------


def _common_env(trials: list[Trial]) -> dict[str, Any]:
    """The environment most rows of one database share (by GPU name), for rows that have none."""
    names = Counter(t.env.get("gpu_name") for t in trials if t.env.get("gpu_name"))
    if not names:
        return {}
    top = names.most_common(1)[0][0]
    return next(t.env for t in trials if t.env.get("gpu_name") == top)


def provenance(trial: Trial, fallback_env: dict[str, Any] | None = None) -> str:
    """One paragraph: who measured it, on what, when, at which commit, and how."""
    own = bool(trial.env.get("gpu_name") or trial.env.get("torch_version"))
    env = trial.env if own else (fallback_env or {})
    gpu = env.get("gpu_name") or trial.gpu_type or "an unrecorded GPU"
    parts = [
        f"driver {env.get('driver_version') or 'unrecorded'}",
        f"CUDA {env.get('cuda_version') or 'unrecorded'}",
        f"torch {env.get('torch_version') or 'unrecorded'}",
        f"transformers {env.get('transformers_version') or 'unrecorded'}",
    ]
    if env.get("lightning_version"):
        parts.append(f"Lightning {env['lightning_version']}")
    when = (trial.finished_at or trial.started_at or "")[:10] or "an unrecorded date"
    commit = env.get("git_commit") or "unrecorded"
    text = (
        f"Measured by transformers-sweep on {gpu} ({', '.join(parts)}), {when}, "
        f"git commit {commit}; sweep {trial.sweep or '-'}, {trial.config.get('harness', '-')} "
        "harness."
    )
    if not own:
        text += (
            " This row records no environment of its own (the engine wrote it for a trial that "
            "did not report); the machine named is the one the rest of its database ran on."
        )
    steps = trial.metrics.get("steps_measured")
    warmup = trial.metrics.get("warmup_steps", trial.config.get("warmup_steps"))
    if trial.status == OK and steps:
        text += (
            " Method: each training step (forward, backward and optimizer step) timed with CUDA "
            f"events, {warmup} warm-up steps excluded, figures from the median of {steps} "
            "measured steps."
        )
    else:
        text += f" Status {trial.status}: no steps were measured for this row."
    return text


def _order(trial: Trial) -> tuple:
    c = trial.config
    return (
        str(trial.env.get("gpu_name") or trial.gpu_type or ""),
        str(trial.sweep or ""),
        *(str(c.get(f, "")) for f in CONFIG_ORDER if f != "batch_size"),
        int(c.get("batch_size") or 0),
        int(trial.repeat),
        trial.key,
    )


def reference_records(rows: list[tuple[str, Trial]]) -> list[Trial]:
    """Each measured row as a reference row: source and provenance set (a provenance the row
    already carries is kept), nothing else touched."""
    by_db: dict[str, list[Trial]] = {}
    for path, t in rows:
        by_db.setdefault(path, []).append(t)
    fallback = {path: _common_env(ts) for path, ts in by_db.items()}
    out = [
        t.replace(source=REFERENCE, provenance=t.provenance or provenance(t, fallback[path]))
        for path, t in rows
    ]
    return sorted(out, key=_order)


def write_reference(trials: list[Trial], path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for t in trials:
            fh.write(t.to_json() + "\n")


# -- frames ----------------------------------------------------------------------------------


def short_gpu(name: Any) -> str:
    """ "NVIDIA H200" -> "H200"; "Tesla V100-DGXS-16GB" -> "V100-DGXS-16GB"."""
    text = str(name)
    for prefix in ("NVIDIA ", "Tesla "):
        text = text.removeprefix(prefix)
    return text


def results_frame(rows: list[tuple[str, Trial]]) -> pd.DataFrame:
    """The flat frame of the measured rows, with ``db`` (the database's path as shown), ``gpu``
    filled from the database where a row has none, and ``probe`` (a row of a max-batch search)."""
    df = trials_frame([t for _, t in rows])
    df["db"] = [_shown(p) for p, _ in rows]
    common = {
        _shown(p): _common_env([t for q, t in rows if q == p]).get("gpu_name")
        for p in dict.fromkeys(p for p, _ in rows)
    }
    df["gpu"] = df["gpu"].fillna(df["db"].map(common)).fillna("unknown GPU")
    mb = pd.to_numeric(df["max_batch_size"], errors="coerce")
    probe_sweeps = set(zip(df.loc[mb.notna(), "db"], df.loc[mb.notna(), "sweep"], strict=True))
    df["probe"] = [(d, s) in probe_sweeps for d, s in zip(df["db"], df["sweep"], strict=True)]
    return df


def reference_frame(path: str) -> pd.DataFrame:
    trials, problems = read_jsonl(path)
    if problems:
        raise Failure(f"error: {path}: " + "; ".join(problems[:3]), 2)
    df = trials_frame(trials)
    return df


def gpu_title(df: pd.DataFrame) -> str:
    """The GPUs the rows ran on, by the names their environments recorded."""
    names = df["env.gpu_name"].dropna() if "env.gpu_name" in df else df["gpu"].iloc[0:0]
    if names.empty:
        names = df["gpu"].dropna()
    return ", ".join(sorted(names.astype(str).unique())) or "unknown GPU"


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df:
        return pd.Series(float("nan"), index=df.index)
    return pd.to_numeric(df[col], errors="coerce")


def _points(sub: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``views.throughput_points`` of one selection collapsed to one value per batch size:
    median over repeats (and databases), oom where no row of that batch ran ok."""
    pts = views.throughput_points(sub, metric)
    if pts.empty:
        return pd.DataFrame(columns=["batch_size", "value", "repeats", "oom"])
    return (
        pts.groupby("batch_size")
        .agg(value=("value", "median"), repeats=("repeats", "sum"), oom=("oom", "all"))
        .reset_index()
    )


def seed_like(df: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of the seed grid's shape (see SEED_FIXED), outside max-batch probes."""
    mask = pd.Series(True, index=df.index)
    for col, value in SEED_FIXED.items():
        mask &= df[col].astype(str) == str(value)
    mask &= df["precision"].isin(SEED_PRECISIONS)
    if "probe" in df:
        mask &= ~df["probe"].astype(bool)
    if models is not None:
        mask &= df["model"].isin(list(models))
    return df[mask]


# -- (a) seed grid against the 2020 rows ----------------------------------------------------


def seed_columns(meas: pd.DataFrame, ref: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Column label -> the rows behind it: one per measured GPU and precision, then the 2020
    reference GPUs (fp16, Lightning, Apex FusedAdam, eager attention: see their provenance)."""
    cols: dict[str, pd.DataFrame] = {}
    for gpu in sorted(meas["gpu"].astype(str).unique()):
        for prec in SEED_PRECISIONS:
            sub = meas[(meas["gpu"].astype(str) == gpu) & (meas["precision"] == prec)]
            if len(sub):
                cols[f"{short_gpu(gpu)} {prec.split('-')[0]}"] = sub
    for gpu_type in ("A100", "V100"):
        sub = ref[ref["gpu_type"] == gpu_type]
        if len(sub):
            cols[f"{gpu_type} 2020 fp16"] = sub
    return cols


def seed_comparison(meas: pd.DataFrame, ref: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Tokens/s per (model, seq_len, batch_size) for each column of ``seed_columns`` (median over
    repeats; the string "OOM" where the batch ran out of memory), and the measured / 2020 ratio
    at matching (model, seq_len, batch_size). Returns the table and the ratio column names."""
    models = sorted(ref["model"].dropna().unique()) if len(ref) else None
    meas = seed_like(meas, models)
    if meas.empty:
        return pd.DataFrame(), []
    cols = seed_columns(meas, ref)
    keys = sorted(
        {(m, int(s)) for m, s in zip(meas["model"], meas["seq_len"], strict=True)},
    )
    long = []
    for label, sub in cols.items():
        for model, seq in keys:
            part = sub[(sub["model"] == model) & (sub["seq_len"].astype(int) == seq)]
            for r in _points(part, "tokens_per_s").itertuples(index=False):
                value = "OOM" if r.oom else float(r.value)
                long.append((model, seq, int(r.batch_size), label, value))
    frame = pd.DataFrame(long, columns=["model", "seq_len", "batch_size", "column", "value"])
    wide = frame.pivot_table(
        index=["model", "seq_len", "batch_size"], columns="column", values="value", aggfunc="first"
    )
    wide = wide.reindex(columns=[c for c in cols if c in wide.columns]).reset_index()
    wide.columns.name = None
    ratios = []
    mine = [c for c in cols if "2020" not in c and c in wide]
    theirs = [c for c in cols if "2020" in c and c in wide]
    for m in mine:
        for r in theirs:
            name = f"{m} / {r.split()[0]} 2020"
            a = pd.to_numeric(wide[m], errors="coerce")
            b = pd.to_numeric(wide[r], errors="coerce")
            wide[name] = a / b
            ratios.append(name)
    return wide.sort_values(["model", "seq_len", "batch_size"]).reset_index(drop=True), ratios


# -- (b) memory and the largest batch -------------------------------------------------------


def memory_table(
    meas: pd.DataFrame, metric: str, models: Sequence[str] | None = None
) -> pd.DataFrame:
    """Seed grid: one row per GPU, model, seq_len and precision, one column per batch size
    ("batch N"): the median of ``metric`` (GiB) over repeats, "OOM" where the batch ran out of
    memory."""
    d = seed_like(meas, models)
    out = []
    for (gpu, model, seq, prec), g in d.groupby(
        ["gpu", "model", "seq_len", "precision"], sort=True
    ):
        row: dict[str, Any] = {"gpu": short_gpu(gpu), "model": model, "seq_len": int(seq)}
        row["precision"] = prec
        points = _points(g, metric)
        if points.empty:  # only rows that neither ran nor ran out of memory
            continue
        for r in points.itertuples(index=False):
            row[int(r.batch_size)] = "OOM" if r.oom else float(r.value)
        out.append(row)
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    batches = sorted(c for c in frame.columns if isinstance(c, int))
    frame = frame[["gpu", "model", "seq_len", "precision", *batches]]
    return frame.rename(columns={b: f"batch {b}" for b in batches})


def largest_batch(meas: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Per GPU, model, seq_len and precision: from the seed grid, the largest batch that ran
    and the smallest that ran out of memory (``views.fit_summary``); from max-batch searches, the
    largest batch found, with its peak memory and tokens/s."""
    key = ["gpu", "model", "seq_len", "precision"]
    rows = []
    for k, g in seed_like(meas, models).groupby(key, sort=True):
        fit = views.fit_summary(views.throughput_points(g.assign(gpu=k[0]), "tokens_per_s"))
        if len(fit) == 1:
            f = fit.iloc[0]
            rows.append(
                dict(zip(key, k, strict=True))
                | {
                    "grid_largest_ok": f["largest_batch_that_fits"],
                    "grid_smallest_oom": f["smallest_oom_batch"],
                }
            )
    grid = pd.DataFrame(rows, columns=key + ["grid_largest_ok", "grid_smallest_oom"])
    mb = meas[_num(meas, "max_batch_size").notna()]
    search = pd.DataFrame(
        {
            "gpu": mb["gpu"],
            "model": mb["model"],
            "seq_len": mb["seq_len"],
            "precision": mb["precision"],
            "max_batch_search": _num(mb, "max_batch_size"),
            "peak_allocated_gib_at_max": _num(mb, "peak_allocated_gib"),
            "tokens_per_s_at_max": _num(mb, "tokens_per_s"),
        }
    )
    search = search.groupby(key, sort=True).max().reset_index()
    out = grid.merge(search, on=key, how="outer")
    out["gpu"] = out["gpu"].map(short_gpu)
    return out.sort_values(key).reset_index(drop=True)


# -- (c) time breakdown ---------------------------------------------------------------------


def breakdown_selection(meas: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """A few configurations: the seed grid in its first precision present (bf16 before fp16) at
    its longest sequence, every model and batch."""
    d = seed_like(meas, models)
    d = d[d["status"] == OK]
    if d.empty:
        return d
    prec = next(p for p in SEED_PRECISIONS if (d["precision"] == p).any())
    d = d[d["precision"] == prec]
    return d[d["seq_len"].astype(int) == int(d["seq_len"].astype(int).max())]


def breakdown_table(sel: pd.DataFrame) -> pd.DataFrame:
    tb = views.time_breakdown(sel)
    if tb.empty:
        return tb
    named = tb[[f"{p}_ms" for p in views.PHASES]].sum(axis=1)
    return tb.assign(phases_over_step=(named / tb["step_ms"]).round(4))


# -- (d) MFU --------------------------------------------------------------------------------


def mfu_table(meas: pd.DataFrame) -> pd.DataFrame:
    """Per GPU and configuration (every workload field): the batch with the highest median MFU
    (or TFLOP/s where MFU is unknown), its tokens/s, TFLOP/s, MFU and the peak it was divided
    by. Max-batch probes are left out."""
    d = meas[(meas["status"] == OK) & ~meas["probe"].astype(bool)].copy()
    metrics = ["mfu", "tflops_per_s", "peak_tflops", "tokens_per_s"]
    for m in metrics:
        d[m] = _num(d, m)
    d = d[d["mfu"].notna() | d["tflops_per_s"].notna()]
    if d.empty:
        return pd.DataFrame()
    fields = ["gpu", *[f for f in CONFIG_ORDER if f != "batch_size"]]
    med = (
        d.groupby([*fields, "batch_size"], dropna=False)[metrics]
        .median()
        .reset_index()
        .assign(_rank=lambda x: x["mfu"].fillna(x["tflops_per_s"] / 1e6))
    )
    best = med.loc[med.groupby(fields, dropna=False)["_rank"].idxmax()].drop(columns="_rank")
    best = best.assign(gpu=best["gpu"].map(short_gpu), mfu_pct=(best["mfu"] * 100).round(2))
    varying = [f for f in fields if best[f].astype(str).nunique() > 1 or f in ("gpu", "model")]
    cols = [*varying, "batch_size", "tokens_per_s", "tflops_per_s", "mfu_pct", "peak_tflops"]
    return best[cols].sort_values([*varying, "batch_size"]).reset_index(drop=True)


# -- (e), (f) paired ratios -----------------------------------------------------------------


def pair_ratio(
    meas: pd.DataFrame,
    field: str,
    num: Any,
    den: Any,
    metric: str = "tokens_per_s",
) -> pd.DataFrame:
    """``metric`` of the rows with ``field == num`` over those with ``field == den`` where every
    other workload field, the batch, the GPU, the database and the sweep are equal (measured
    side by side); medians over repeats first. Ok rows only; max-batch probes left out."""
    d = meas[(meas["status"] == OK) & ~meas["probe"].astype(bool)].copy()
    d["_v"] = _num(d, metric)
    d = d[d["_v"].notna() & d[field].astype(str).isin([str(num), str(den)])]
    if d.empty:
        return pd.DataFrame()
    others = [f for f in CONFIG_ORDER if f != field]
    keys = ["db", "gpu", "sweep", *others, "batch_size"]
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
    shown += [k for k in keys if k not in shown and med[k].astype(str).nunique() > 1]
    shown = [k for k in keys if k in shown]
    return med[[*shown, a, b, "ratio"]].sort_values(shown).reset_index(drop=True)


# -- (g) repeats ----------------------------------------------------------------------------


def repeat_stats(meas: pd.DataFrame) -> pd.DataFrame:
    """Configurations run several times (same database, GPU and full configuration, different
    repeat index): the spread of the median step time across repeats (CV = sample std / mean)
    and the within-trial step-time CV (median and max over the repeats)."""
    d = meas[(meas["status"] == OK) & ~meas["probe"].astype(bool)].copy()
    if d.empty:
        return pd.DataFrame()
    from sweep.plan.config import field_names

    fields = [f for f in field_names() if f in d]
    d["_cfg"] = d[fields].astype(str).agg("|".join, axis=1)
    d["_p50"] = _num(d, "step_time_ms_p50")
    d["_cv"] = _num(d, "step_time_cv")
    rows = []
    for (db, gpu, _cfg), g in d.groupby(["db", "gpu", "_cfg"], sort=True):
        g = g[g["_p50"].notna()]
        if g["repeat"].nunique() < 2:
            continue
        first = g.iloc[0]
        mean = float(g["_p50"].mean())
        std = float(g["_p50"].std(ddof=1))
        rows.append(
            {
                "gpu": short_gpu(gpu),
                "model": first["model"],
                "seq_len": int(first["seq_len"]),
                "batch_size": int(first["batch_size"]),
                "precision": first["precision"],
                "compile": first["compile"],
                "harness": first["harness"],
                "repeats": int(g["repeat"].nunique()),
                "step_time_ms_p50_mean": round(mean, 4),
                "cv_across_repeats_pct": round(100 * std / mean, 3) if mean else None,
                "within_trial_cv_pct_median": round(100 * float(g["_cv"].median()), 3),
                "within_trial_cv_pct_max": round(100 * float(g["_cv"].max()), 3),
                "db": db,
            }
        )
    return pd.DataFrame(rows)


# -- (h) statuses ---------------------------------------------------------------------------


def status_counts(meas: pd.DataFrame) -> pd.DataFrame:
    """Rows by database, sweep and GPU, one column per status, and a total."""
    d = meas.assign(gpu=meas["gpu"].map(short_gpu), sweep=meas["sweep"].fillna("-"))
    table = d.pivot_table(
        index=["db", "sweep", "gpu"], columns="status", values="key", aggfunc="count", fill_value=0
    )
    order = [s for s in views.progress(Counter(d["status"])).status if s != "total"]
    table = table.reindex(columns=order, fill_value=0)
    table["total"] = table.sum(axis=1)
    table.columns.name = None
    return table.reset_index()


# -- Markdown -------------------------------------------------------------------------------


def _cell(value: Any, fmt: Callable[[float], str]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (hasattr(value, "is_integer") and type(value).__name__ == "int64"):
        return str(value)
    if isinstance(value, float):
        return fmt(value)
    if hasattr(value, "item"):
        return _cell(value.item(), fmt)
    return str(value).replace("|", "\\|")


def markdown(df: pd.DataFrame, formats: dict[str, Callable[[float], str]] | None = None) -> str:
    """A GitHub Markdown table; floats by ``formats[column]`` (default 4 significant digits)."""
    if df.empty:
        return "_(no rows)_\n"
    formats = formats or {}

    def default(v: float) -> str:
        return f"{v:.4g}"

    lines = ["| " + " | ".join(str(c) for c in df.columns) + " |"]
    lines.append("|" + "|".join("---" for _ in df.columns) + "|")
    for row in df.itertuples(index=False):
        cells = [_cell(v, formats.get(c, default)) for c, v in zip(df.columns, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _thousands(v: float) -> str:
    return f"{v:,.0f}"


def _ratio(v: float) -> str:
    return f"{v:.2f}x"


def _gib(v: float) -> str:
    return f"{v:.2f}"


# -- figures --------------------------------------------------------------------------------


def _save(fig: Any, docs: str, name: str) -> str:
    path = os.path.join(docs, name)
    # Fixed metadata: the same data gives the same bytes.
    fig.savefig(path, dpi=100, metadata={"Software": None})
    return name


def _log2_batches(ax: Any, batches: Sequence[int]) -> None:
    batches = sorted({int(b) for b in batches})
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.minorticks_off()


def seed_figure(wide: pd.DataFrame, labels: list[str], title: str) -> Any:
    """Tokens/s against batch: one panel per (model, seq_len), one line per column; x for OOM."""
    from matplotlib.figure import Figure

    models = sorted(wide["model"].unique())
    seqs = sorted(wide["seq_len"].unique())
    fig = Figure(
        figsize=(max(10.0, 4.2 * len(seqs)), 3.3 * len(models) + 1.0), layout="constrained"
    )
    axes = fig.subplots(len(models), len(seqs), squeeze=False)
    styles = {lab: ("--" if "2020" in lab else "-") for lab in labels}
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors
    colors = {lab: palette[i % 10] for i, lab in enumerate(labels)}
    for i, model in enumerate(models):
        for j, seq in enumerate(seqs):
            ax = axes[i][j]
            g = wide[(wide["model"] == model) & (wide["seq_len"] == seq)]
            for k, lab in enumerate(labels):
                if lab not in g:
                    continue
                v = pd.to_numeric(g[lab], errors="coerce")
                ok = v.notna()
                ax.plot(
                    g["batch_size"][ok],
                    v[ok],
                    marker="o",
                    ms=4,
                    linestyle=styles[lab],
                    color=colors[lab],
                    label=lab,
                )
                oom = g[g[lab].astype(str) == "OOM"]
                ax.scatter(
                    oom["batch_size"],
                    [0.04 + 0.05 * k] * len(oom),
                    marker="x",
                    color=colors[lab],
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                )
            _log2_batches(ax, g["batch_size"])
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_title(f"{model}, seq {seq}", fontsize=10)
            ax.set_xlabel("batch size (sequences per step)")
            ax.set_ylabel("training tokens / s")
    handles, names = axes[0][0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], marker="x", color="#444", linestyle="none"))
    names.append("out of memory")
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 6), fontsize=9)
    fig.suptitle(title, fontsize=12)
    return fig


def speedup_figure(wide: pd.DataFrame, ratios: list[str], title: str) -> Any:
    """Measured / 2020 ratio against batch: one panel per (2020 GPU, seq_len), a line per model and
    measured column."""
    import matplotlib
    from matplotlib.figure import Figure

    refs = sorted({r.split(" / ")[1] for r in ratios})
    seqs = sorted(wide["seq_len"].unique())
    fig = Figure(figsize=(max(10.0, 4.2 * len(seqs)), 3.4 * len(refs) + 1.0), layout="constrained")
    axes = fig.subplots(len(refs), len(seqs), squeeze=False)
    models = sorted(wide["model"].unique())
    palette = matplotlib.colormaps["tab10"].colors
    mine = sorted({r.split(" / ")[0] for r in ratios})
    for i, ref in enumerate(refs):
        for j, seq in enumerate(seqs):
            ax = axes[i][j]
            g = wide[wide["seq_len"] == seq]
            for mi, model in enumerate(models):
                gm = g[g["model"] == model]
                for ci, col in enumerate(mine):
                    name = f"{col} / {ref}"
                    if name not in gm:
                        continue
                    v = gm[name]
                    ok = v.notna()
                    if ok.any():
                        ax.plot(
                            gm["batch_size"][ok],
                            v[ok],
                            marker="o",
                            ms=4,
                            color=palette[mi % 10],
                            linestyle=["-", "--", ":", "-."][ci % 4],
                            label=f"{model} · {col}",
                        )
            ax.axhline(1.0, color="#444", linewidth=1)
            if len(g):
                _log2_batches(ax, g["batch_size"])
            ax.grid(True, alpha=0.3)
            ax.set_title(f"vs {ref}, seq {seq}", fontsize=10)
            ax.set_xlabel("batch size (sequences per step)")
            ax.set_ylabel("speedup (tokens/s ratio, x)")
    handles, names = [], []
    for ax in axes.ravel():
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 4), fontsize=9)
    fig.suptitle(title, fontsize=12)
    return fig


def mfu_figure(sel: pd.DataFrame, title: str) -> Any:
    """MFU (%) against batch: colour by model, line style by sequence length."""
    import matplotlib
    from matplotlib.figure import Figure

    d = sel[sel["status"] == OK]
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    ax = fig.add_subplot()
    palette = matplotlib.colormaps["tab10"].colors
    models = sorted(d["model"].unique())
    seqs = sorted(d["seq_len"].astype(int).unique())
    for mi, model in enumerate(models):
        for si, seq in enumerate(seqs):
            g = d[(d["model"] == model) & (d["seq_len"].astype(int) == seq)]
            eff = views.efficiency(g).dropna(subset=["mfu"])
            if eff.empty:
                continue
            eff = eff.groupby("batch_size")["mfu"].median()
            ax.plot(
                eff.index,
                eff.values * 100,
                marker="o",
                color=palette[mi % 10],
                linestyle=["-", "--", ":", "-."][si % 4],
                label=f"{model}, seq {seq}",
            )
    _log2_batches(ax, d["batch_size"])
    ax.set_xlabel("batch size (sequences per step)")
    ax.set_ylabel("MFU (% of dense datasheet peak)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title, fontsize=12)
    return fig


def ratio_figure(parts: dict[str, pd.DataFrame], title: str) -> Any:
    """Horizontal bars: one per configuration and comparison."""
    from matplotlib.figure import Figure

    rows = []
    for name, t in parts.items():
        for r in t.to_dict("records"):
            cfg = ", ".join(
                f"{k}={r[k]}" for k in t.columns if k not in ("ratio", "gpu") and " " not in k
            )
            rows.append((f"{name}: {cfg}", r["ratio"]))
    fig = Figure(figsize=(10, max(2.5, 0.28 * len(rows) + 1.5)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh([r[0] for r in rows][::-1], [r[1] for r in rows][::-1], color="#1f77b4")
    ax.axvline(1.0, color="#444", linewidth=1, label="1.0 = no change")
    ax.set_xlabel("ratio of tokens/s (x; above 1: the first option is faster)")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=9, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title, fontsize=12)
    return fig


# -- the report -----------------------------------------------------------------------------


def _env_summary(meas: pd.DataFrame) -> list[str]:
    lines = []
    keys = ["gpu", "env.driver_version", "env.cuda_version", "env.torch_version"]
    keys += ["env.transformers_version", "env.lightning_version", "env.git_commit"]
    present = [k for k in keys if k in meas]
    for vals, g in meas.dropna(subset=["env.torch_version"]).groupby(present, dropna=False):
        vals = dict(zip(present, vals if isinstance(vals, tuple) else (vals,), strict=True))
        dates = sorted(str(x)[:10] for x in g["finished_at"].dropna())
        span = f"{dates[0]} to {dates[-1]}" if dates else "dates unrecorded"
        text = ", ".join(
            f"{k.removeprefix('env.').removesuffix('_version')} {v}"
            for k, v in vals.items()
            if isinstance(v, str) and v
        )
        lines.append(f"- {text}; {len(g)} row(s), {span}")
    return lines


def report(meas: pd.DataFrame, ref: pd.DataFrame, docs: str, sources: list[str]) -> list[str]:
    """Write ``tables.md`` and the figures into ``docs``; returns the files written."""
    from ui import charts

    os.makedirs(docs, exist_ok=True)
    gpus = gpu_title(meas)
    # The seed grid's models: those of the 2020 rows (None: any model of the seed grid's shape).
    models = sorted(ref["model"].dropna().unique()) if len(ref) else None
    written: list[str] = []
    md = [
        f"# Results on {gpus}",
        "",
        f"Made by `scripts/make_results.py` from {', '.join(f'`{s}`' for s in sources)}: "
        f"{len(meas)} measured rows. Every throughput is from the median step time of a "
        "training step timed with CUDA events (forward, backward and optimizer step included, "
        "warm-up excluded); medians are taken again over repeats. Environment:",
        "",
        *_env_summary(meas),
        "",
    ]

    # (a)
    wide, ratios = seed_comparison(meas, ref)
    md += [
        "## (a) Seed grid: training tokens/s against the 2020 V100 / A100 rows",
        "",
        f"GPU: {gpus} (this project: native harness, fused AdamW, sdpa attention, no compile, "
        "bf16-mixed or fp16-mixed), beside the 2020 project's V100-DGXS-16GB and A100-SXM4-40GB "
        "rows (fp16 AMP, PyTorch Lightning, Apex FusedAdam, eager attention; step-based "
        "throughput that includes the optimizer step, profiler means over all 300 steps, no "
        "warm-up excluded). Units: tokens/s (padded tokens = batch x seq_len per step); speedup "
        "columns: measured tokens/s / 2020 tokens/s at the same (model, seq_len, batch_size), "
        "a ratio (x). OOM: out of memory; —: not run.",
        "",
    ]
    fmt_a = {c: _thousands for c in wide.columns if c not in ratios} | {r: _ratio for r in ratios}
    md.append(markdown(wide, fmt_a))
    if not wide.empty:
        labels = [c for c in wide.columns if c not in ("model", "seq_len", "batch_size", *ratios)]
        fig = seed_figure(wide, labels, f"Training throughput: {gpus} vs the 2020 V100 / A100")
        written.append(_save(fig, docs, "seed_throughput.png"))
        md.append("![seed grid throughput](seed_throughput.png)\n")
        if ratios:
            fig = speedup_figure(wide, ratios, f"Speedup of {gpus} over the 2020 rows")
            written.append(_save(fig, docs, "seed_speedup.png"))
            md.append("![speedup over 2020](seed_speedup.png)\n")

    # (b)
    md += [
        "## (b) Peak memory and the largest batch that fits",
        "",
        f"GPU: {gpus}; seed grid. Units: GiB (2^30 bytes) per batch size (sequences per step); "
        "medians over repeats; OOM: out of memory; —: not run.",
        "",
    ]
    for metric, what in (
        ("peak_allocated_gib", "torch's peak allocated memory over the measured steps"),
        ("nvml_peak_used_gib", "NVML's peak device memory used (CUDA context included)"),
    ):
        mem = memory_table(meas, metric, models)
        fmt = {c: _gib for c in mem.columns if str(c).startswith("batch ")}
        md += [f"`{metric}`: {what}, GiB.", "", markdown(mem, fmt)]
    big = largest_batch(meas, models)
    md += [
        f"Largest batch that fits on {gpus}, in sequences per step: from the seed grid (the "
        "largest batch that ran; the smallest that ran out of memory) and from max-batch "
        "searches (doubling, then bisection; peak memory in GiB and tokens/s of that probe, "
        "which measures only a few steps).",
        "",
        markdown(
            big,
            {
                "grid_largest_ok": _thousands,
                "grid_smallest_oom": _thousands,
                "max_batch_search": _thousands,
                "peak_allocated_gib_at_max": _gib,
                "tokens_per_s_at_max": _thousands,
            },
        ),
    ]
    sel = breakdown_selection(meas, models)
    if len(sel):
        seq = int(sel["seq_len"].iloc[0])
        prec = sel["precision"].iloc[0]
        mem_sel = seed_like(meas, models)
        mem_sel = mem_sel[(mem_sel["seq_len"].astype(int) == seq) & (mem_sel["precision"] == prec)]
        points = views.memory_points(mem_sel, "peak_allocated_gib")
        fig = charts.memory(
            points,
            views.memory_fit(points),
            "peak_allocated_gib",
            f"Peak memory (torch, GiB) against batch: {gpus}, seq {seq}, {prec}",
        )
        written.append(_save(fig, docs, "memory.png"))
        md.append("![peak memory](memory.png)\n")

    # (c)
    tb = breakdown_table(sel)
    md += [
        "## (c) Time breakdown of a training step",
        "",
        f"GPU: {gpus}. Units: ms per step, medians of CUDA-event timings (forward includes the "
        "loss; optimizer includes zero_grad and the grad scaler; other: the rest of the step). "
        "phases_over_step: (forward + backward + optimizer + other) / step time, a ratio "
        "(1.0 = the split adds up).",
        "",
        markdown(
            tb.drop(columns="host_timers", errors="ignore"),
            {c: (lambda v: f"{v:.3f}") for c in tb.columns if c.endswith(("_ms", "_step"))},
        ),
    ]
    if len(tb):
        title = f"Time per step by phase (ms): {gpus}, seq {seq}, {prec}"
        written.append(_save(charts.breakdown(tb, title), docs, "time_breakdown.png"))
        md.append("![time breakdown](time_breakdown.png)\n")

    # (d)
    mfu = mfu_table(meas)
    md += [
        "## (d) MFU and achieved TFLOP/s",
        "",
        f"GPU: {gpus}. Per configuration, the batch size with the highest MFU. Units: tokens/s; "
        "tflops_per_s: TFLOP/s achieved (FLOPs counted by torch's FlopCounterMode / median step "
        "time); mfu_pct: percent of peak_tflops, the GPU's dense datasheet peak for the "
        "precision (TFLOP/s; empty where unknown).",
        "",
        markdown(
            mfu,
            {
                "tokens_per_s": _thousands,
                "tflops_per_s": lambda v: f"{v:.1f}",
                "mfu_pct": lambda v: f"{v:.1f}",
                "peak_tflops": lambda v: f"{v:.0f}",
            },
        ),
    ]
    eff_sel = seed_like(meas, models)
    eff_sel = eff_sel[eff_sel["precision"] == (prec if len(sel) else "bf16-mixed")]
    if _num(eff_sel, "mfu").notna().any():
        fig = mfu_figure(eff_sel, f"MFU against batch: {gpus}, seed grid, {prec}")
        written.append(_save(fig, docs, "mfu.png"))
        md.append("![MFU](mfu.png)\n")

    # (e), (f)
    comp = pair_ratio(meas, "compile", True, False)
    attn = pair_ratio(meas, "attention", "sdpa", "eager")
    # a native row of another sweep (another run, another hour) is no baseline for a lightning row
    harn = pair_ratio(meas, "harness", "lightning", "native")
    fmt_r = {"ratio": _ratio} | {c: _thousands for c in ("tokens_per_s",)}
    for t in (comp, attn, harn):
        fmt_r |= {c: _thousands for c in t.columns if c.startswith("tokens_per_s")}
    md += [
        "## (e) torch.compile on / off, sdpa / eager attention",
        "",
        f"GPU: {gpus}. Pairs from the same run (same database and sweep) that differ only in "
        "that option, at the same batch size. Units: tokens/s (median over repeats); ratio: "
        "first option / second, x (above 1: the first is faster). Pairs where either side did "
        "not run ok are left out (see (h)).",
        "",
        "compile=True / compile=False:",
        "",
        markdown(comp, fmt_r),
        "attention=sdpa / attention=eager:",
        "",
        markdown(attn, fmt_r),
        "## (f) Lightning / native harness",
        "",
        f"GPU: {gpus}. The same configuration and batch measured with both harnesses side by "
        "side (one database, one sweep). Units: tokens/s; ratio: lightning / native, x (below "
        "1: Lightning is slower).",
        "",
        markdown(harn, fmt_r),
    ]
    parts = {
        n: t
        for n, t in (("compile/no-compile", comp), ("sdpa/eager", attn), ("lightning/native", harn))
        if len(t)
    }
    if parts:
        fig = ratio_figure(parts, f"Option ratios, tokens/s: {gpus}")
        written.append(_save(fig, docs, "option_ratios.png"))
        md.append("![option ratios](option_ratios.png)\n")

    # (g)
    rep = repeat_stats(meas)
    md += [
        "## (g) Repeatability",
        "",
        f"GPU: {gpus}. Configurations run more than once (same database and configuration, "
        "different repeat index). Units: step_time_ms_p50_mean in ms; cv_across_repeats_pct: "
        "sample standard deviation / mean of the trials' median step times, percent; "
        "within_trial_cv_pct: each trial's own step-time std / mean over its measured steps, "
        "percent (median and max over the repeats).",
        "",
        markdown(rep, {"step_time_ms_p50_mean": lambda v: f"{v:.3f}"}),
    ]

    # (h)
    md += [
        "## (h) Trials by status",
        "",
        f"GPU: {gpus}. Units: number of trials (rows), per database, sweep and GPU. ok: "
        "measured; oom: ran out of memory; skipped_oom: not run because a smaller batch of the "
        "same configuration ran out of memory; other statuses: see the rows' error fields.",
        "",
        markdown(status_counts(meas)),
    ]
    with open(os.path.join(docs, "tables.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(md).rstrip() + "\n")
    written.append("tables.md")
    return written


# -- command line ---------------------------------------------------------------------------


def run(
    dbs: Sequence[str], out: str, docs: str, seed_ref: str, print_fn: Callable = print
) -> list[str]:
    rows = load(dbs)
    kept, notes = measured(rows)
    if not kept:
        raise Failure(
            f"error: no measured rows in {', '.join(map(repr, dbs))} "
            f"({len(rows)} rows in all, none with source 'measured'); nothing written",
            1,
        )
    ref = reference_frame(seed_ref)
    refs = reference_records(kept)
    meas = results_frame(kept)
    write_reference(refs, out)
    for n in notes:
        print_fn(f"note: {n}")
    print_fn(f"wrote {len(refs)} reference records to {out}")
    files = report(meas, ref, docs, [_shown(p) for p in dbs])
    print_fn(f"wrote {', '.join(files)} to {docs}")
    return [out] + [os.path.join(docs, f) for f in files]


def _shown(path: str) -> str:
    """A source as the report names it: relative to the repository when inside it."""
    rel = os.path.relpath(os.path.abspath(path), ROOT)
    return os.path.basename(path) if rel.startswith("..") else rel


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "databases", nargs="+", help="results databases (SQLite) or .jsonl record files to read"
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="reference JSONL to write (%(default)s)")
    p.add_argument("--docs", default=DEFAULT_DOCS, help="folder for tables.md and PNGs")
    p.add_argument("--seed-ref", default=DEFAULT_SEED_REF, help="the 2020 V100/A100 rows")
    args = p.parse_args(argv)
    try:
        run(args.databases, args.out, args.docs, args.seed_ref)
    except Failure as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
