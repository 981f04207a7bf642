"""What stops a sweep that can no longer store its results or has lost its lease.

Every write of a running sweep goes through ``StoreGuard``. The first write the store refuses (a
full disk: SQLite's "database or disk is full"; a file gone read-only) ends the scheduling at
once (``GuardStopper``, Tune's stop_all), and each final record that arrives after it is written
to a spill file, one JSON record per line, which ``python -m sweep import`` loads into a
database. A driver whose lease was taken over (its heartbeat updates no row) stops the same way.
Nothing measured is dropped with only a warning.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from typing import Any

from ray import tune

from sweep.results.record import FINAL_STATUSES, Trial
from sweep.results.store import Store, StoreError


class StoreFailed(StoreError):
    """The store refused a write mid-sweep; the message names the database, the cause and the
    spill file."""


class LeaseLost(StoreError):
    """Another driver took this sweep's lease over while it ran; it stopped scheduling."""


class StoreGuard:
    """The store as the running sweep writes it (reads pass through): a refused write is
    remembered as ``failure`` and the records that follow go to ``spill_path``."""

    def __init__(self, store: Store, lease: Any = None) -> None:
        self.store = store
        self.lease = lease
        self.failure: str | None = None
        self.spill_path: str | None = None
        self.spilled = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # statuses, get, plans, unreadable, ...
        return getattr(self.store, name)

    def put(self, record: Trial) -> bool:
        if self.failure is None:
            try:
                return self.store.put(record)
            except StoreError as exc:
                self.failure = str(exc)
        if record.status in FINAL_STATUSES:  # a measurement or a final answer: kept
            self._spill(record)
        return False

    def put_plan(self, sweep: str, planned: int | None) -> None:
        self._quietly(self.store.put_plan, sweep, planned)

    def set_running(self, sweep: str, running: int) -> None:
        self._quietly(self.store.set_running, sweep, running)

    def _quietly(self, write, *args) -> None:
        if self.failure is not None:
            return
        try:
            write(*args)
        except StoreError as exc:
            self.failure = str(exc)

    @property
    def stop(self) -> bool:
        """Whether the sweep must stop scheduling now."""
        return self.failure is not None or bool(getattr(self.lease, "lost", False))

    def _spill(self, record: Trial) -> None:
        """Append ``record`` to the spill file: beside the database, else in the temporary
        directory (a full disk is often the database's only); stderr if neither takes it."""
        line = record.to_json() + "\n"
        with self._lock:
            for path in self._spill_candidates():
                try:
                    with open(path, "a", encoding="utf-8") as fh:
                        fh.write(line)
                        fh.flush()
                        os.fsync(fh.fileno())
                except OSError:
                    continue
                self.spill_path = path
                self.spilled += 1
                return
            sys.stderr.write(f"unstored record: {line}")
            self.spilled += 1

    def _spill_candidates(self) -> list[str]:
        if self.spill_path is not None:
            return [self.spill_path]
        db = os.path.abspath(self.store.path)
        name = f"{os.path.basename(db)}.unstored-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        return [os.path.join(os.path.dirname(db), name), os.path.join(tempfile.gettempdir(), name)]

    def checked(self, outcome: Any) -> Any:
        """``outcome`` if the sweep stored everything; else StoreFailed or LeaseLost."""
        if self.failure is not None:
            if self.spill_path is not None:
                kept = (
                    f"; {self.spilled} result(s) measured after that are in {self.spill_path} "
                    f"(load them with: python -m sweep import {self.spill_path} --db DB)"
                )
            elif self.spilled:
                kept = f"; {self.spilled} result(s) measured after that are printed above"
            else:
                kept = "; no result was measured after that"
            raise StoreFailed(f"stopped: cannot store results: {self.failure}{kept}")
        if getattr(self.lease, "lost", False):
            raise LeaseLost(
                f"stopped: this driver's lease on sweep {self.lease.sweep!r} in "
                f"{self.lease.path!r} was taken over by another driver; it stopped scheduling "
                "(the rows it stored are kept)"
            )
        return outcome


class GuardStopper(tune.Stopper):
    """Tune's stop_all as soon as the guard says so."""

    def __init__(self, guard: StoreGuard) -> None:
        self.guard = guard

    def __getstate__(self) -> dict:
        return {}  # Tune pickles its config; never restored (see SweepSearcher.__getstate__)

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.guard.stop
