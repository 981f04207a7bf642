"""Sweep progress for people watching a sweep being written: per sweep, the trials planned (the
plan the engine stored when the sweep started, else a shipped preset's grid), stored, ok,
failed, running now (stored by the engine as trials start and end), the rate of the last trials
and, while the sweep runs, when it should end."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pandas as pd

from sweep.results.record import OK

COLUMNS = [
    "Sweep",
    "Planned",
    "Stored",
    "Ok",
    "Failed",
    "Running",
    "Trials / min",
    "ETA (UTC)",
    "Status",
]
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


def _plan_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def sweep_progress(
    measured: pd.DataFrame | None,
    now: datetime | None = None,
    plans: dict[str, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per sweep of the user's rows and of the stored plans (``COLUMNS``; ``plans``:
    ``Store.plans()``); ``now`` for tests (default: the clock). A plan's running count is
    believed while the engine updated it within ACTIVE_S (a driver killed outright leaves its
    last count behind)."""
    plans = plans or {}
    now = now or datetime.now(timezone.utc)
    if measured is None or measured.empty or "sweep" not in measured:
        measured = pd.DataFrame({"sweep": [], "status": [], "finished_at": []})
    names = sorted(set(measured["sweep"].fillna("(no sweep)")) | set(plans))
    by_sweep = dict(list(measured.groupby(measured["sweep"].fillna("(no sweep)"), sort=True)))
    rows = []
    for sweep in names:
        g = by_sweep.get(sweep, measured.iloc[0:0])
        plan = plans.get(sweep, {})
        planned = plan.get("planned")
        planned = planned_trials(str(sweep)) if planned is None else int(planned)
        updated = _plan_time(plan.get("updated_at")) if plan else None
        fresh = updated is not None and (now - updated).total_seconds() < ACTIVE_S
        running = int(plan.get("running") or 0) if fresh else 0
        done = _times(g).dropna().sort_values()
        recent = done.iloc[-RATE_WINDOW:]
        span_s = (recent.iloc[-1] - recent.iloc[0]).total_seconds() if len(recent) > 1 else 0
        rate = (len(recent) - 1) / span_s * 60 if span_s > 0 else None
        active = running > 0 or bool(
            len(done) and (now - done.iloc[-1].to_pydatetime()).total_seconds() < ACTIVE_S
        )
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
                "Running": running,
                "Trials / min": None if rate is None else round(rate, 1),
                "ETA (UTC)": eta,
                "Status": status,
            }
        )
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["Planned"] = pd.array(out["Planned"].tolist(), dtype="Int64")
    return out
