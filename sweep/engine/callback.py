"""The driver's Tune callback: every trial is written to the store the moment Tune sees it end.

A trial that reports is stored from its own record; one whose process died, or that was killed
past its timeout, gets its row here from what Ray says (``crashed``, ``timeout``). Nothing
measured depends on the sweep finishing. This callback also ends hangs the trial's own watchdog
cannot (a hang holding the GIL) by killing the actor from the driver.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from ray import tune

from sweep.engine.pause import PauseClock
from sweep.engine.progress import Progress
from sweep.engine.searcher import SweepSearcher
from sweep.engine.worker import TrialRequest
from sweep.plan.grid import SweepSpec
from sweep.results.record import CRASHED, TIMEOUT, Trial
from sweep.results.store import Store

log = logging.getLogger(__name__)


def _ray_error_text(trial: Any) -> str:
    """What Ray said about a failed trial. Tune writes it to the trial's error file in the
    driver's staging directory before calling on_trial_error (Trial.handle_error), and syncs it
    to storage only later, so the local file is read first."""
    path = getattr(trial, "error_file", None)
    try:
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read().strip()
            if text:
                return text
        text = trial.get_error()
        if text:
            return str(text)
    except Exception as exc:  # storage errors must not lose the row
        log.debug("cannot read the error of trial %s: %s", trial.trial_id, exc)
    return "the trial's process died (Ray gave no error text)"


def _error_type(trial: Any, text: str) -> str:
    """The exception class Ray reported (e.g. ActorDiedError): from the pickled exception Tune
    keeps next to the error text, else the first class name in the text."""
    path = getattr(trial, "pickled_error_file", None)
    try:
        if path and os.path.isfile(path):
            from ray import cloudpickle

            with open(path, "rb") as fh:
                return type(cloudpickle.load(fh)).__name__
    except Exception as exc:
        log.debug("cannot read the pickled error of trial %s: %s", trial.trial_id, exc)
    found = re.findall(r"\b(?:ray\.exceptions\.)?([A-Z]\w*(?:Error|Exception))\b", text or "")
    return found[0] if found else "RayError"


class StoreCallback(tune.Callback):
    """Writes each finished trial to the store the moment Tune sees it end (driver side)."""

    def __init__(
        self,
        store: Store,
        spec: SweepSpec,
        progress: Progress,
        kill_grace_s: float,
        searcher: SweepSearcher | None,
    ) -> None:
        self.store = store
        self.spec = spec
        self.progress = progress
        self.kill_grace_s = kill_grace_s
        self.searcher = searcher
        self.started: dict[str, float] = {}
        self.killed: set[str] = set()
        self.marked: set[str] = set()  # rows that carry a max-batch answer already
        self.running: set[str] = set()  # trial ids started and not ended
        # trials' ages without the driver's own pauses (Ctrl-Z, a suspended VM): see pause.py
        self.clock = PauseClock().start()

    def __getstate__(self) -> dict[str, Any]:
        return {}  # see SweepSearcher.__getstate__: never restored

    def on_experiment_end(self, trials, **info):
        self.clock.stop()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = self.clock()
        self.running.add(trial.trial_id)
        self._store_running()

    def _ended(self, trial_id: str) -> None:
        if trial_id in self.running:
            self.running.discard(trial_id)
            self._store_running()

    def _store_running(self) -> None:
        """The sweep's trials running now, for the app's progress view (best effort: a store
        that cannot take it fails the next put, which says why)."""
        try:
            self.store.set_running(self.spec.name, len(self.running))
        except Exception as exc:  # noqa: BLE001 - progress only
            log.warning("could not store the running count: %s", exc)

    def on_step_begin(self, iteration, trials, **info):
        # A trial's own watchdog ends it at its timeout; this catches the hangs it cannot end
        # (one that holds the GIL) by killing the actor from the driver.
        now = self.clock()
        limit = self.spec.timeout_s + self.kill_grace_s
        for trial in trials:
            t0 = self.started.get(trial.trial_id)
            if t0 is None or trial.trial_id in self.killed or trial.status != "RUNNING":
                continue
            actor = getattr(trial.temporary_state, "ray_actor", None)
            if now - t0 > limit and actor is not None:
                import ray

                log.warning(
                    "killing trial %s: %.0f s past its timeout",
                    trial.trial_id,
                    now - t0 - self.spec.timeout_s,
                )
                self.killed.add(trial.trial_id)
                ray.kill(actor, no_restart=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        text = (trial.last_result or {}).get("record")
        if text:
            record = Trial.from_json(text)
        else:  # finished without a record: the adapter did not run to its end
            record = self._failure(
                trial, CRASHED, "trial finished without a record", "MissingResult"
            )
        self._ended(trial.trial_id)
        self._write(record, trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial.trial_id)
        text = _ray_error_text(trial)
        now = self.clock()
        elapsed = now - self.started.get(trial.trial_id, now)
        # The trial's watchdog returns a timeout record before timeout_s of its own time, so a
        # process that died after timeout_s of driver time is one we (or its watchdog) ended.
        if trial.trial_id in self.killed or elapsed >= self.spec.timeout_s:
            record = self._failure(
                trial,
                TIMEOUT,
                f"trial ran past its timeout of {self.spec.timeout_s:g} s and was killed\n{text}",
                "Timeout",
            )
        else:
            record = self._failure(trial, CRASHED, text, _error_type(trial, text))
        self._write(record, trial.trial_id)

    def _failure(self, trial, status: str, text: str, kind: str) -> Trial:
        location = getattr(trial.temporary_state, "location", None)
        return TrialRequest.from_dict(trial.config).failure(
            status,
            text,
            kind,
            ray_trial_id=trial.trial_id,
            node=getattr(location, "node_id", None) or getattr(location, "hostname", None),
        )

    def _write(self, record: Trial, trial_id: str | None = None) -> None:
        if self.searcher is not None and trial_id in self.searcher.abandoned:
            if record.status == CRASHED:
                return  # its lost node's row (no_gpu_type) is stored already
        if record.status == CRASHED and self.searcher is not None:
            if self.searcher.will_retry(record.key):
                return  # run again: the row is the last attempt's (nothing was measured)
            n = self.searcher.attempts[record.key]
            record = record.replace(error=f"attempt {n} of {n} (retries: {n - 1})\n{record.error}")
        if self.searcher is not None:
            record = self.searcher.with_prediction(record)
        self.store.put(record)
        self.progress.add(record.status, ran=True)
        self.mark_answers()

    def mark_answers(self) -> None:
        """Mark the rows that answer a search (``max_batch_size`` or ``max_seq_len`` in their
        metrics), as soon as a search has ended and its row is stored."""
        if self.searcher is None:
            return
        for key, best, metric in self.searcher.answer_rows():
            if key in self.marked:
                continue
            record = self.store.get(key)
            if record is None:  # its own write has not happened yet: marked after it
                continue
            self.store.put(record.replace(metrics={**record.metrics, metric: best}))
            self.marked.add(key)
