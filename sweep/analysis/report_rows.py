"""The rows a results report reads: databases and record files loaded, one measured row per key,
each turned into a shipped reference record with its provenance, and the flat frame the report
tables are drawn from."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sweep.analysis.selection import CONFIG_ORDER
from sweep.results.frame import read_jsonl, trials_frame
from sweep.results.record import MEASURED, OK, REFERENCE, Trial
from sweep.results.store import Store, StoreError, should_replace

# A source is named relative to the repository when inside it.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Failure(Exception):
    """A reason to stop, with the exit status to stop with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


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


def common_env(trials: list[Trial]) -> dict[str, Any]:
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


def record_order(trial: Trial) -> tuple:
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
    fallback = {path: common_env(ts) for path, ts in by_db.items()}
    out = [
        t.replace(source=REFERENCE, provenance=t.provenance or provenance(t, fallback[path]))
        for path, t in rows
    ]
    return sorted(out, key=record_order)


def write_reference(trials: list[Trial], path: str) -> None:
    """One ``Trial.to_json()`` per line, in the order given (its folder made if needed)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for t in trials:
            fh.write(t.to_json() + "\n")


def results_frame(rows: list[tuple[str, Trial]]) -> pd.DataFrame:
    """The flat frame of the measured rows, with ``db`` (the database's path as shown), ``gpu``
    filled from the database where a row has none, and ``probe`` (a row of a max-batch search)."""
    df = trials_frame([t for _, t in rows])
    df["db"] = [shown_path(p) for p, _ in rows]
    common = {
        shown_path(p): common_env([t for q, t in rows if q == p]).get("gpu_name")
        for p in dict.fromkeys(p for p, _ in rows)
    }
    df["gpu"] = df["gpu"].fillna(df["db"].map(common)).fillna("unknown GPU")
    mb = pd.to_numeric(df["max_batch_size"], errors="coerce")
    probe_sweeps = set(zip(df.loc[mb.notna(), "db"], df.loc[mb.notna(), "sweep"], strict=True))
    df["probe"] = [(d, s) in probe_sweeps for d, s in zip(df["db"], df["sweep"], strict=True)]
    return df


def reference_frame(path: str) -> pd.DataFrame:
    """The flat frame of a reference JSONL file; an unreadable line is a Failure (exit 2)."""
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


def shown_path(path: str) -> str:
    """A source as the report names it: relative to the repository when inside it."""
    rel = os.path.relpath(os.path.abspath(path), REPO_ROOT)
    return os.path.basename(path) if rel.startswith("..") else rel
