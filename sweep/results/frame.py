"""Flat frames of records: one row per trial (``record.flatten``), the same columns everywhere.

pandas only (no torch, no ray): the web app, the analysis views, the export and the scripts read
results through these.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from sweep.results.record import ENV_KEYS, METRICS, OK, Trial, flatten
from sweep.results.store import Store

log = logging.getLogger(__name__)


def frame_columns() -> list[str]:
    """The columns every results frame has, in order (more may follow: extra env or metrics)."""
    from sweep.plan.config import TrialConfig

    probe = flatten(Trial(config=TrialConfig().to_dict(), status=OK))
    top = [c for c in probe if c != "gpu"]
    return top + [m for m in METRICS if m not in probe] + [f"env.{k}" for k in ENV_KEYS] + ["gpu"]


def trials_frame(trials: list[Trial]) -> pd.DataFrame:
    """One row per trial (``record.flatten``), with at least ``frame_columns()``."""
    columns = frame_columns()
    rows = [flatten(t) for t in trials]
    extra = sorted({c for r in rows for c in r} - set(columns))
    return pd.DataFrame(rows, columns=columns + extra)


def load_frame(path: str | os.PathLike[str], sweep: str | None = None) -> pd.DataFrame:
    """Every trial stored at ``path`` as one flat DataFrame (read-only; no torch, no ray).

    An empty database gives an empty frame with the usual columns; a missing file or a file that
    is not a results database raises StoreError naming the path. A row that does not decode is
    left out, named in one warning.
    """
    with Store(path, readonly=True) as store:
        frame = trials_frame(store.trials(sweep))
        for note in (store.location_note(), store.unreadable_note()):
            if note:
                log.warning("%s", note)
        return frame


def read_jsonl(path: str) -> tuple[list[Trial], list[str]]:
    """Trials from a file of one JSON record per line; a bad line is skipped with a message."""
    trials, problems = [], []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                trials.append(Trial.from_json(line))
            except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
                problems.append(f"{os.path.basename(path)} line {n}: {exc}")
    return trials, problems
