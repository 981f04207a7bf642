"""Loading what the app and the reports show: the user's results database, the shipped
reference rows, and more results files (``--data FILE``: the JSONL ``export --format jsonl``
writes, from another team's fleet), each shown as a data set of its own.

Nothing here raises on bad input: each loader returns what it could read and messages that say
what went wrong, so that the app always opens (with the reference rows at least).
"""

from __future__ import annotations

import glob
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sweep.analysis.selection import MEASURED_DATASET, combine
from sweep.results.frame import read_jsonl, trials_frame
from sweep.results.record import SCHEMA_VERSION, Trial

# The shipped reference rows sit in the web app's package (pyproject ships ui/data/* with it),
# beside this package both in a checkout and once installed; found by path, not by importing ui.
# ui/data at the repository root (this file is sweep/analysis/sources.py)
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA_DIR = os.path.join(_ROOT, "ui", "data")
REFERENCE_GLOB = "reference_*.jsonl"


def _frame(trials: list[Trial]) -> pd.DataFrame:
    return trials_frame(trials)


def reference_name(path: str) -> str:
    """ui/data/reference_seed_v100_a100.jsonl -> "seed_v100_a100"."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem[len("reference_") :] if stem.startswith("reference_") else stem


def load_references(data_dir: str = DATA_DIR) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Every ``reference_*.jsonl`` shipped in ``data_dir``, by name."""
    frames, messages = {}, []
    for path in sorted(glob.glob(os.path.join(data_dir, REFERENCE_GLOB))):
        trials, problems = read_jsonl(path)
        messages += problems
        if trials:
            frames[reference_name(path)] = _frame(trials)
    if not frames:
        messages.append(f"no reference rows found in {data_dir} (reference_*.jsonl)")
    return frames, messages


def data_file_name(path: str, taken) -> str:
    """A results file's data set name: its file name without the extension, with "-2", "-3"...
    where that name is taken (the user's results, a reference set, an earlier file)."""
    stem = os.path.splitext(os.path.basename(path))[0] or "data"
    name, n = stem, 1
    while name in taken or name == MEASURED_DATASET:
        n += 1
        name = f"{stem}-{n}"
    return name


def load_data_files(paths, taken=()) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """More results files (one ``Trial`` JSON per line, as ``export --format jsonl`` writes),
    by data set name. A file that cannot be read, holds no record, or has a line that is not a
    record of this program (bad JSON, the wrong schema, a newer record version) is left out
    whole, named in one message: half a file would answer a question wrongly."""
    frames: dict[str, pd.DataFrame] = {}
    messages = []
    for path in paths or ():
        try:
            trials, problems = read_jsonl(path)
        except (OSError, ValueError) as exc:  # missing, a directory, not text
            messages.append(f"--data {path!r} is left out: cannot be read ({exc}).")
            continue
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            messages.append(
                f"--data {path!r} is left out: not a results file of this program "
                f"({problems[0]}{more}); write one with `python -m sweep export --format jsonl`."
            )
            continue
        if not trials:
            messages.append(f"--data {path!r} is left out: it holds no record.")
            continue
        frames[data_file_name(path, {*taken, *frames})] = _frame(trials)
    return frames, messages


def load_database(path: str | None) -> tuple[pd.DataFrame | None, list[str]]:
    """The user's trials as a frame, or None with a message saying why there is none.

    A missing file, a file that is not a results database and an empty database each give one
    clear message. A row the program cannot read (a newer record version, a damaged record) is
    skipped with a message naming its key; rows of older versions are read
    (``Trial.from_dict`` accepts them).
    """
    if not path:
        return None, []
    from sweep.results.store import Store, StoreError

    if not os.path.exists(path):
        return None, [
            f"Results database {path!r} does not exist yet: showing the reference rows "
            "only. Run a sweep (`python -m sweep`) to create it."
        ]
    try:
        store = Store(path, readonly=True)
    except StoreError as exc:
        return None, [f"Cannot read results: {exc}. Showing the reference rows only."]
    try:
        trials, problems = store.readable_trials()
        read_only = store.location_note()
    except StoreError as exc:  # a valid header over damaged pages fails only when read
        return None, [f"Cannot read results: {exc}. Showing the reference rows only."]
    finally:
        store.close()
    if not trials and not problems:
        return None, [f"Results database {path!r} is empty (no trial has finished yet)."]
    messages = (
        [
            f"{len(problems)} row(s) of {path!r} could not be read and are left out: "
            + "; ".join(problems[:5])
            + (" ..." if len(problems) > 5 else "")
        ]
        if problems
        else []
    )
    if read_only:
        messages.append(read_only[0].upper() + read_only[1:] + ".")
    old = sum(t.schema_version < SCHEMA_VERSION for t in trials)
    if old:
        messages.append(
            f"{old} row(s) were written by an older version of the record "
            f"(schema < {SCHEMA_VERSION}); metrics they did not record are empty."
        )
    return _frame(trials), messages


def database_counts(path: str | None) -> tuple[dict[str, int], str | None]:
    """Trials by status in the database (for sweep progress), or ({}, why not)."""
    if not path:
        return {}, "no database given (--db)"
    from sweep.results.store import Store, StoreError

    if not os.path.exists(path):
        return {}, f"{path!r} does not exist yet"
    try:
        with Store(path, readonly=True) as store:
            return store.counts(), None
    except StoreError as exc:
        return {}, str(exc)


def database_plans(path: str | None) -> dict[str, dict[str, Any]]:
    """The sweeps' stored plans and running counts (``Store.plans``); empty where the database
    cannot be read (``database_counts`` says why)."""
    if not path or not os.path.exists(path):
        return {}
    from sweep.results.store import Store, StoreError

    try:
        with Store(path, readonly=True) as store:
            return store.plans()
    except StoreError:
        return {}


def database_signature(path: str | None) -> tuple[int, ...] | None:
    """Something that changes whenever a trial is written to the database, or None where it
    cannot be read: the number of rows, the highest row id and the number of superseded records
    (a trial run again in place keeps the count but adds a superseded record)."""
    if not path or not os.path.exists(path):
        return None
    from sweep.results.store import Store, StoreError

    try:
        with Store(path, readonly=True) as store:
            return store.signature()
    except (StoreError, sqlite3.Error):
        return None


@dataclass
class Data:
    """What the app currently shows: reference frames, the user's frame, the frames of more
    results files (``pooled``, by data set name) and messages."""

    db_path: str | None
    references: dict[str, pd.DataFrame] = field(default_factory=dict)
    measured: pd.DataFrame | None = None
    messages: list[str] = field(default_factory=list)
    pooled: dict[str, pd.DataFrame] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        db_path: str | None,
        data_dir: str = DATA_DIR,
        data_files=(),
        references: bool = True,
    ) -> Data:
        refs, ref_msgs = load_references(data_dir) if references else ({}, [])
        measured, db_msgs = load_database(db_path)
        pooled, file_msgs = load_data_files(data_files, taken=refs)
        return cls(db_path, refs, measured, db_msgs + file_msgs + ref_msgs, pooled)

    def frame(self) -> pd.DataFrame:
        """Every row shown, with its ``dataset``: the user's, each file's, each reference set's."""
        return combine(self.measured, self.references, self.pooled)

    @property
    def n_measured(self) -> int:
        return 0 if self.measured is None else len(self.measured)

    def datasets(self) -> list[str]:
        names = [MEASURED_DATASET] if self.n_measured else []
        return names + list(self.pooled) + list(self.references)
