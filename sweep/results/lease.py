"""A sweep's lease on its database: one driver at a time runs a given sweep into a given file.

Two drivers started on the same sweep and database would each run every trial (the second one's
rows superseding the first's). The lease is a row of the ``leases`` table in the results file
itself (sweep name, host, pid, heartbeat), taken in one ``BEGIN IMMEDIATE`` transaction, so two
drivers racing for it cannot both win. While it runs, the holder refreshes the heartbeat every
``beat_s``; a second driver refuses to start, naming the holder, unless the lease is stale:

- its pid is not alive on this host (a driver that was SIGKILLed, or whose machine rebooted), or
  that pid is now another process's (its start time, kept with the lease, differs), or
- it is on another host (which we cannot probe) and its heartbeat is older than ``stale_s``.

Rows are keyed by configuration, not by sweep: the lease also lists the sweep's planned keys
(``plan_keys``, kept after the lease ends as the sweep's last plan, which ``status`` counts), and
a driver whose plan shares configurations with a live driver's, under another sweep name, is
refused the same way. A driver that finds its own lease gone (its
heartbeat updates no row: another host took it over) sets ``lost``, and the engine stops.

The lease is released when the sweep ends, however it ends (an error, Ctrl-C); only SIGKILL or a
lost host leaves it behind, and the rules above take it over. This module imports neither torch
nor ray.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass

from sweep.plan.grid import GROUP_PREFIX
from sweep.results.store import StoreError

# A holder that has not written its heartbeat for this long is presumed dead. Ten beats: a
# driver busy in Tune's loop, or a slow shared disk, does not lose its lease.
STALE_S = 120.0
BEAT_S = 12.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    sweep TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL,
    started_at REAL NOT NULL,
    pid_start INTEGER
)
"""
_KEYS = """
CREATE TABLE IF NOT EXISTS plan_keys (
    sweep TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (sweep, key)
)
"""


class LeaseHeld(StoreError):
    """Another live driver holds the sweep's lease; the message names it."""


@dataclass(frozen=True)
class Holder:
    """Who holds a sweep's lease. Times are Unix seconds."""

    sweep: str
    host: str
    pid: int
    heartbeat: float
    started_at: float
    pid_start: int | None = None  # the process's start time (pid_start), None if unknown

    def describe(self, now: float) -> str:
        return (
            f"pid {self.pid} on {self.host} (started {now - self.started_at:.0f} s ago, "
            f"last heartbeat {now - self.heartbeat:.0f} s ago)"
        )


def pid_alive(pid: int) -> bool:
    """Whether a process of this pid exists on this host (signal 0 probes without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def pid_start(pid: int) -> int | None:
    """When process ``pid`` of this host started, in clock ticks since boot (field 22 of
    /proc/PID/stat, proc(5)); None where there is no such process or no /proc. A pid the kernel
    hands to a new process after the old one ended has another start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        # the command name (field 2) is in parentheses and may hold spaces: count after it
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def is_stale(
    holder: Holder, now: float, host: str, alive, stale_s: float = STALE_S, start=pid_start
) -> bool:
    """Whether ``holder``'s lease may be taken over: its pid is dead on this host, or is now
    another process (``start(pid)``, its start time, differs from the holder's), or, on another
    host (which we cannot probe), its heartbeat is older than ``stale_s``. The holder's own live
    process on this host is never stale, however old its heartbeat: a driver paused by Ctrl-Z or
    a suspended VM beats no more, and resumes running its trials. ``alive(pid)`` probes a pid of
    this host."""
    if holder.host == host:
        if not alive(holder.pid):
            return True
        now_start = None if holder.pid_start is None else start(holder.pid)
        return now_start is not None and now_start != holder.pid_start
    return now - holder.heartbeat > stale_s


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    conn.isolation_level = None  # explicit transactions
    return conn


def _has_pid_start(conn: sqlite3.Connection) -> bool:
    """Whether the leases table has its pid_start column (a file written before it has not)."""
    return any(r[1] == "pid_start" for r in conn.execute("PRAGMA table_info(leases)"))


def _read(conn: sqlite3.Connection, sweep: str) -> Holder | None:
    start = "pid_start" if _has_pid_start(conn) else "NULL"
    row = conn.execute(
        f"SELECT sweep, host, pid, heartbeat, started_at, {start} FROM leases WHERE sweep=?",
        (sweep,),
    ).fetchone()
    return Holder(*row) if row else None


def planned_keys(store) -> dict[str, set[str]]:
    """sweep -> the configuration keys its last run planned (``plan_keys``); empty for a
    database written before plans kept their keys. A max-batch search's groups are not keys of
    rows: such a sweep is left out (counted from its own rows)."""
    try:
        rows = store._query(
            "SELECT sweep, key FROM plan_keys WHERE substr(key, 1, ?) != ?",
            (len(GROUP_PREFIX), GROUP_PREFIX),
        )
    except StoreError:  # no such table
        return {}
    plans: dict[str, set[str]] = {}
    for sweep, key in rows:
        plans.setdefault(sweep, set()).add(key)
    return plans


def holder(path: str, sweep: str) -> Holder | None:
    """The lease on ``sweep`` in the database at ``path``, or None (read-only: a missing file
    is an error, never created)."""
    conn = sqlite3.connect("file:" + os.path.abspath(path) + "?mode=ro", uri=True, timeout=30)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return _read(conn, sweep) if "leases" in tables else None
    finally:
        conn.close()


