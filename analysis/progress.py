"""Sweep progress for people watching a sweep being written: per sweep, the trials planned (a
shipped preset's grid; a sweep file's plan is not stored), stored, ok, failed, the rate of the
last trials and, while rows are still arriving, when it should end."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from sweep.results.record import OK

COLUMNS = ["Sweep", "Planned", "Stored", "Ok", "Failed", "Trials / min", "ETA (UTC)", "Status"]
ACTIVE_S = 600  # a sweep whose last row is older than this is not being written now
RATE_WINDOW = 10  # the rate is that of the last trials stored, at most this many


def planned_trials(sweep: str) -> int | None:
    """How many trials a grid preset of this name plans (its grid expanded: pure, fast); None
    for a sweep file (not stored), a max-batch search (its trials are not known in advance) or
    an unknown name."""
    from sweep.plan.grid import GRID, expand
    from sweep.plan.sweepfile import load, preset_names

    if sweep not in preset_names():
        return None
    try:
        spec = load(sweep)
    except ValueError:
        return None
    return len(expand(spec)) if spec.mode == GRID else None


def _times(frame: pd.DataFrame) -> pd.Series:
    if "finished_at" not in frame:
        return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return pd.to_datetime(frame["finished_at"], utc=True, errors="coerce")


def sweep_progress(measured: pd.DataFrame | None, now: datetime | None = None) -> pd.DataFrame:
    """One row per sweep of the user's rows (``COLUMNS``); ``now`` for tests (default: the
    clock)."""
    if measured is None or measured.empty or "sweep" not in measured:
        return pd.DataFrame(columns=COLUMNS)
    now = now or datetime.now(timezone.utc)
    rows = []
    for sweep, g in measured.groupby(measured["sweep"].fillna("(no sweep)"), sort=True):
        planned = planned_trials(str(sweep))
        done = _times(g).dropna().sort_values()
        recent = done.iloc[-RATE_WINDOW:]
        span_s = (recent.iloc[-1] - recent.iloc[0]).total_seconds() if len(recent) > 1 else 0
        rate = (len(recent) - 1) / span_s * 60 if span_s > 0 else None
        active = len(done) and (now - done.iloc[-1].to_pydatetime()).total_seconds() < ACTIVE_S
        left = None if planned is None else max(planned - len(g), 0)
        if left == 0:
            status = "finished"
        else:
            status = "running" if active else "not running (resume it to finish)"
        eta = None
        if status == "running" and left and rate:
            eta = (done.iloc[-1] + pd.Timedelta(minutes=left / rate)).strftime("%H:%M")
        rows.append(
            {
                "Sweep": sweep,
                "Planned": planned,
                "Stored": len(g),
                "Ok": int((g["status"] == OK).sum()),
                "Failed": int((g["status"] != OK).sum()),
                "Trials / min": None if rate is None else round(rate, 1),
                "ETA (UTC)": eta,
                "Status": status,
            }
        )
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["Planned"] = pd.array(out["Planned"].tolist(), dtype="Int64")
    return out
