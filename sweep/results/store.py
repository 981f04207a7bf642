"""The central store: every finished trial, one SQLite row each, written the moment it ends.

SQLite in WAL mode so that readers (the web app, ``python -m sweep status``) read while a sweep
writes (https://www.sqlite.org/wal.html: readers do not block the writer, nor it them). Each
``put`` is its own transaction, so a driver killed mid-sweep keeps every row it had written.

The full ``Trial`` record is stored as JSON; the few columns next to it (status, sweep, GPU type,
node, ...) exist only to query without parsing. A record replaced by a later run of the same key is
moved to ``superseded``, never deleted: nothing stored is lost.

This module imports neither torch nor ray: the web app loads results without them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import Counter
from typing import Any

from sweep.results.record import FINAL_STATUSES, OK, Trial

# PRAGMA application_id marks the file as ours (https://www.sqlite.org/pragma.html#pragma_application_id),
# so that pointing --db at some other SQLite file is an error, not a silent schema change.
APPLICATION_ID = 0x54535750  # "TSWP"
STORE_VERSION = 1  # the table layout (PRAGMA user_version); the record carries its own version

_COLUMNS = (
    "key",
    "sweep",
    "status",
    "gpu_type",
    "node",
    "ray_trial_id",
    "schema_version",
    "finished_at",
    "record",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    key TEXT PRIMARY KEY,
    sweep TEXT,
    status TEXT NOT NULL,
    gpu_type TEXT,
    node TEXT,
    ray_trial_id TEXT,
    schema_version INTEGER NOT NULL,
    finished_at TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trials_sweep ON trials(sweep);
CREATE TABLE IF NOT EXISTS superseded (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    replaced_at TEXT NOT NULL,
    record TEXT NOT NULL
);
"""


# What a sweep being written planned and has running (the app's progress view): one row per
# sweep, written by the engine when the sweep starts and as its trials start and end. Added
# after store version 1: created on every writable open, absent (read as no plans) elsewhere.
_PLANS = """
CREATE TABLE IF NOT EXISTS plans (
    sweep TEXT PRIMARY KEY,
    planned INTEGER,
    running INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""


def _cannot_open(exc: sqlite3.Error) -> bool:
    """SQLite's words when a read-only open needs a file it cannot create (-shm, -wal)."""
    text = str(exc)
    return "unable to open database file" in text or "readonly" in text


class StoreError(ValueError):
    """The database cannot be used: the message names the path and the reason."""


def should_replace(old_status: str, new_status: str) -> bool:
    """Whether a new record for an already stored key takes its place.

    An ok row is only replaced by another ok row (a --rerun measurement): a flaky OOM or a crash on
    a rerun must not hide a good measurement. Any other final row is replaced by a final row; a
    non-final row (crashed, no_gpu_type) by anything.
    """
    if old_status == OK:
        return new_status == OK
    if old_status in FINAL_STATUSES:
        return new_status in FINAL_STATUSES
    return True