class Lease:
    """The lease of ``sweep`` in the results database at ``path``, for this process.

    ``with Lease(path, sweep):`` takes it (LeaseHeld if a live driver holds it), keeps its
    heartbeat from a daemon thread, and releases it on the way out, whatever the way out is.
    ``taken_over`` is the stale holder it replaced, if any (for a log line).
    """

    def __init__(
        self,
        path: str,
        sweep: str,
        *,
        host: str | None = None,
        pid: int | None = None,
        stale_s: float = STALE_S,
        beat_s: float = BEAT_S,
        alive=pid_alive,
        start=pid_start,
        clock=time.time,
        keys: list[str] | None = None,
    ) -> None:
        self.path, self.sweep = os.fspath(path), sweep
        self.keys = sorted(set(keys or ()))
        self._groups = any(k.startswith(GROUP_PREFIX) for k in self.keys)  # a max-batch search
        self.lost = False  # the heartbeat found the lease gone: another driver took it over
        self.host = host or socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self.stale_s, self.beat_s = stale_s, beat_s
        self._alive, self._start, self._clock = alive, start, clock
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.taken_over: Holder | None = None

    def _fail(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"database {self.path!r}: the sweep's lease: SQLite says: {exc}")

    def acquire(self) -> None:
        """Take the lease, or raise LeaseHeld naming the live holder."""
        try:
            self._conn = conn = _connect(self.path)
            conn.execute("BEGIN IMMEDIATE")  # the write lock: a racing driver waits here
            try:
                conn.execute(_SCHEMA)
                if not _has_pid_start(conn):
                    conn.execute("ALTER TABLE leases ADD COLUMN pid_start INTEGER")
                now = self._clock()
                old = _read(conn, self.sweep)
                mine = old is not None and (old.host, old.pid) == (self.host, self.pid)
                if old is not None and not mine:
                    if not self._stale(old, now):
                        conn.execute("ROLLBACK")
                        raise LeaseHeld(
                            f"database {self.path!r}: sweep {self.sweep!r} is being run by "
                            f"another driver, {old.describe(now)}; wait for it to end, or stop "
                            f"it (its lease is taken over once its pid is gone from its host; "
                            f"from another host, once its heartbeat is {self.stale_s:g} s old)"
                        )
                    self.taken_over = old
                conn.execute(
                    "INSERT OR REPLACE INTO leases(sweep, host, pid, heartbeat, started_at, "
                    "pid_start) VALUES (?, ?, ?, ?, ?, ?)",
                    (self.sweep, self.host, self.pid, now, now, self._start(self.pid)),
                )
                self._claim_keys(conn, now)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._close()
            raise self._fail(exc) from None
        except BaseException:
            self._close()
            raise

    def _stale(self, holder: Holder, now: float) -> bool:
        return is_stale(holder, now, self.host, self._alive, self.stale_s, self._start)

    def _claim_keys(self, conn: sqlite3.Connection, now: float) -> None:
        """List this sweep's planned keys under its lease, refusing (LeaseHeld) where a live
        driver of another sweep name holds some of them; a stale one's are taken over."""
        conn.execute(_KEYS)
        conn.execute("DELETE FROM plan_keys WHERE sweep=?", (self.sweep,))
        conn.executemany(
            "INSERT INTO plan_keys(sweep, key) VALUES (?, ?)", ((self.sweep, k) for k in self.keys)
        )
        shared = conn.execute(
            "SELECT b.sweep, COUNT(*) FROM plan_keys a JOIN plan_keys b ON a.key = b.key "
            "WHERE a.sweep = ? AND b.sweep != ? GROUP BY b.sweep",
            (self.sweep, self.sweep),
        ).fetchall()
        for other, n in shared:
            held = _read(conn, other)
            if held is None:  # a sweep that ended: its rows are stored, a resume skips them
                continue
            if not self._stale(held, now):
                conn.execute("ROLLBACK")
                what = "configurations" if not self._groups else "groups (batch size aside)"
                raise LeaseHeld(
                    f"database {self.path!r}: {n} of the {len(self.keys)} {what} of "
                    f"sweep {self.sweep!r} are being run by sweep {other!r}, "
                    f"{held.describe(now)}; wait for it to end (its rows then count for both)"
                )
            conn.execute("DELETE FROM leases WHERE sweep=?", (other,))  # a dead driver's

    def beat(self) -> None:
        """Refresh the heartbeat of the lease this process holds; ``lost`` when it is gone."""
        with self._lock:
            if self._conn is None:
                return
            cursor = self._conn.execute(
                "UPDATE leases SET heartbeat=? WHERE sweep=? AND host=? AND pid=?",
                (self._clock(), self.sweep, self.host, self.pid),
            )
            if cursor.rowcount == 0:
                self.lost = True

    def release(self) -> None:
        """Give the lease back (only this process's own: a lease taken over is left alone)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute(
                        "DELETE FROM leases WHERE sweep=? AND host=? AND pid=?",
                        (self.sweep, self.host, self.pid),
                    )
                except sqlite3.Error:
                    pass  # the file went away or broke: a stale lease is taken over later
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _beat_forever(self) -> None:
        while not self._stop.wait(self.beat_s):
            try:
                self.beat()
            except sqlite3.Error:
                pass  # a busy file: the next beat tries again, well within stale_s

    def __enter__(self) -> Lease:
        self.acquire()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat_forever, name="lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