class Store:
    """Trials in a SQLite file. ``Store(path)`` creates the file and its tables if needed and
    checks an existing one (``PRAGMA quick_check``), so that a sweep never starts on a damaged
    file.

    readonly=True opens an existing database without creating or changing anything (a missing
    file is then an error) and without the check (the web app opens it on every refresh); a
    damaged page it reads is a StoreError naming the file and what SQLite said.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = os.fspath(path)
        self.readonly = readonly
        self._lock = threading.Lock()  # Tune callbacks and the progress line share the driver
        self.unreadable: list[str] = []  # "key: why" of each row read that did not decode
        self.read_only_location = False  # read as immutable: SQLite could not open it for reading
        self._conn = self._open()

    # -- opening ---------------------------------------------------------------------------

    def _fail(self, reason: str) -> StoreError:
        return StoreError(f"database {self.path!r}: {reason}")

    def _sqlite_failed(self, exc: sqlite3.Error) -> StoreError:
        damaged = "malformed" in str(exc) or "not a database" in str(exc)
        hint = " (the file is damaged: restore a copy or use another --db)" if damaged else ""
        return self._fail(f"SQLite says: {exc}{hint}")

    def _open(self) -> sqlite3.Connection:
        path = self.path
        if path in ("", ":memory:") or path.startswith("file:"):
            # SQLite reads these as a private in-memory (or URI) database: every row of the sweep
            # would be gone when it ends
            raise self._fail("is not a file path: the results would be lost when the sweep ends")
        if os.path.isdir(path):
            raise self._fail("is a directory, not a results database file")
        exists = os.path.exists(path)
        if self.readonly and not exists:
            raise self._fail("does not exist (run a sweep first: python -m sweep)")
        if not exists:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise self._fail(f"cannot be created: directory {parent!r} does not exist")
            if not os.access(parent, os.W_OK):
                raise self._fail(f"cannot be created: directory {parent!r} is not writable")
        elif not self.readonly and not os.access(path, os.W_OK):
            raise self._fail("is not writable")
        try:
            try:
                conn, app_id, tables = self._connect("ro" if self.readonly else None)
            except sqlite3.OperationalError as exc:
                if not self.readonly or not _cannot_open(exc):
                    raise
                # a WAL file on a read-only volume, or in a directory this user cannot write:
                # SQLite cannot create the shared-memory file readers need
                # (https://www.sqlite.org/wal.html#readonly), so it is read as immutable
                conn, app_id, tables = self._connect("immutable")
                self.read_only_location = True
        except sqlite3.DatabaseError as exc:  # "file is not a database", unreadable, ...
            if "malformed" in str(exc):
                raise self._sqlite_failed(exc) from None
            raise self._fail(f"is not a results database ({exc})") from None
        ours = app_id == APPLICATION_ID
        if not ours and (app_id != 0 or tables):
            conn.close()
            raise self._fail(
                "is not a transformers-sweep results database "
                f"(it holds other tables: {', '.join(sorted(tables)) or 'none'})"
            )
        if self.readonly:
            if not ours:
                conn.close()
                raise self._fail("is empty, not a results database")
            return conn
        try:
            # WAL: concurrent readers while the sweep writes; NORMAL sync is durable against a
            # killed process (only a power loss can drop the last commits in WAL mode).
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if not ours:
                conn.execute("BEGIN IMMEDIATE")
                conn.executescript(_SCHEMA)  # executescript commits the open transaction
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={STORE_VERSION}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._fail(f"cannot be written ({exc})") from None
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > STORE_VERSION:
            conn.close()
            raise self._fail(
                f"was written by a newer transformers-sweep (store version "
                f"{version} > {STORE_VERSION}); upgrade"
            )
        if ours:
            self._quick_check(conn)
        try:
            conn.execute(_PLANS)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._fail(f"cannot be written ({exc})") from None
        return conn

    def _connect(self, how: str | None) -> tuple[sqlite3.Connection, int, set[str]]:
        """A connection (read-write, ``mode=ro`` or ``immutable=1``), the file's application id
        and its tables."""
        if how is None:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        else:
            flag = "mode=ro" if how == "ro" else "immutable=1"
            uri = "file:" + os.path.abspath(self.path) + "?" + flag
            conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per put.
            conn.isolation_level = None
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except BaseException:
            conn.close()
            raise
        return conn, app_id, tables

    def location_note(self) -> str:
        """One line saying the file is read from a read-only location ('' otherwise)."""
        if not self.read_only_location:
            return ""
        return (
            f"database {self.path!r} is in a read-only location (a read-only volume, or no "
            "write rights there): read as it is, without locking; a sweep cannot write to it"
        )

    def _quick_check(self, conn: sqlite3.Connection) -> None:
        """PRAGMA quick_check (https://www.sqlite.org/pragma.html#pragma_quick_check): every page
        read and its b-tree checked, in time linear in the file's size. A damaged file is refused
        before a sweep starts, not found out after Ray has started or half-way through."""
        try:
            found = [r[0] for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._sqlite_failed(exc) from None
        if found != ["ok"]:
            conn.close()
            raise self._fail(
                f"is damaged (SQLite's quick_check: {'; '.join(found)[:300]}); restore a copy or "
                "use another --db"
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def put(self, trial: Trial) -> bool:
        """Store one trial in its own transaction. Returns whether it was written (False: an
        existing row for the same key was kept, see ``should_replace``)."""
        if self.readonly:
            raise self._fail("opened read-only")
        record = trial.to_json()
        row = (
            trial.key,
            trial.sweep,
            trial.status,
            trial.gpu_type,
            trial.node,
            trial.ray_trial_id,
            trial.schema_version,
            trial.finished_at,
            record,
        )
        with self._lock:
            conn = self._conn
            # IMMEDIATE takes the write lock now, so the read-compare-write below cannot race
            # another writer (two drivers on one file).
            conn.execute("BEGIN IMMEDIATE")
            try:
                old = conn.execute(
                    "SELECT status, record FROM trials WHERE key=?", (trial.key,)
                ).fetchone()
                if old is not None:
                    if not should_replace(old[0], trial.status):
                        conn.execute("ROLLBACK")
                        return False
                    conn.execute(
                        "INSERT INTO superseded(key, replaced_at, record) "
                        "VALUES (?, datetime('now'), ?)",
                        (trial.key, old[1]),
                    )
                conn.execute(
                    f"INSERT OR REPLACE INTO trials({', '.join(_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                    row,
                )
                conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # no transaction left to roll back (SQLite ended it on the error)
                if isinstance(exc, sqlite3.DatabaseError):
                    raise self._sqlite_failed(exc) from None
                raise
        return True

    def put_plan(self, sweep: str, planned: int | None) -> None:
        """A sweep starts: its planned trials (None where not known in advance: a max-batch
        search), none running yet."""
        self._plan_write(
            "INSERT INTO plans(sweep, planned, running, started_at, updated_at) "
            "VALUES (?, ?, 0, datetime('now'), datetime('now')) ON CONFLICT(sweep) DO UPDATE "
            "SET planned=excluded.planned, running=0, started_at=excluded.started_at, "
            "updated_at=excluded.updated_at",
            (sweep, planned),
        )

    def set_running(self, sweep: str, running: int) -> None:
        """How many of the sweep's trials are running now."""
        self._plan_write(
            "UPDATE plans SET running=?, updated_at=datetime('now') WHERE sweep=?",
            (max(0, int(running)), sweep),
        )

    def _plan_write(self, sql: str, args: tuple) -> None:
        with self._lock:
            try:
                self._conn.execute(sql, args)
            except sqlite3.DatabaseError as exc:
                raise self._sqlite_failed(exc) from None

    def plans(self) -> dict[str, dict[str, Any]]:
        """sweep -> {planned, running, started_at, updated_at (UTC, "YYYY-MM-DD HH:MM:SS")};
        empty for a database written before plans were stored."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT sweep, planned, running, started_at, updated_at FROM plans"
                ).fetchall()
            except sqlite3.OperationalError:  # no such table: an older database, read-only
                return {}
            except sqlite3.DatabaseError as exc:
                raise self._sqlite_failed(exc) from None
        names = ("planned", "running", "started_at", "updated_at")
        return {r[0]: dict(zip(names, r[1:], strict=True)) for r in rows}

    # -- reading ---------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:  # a damaged page, found when it is read
                raise self._sqlite_failed(exc) from None

    def _decode(self, key: str, text: str) -> Trial | None:
        """The record of row ``key``, or None for one that does not decode (valid SQLite, JSON
        of another shape): it is named in ``unreadable`` (for the caller to say) and left out."""
        try:
            return Trial.from_json(text)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            problem = f"{key}: {str(exc)[:200]}"
            if problem not in self.unreadable:
                self.unreadable.append(problem)
            return None

    def trials(self, sweep: str | None = None) -> list[Trial]:
        """Every stored trial (of one sweep if given), in the order they were first written;
        a row that does not decode is left out and named in ``unreadable``."""
        if sweep is None:
            rows = self._query("SELECT key, record FROM trials ORDER BY rowid")
        else:
            rows = self._query(
                "SELECT key, record FROM trials WHERE sweep=? ORDER BY rowid", (sweep,)
            )
        return [t for t in (self._decode(k, r) for k, r in rows) if t is not None]

    def get(self, key: str) -> Trial | None:
        rows = self._query("SELECT key, record FROM trials WHERE key=?", (key,))
        return self._decode(*rows[0]) if rows else None

    def statuses(self) -> dict[str, str]:
        """key -> status of every stored row."""
        return dict(self._query("SELECT key, status FROM trials"))

    def final_keys(self) -> set[str]:
        """Keys stored with a final status: a resumed sweep skips them."""
        return {k for k, s in self.statuses().items() if s in FINAL_STATUSES}

    def counts(self, sweep: str | None = None) -> dict[str, int]:
        """Number of stored trials by status."""
        if sweep is None:
            rows = self._query("SELECT status, COUNT(*) FROM trials GROUP BY status")
        else:
            rows = self._query(
                "SELECT status, COUNT(*) FROM trials WHERE sweep=? GROUP BY status", (sweep,)
            )
        return dict(Counter(dict(rows)))

    def superseded(self, key: str | None = None) -> list[Trial]:
        """Records replaced by a later run, oldest first."""
        if key is None:
            rows = self._query("SELECT key, record FROM superseded ORDER BY id")
        else:
            rows = self._query("SELECT key, record FROM superseded WHERE key=? ORDER BY id", (key,))
        return [t for t in (self._decode(k, r) for k, r in rows) if t is not None]

    def readable_trials(self) -> tuple[list[Trial], list[str]]:
        """Each stored record on its own, in the order written: (the records that decode, one
        message per row that does not), so that one unreadable row does not hide the others
        (``trials()`` raises at the first)."""
        self.unreadable = []
        return self.trials(), list(self.unreadable)

    def unreadable_note(self) -> str:
        """One line naming the rows read so far that did not decode ('' if none)."""
        if not self.unreadable:
            return ""
        more = f" and {len(self.unreadable) - 3} more" if len(self.unreadable) > 3 else ""
        return (
            f"{len(self.unreadable)} row(s) of {self.path!r} cannot be read and are left out: "
            + "; ".join(self.unreadable[:3])
            + more
        )

    def signature(self) -> tuple[int, int, int]:
        """Something that changes whenever a trial is written: the number of rows, the highest
        row id and the number of superseded records (a trial run again in place keeps the count
        but adds a superseded record)."""
        n, top = self._query("SELECT COUNT(*), MAX(rowid) FROM trials")[0]
        (replaced,) = self._query("SELECT COUNT(*) FROM superseded")[0]
        return (n, top or 0, replaced)

    def __len__(self) -> int:
        return self._query("SELECT COUNT(*) FROM trials")[0][0]
