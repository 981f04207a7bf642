"""The store against what goes wrong around it: a damaged file, a path that keeps nothing, two
drivers on one sweep (the lease). No Ray instance: everything here fails before Ray would start."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from sweep import cli
from sweep.plan import sweepfile
from sweep.results import lease as lease_mod
from sweep.results.lease import Holder, Lease, LeaseHeld, is_stale
from sweep.results.store import Store, StoreError
from tests.test_store import make

PLAN = "name: lease-t\naxes: {batch_size: [1, 2]}\nfixed: {device: cpu, model: bert-tiny}\n"


def _damaged(path) -> str:
    """A real store of 300 rows, checkpointed, then 8 KiB overwritten in the middle: the header
    is intact (SQLite opens it), the pages under it are not."""
    with Store(path) as store:
        for b in range(1, 301):
            store.put(make(batch=b, error="x" * 500))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(b"\xff" * 8192)
    return str(path)


def test_a_damaged_file_is_refused_when_a_sweep_opens_it_and_when_it_is_read(tmp_path):
    db = _damaged(tmp_path / "d.db")
    with pytest.raises(StoreError) as err:
        Store(db)  # quick_check at open
    assert repr(db) in str(err.value) and "malformed" in str(err.value)
    reader = Store(db, readonly=True)  # no check at open (the app opens it on every refresh)
    with pytest.raises(StoreError, match="SQLite says: database disk image is malformed"):
        reader.trials()
    reader.close()


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["export"],
        ["plan", "smoke", "--no-cluster"],
        ["run", "smoke"],
    ],
)
def test_the_commands_say_one_error_line_on_a_damaged_file(tmp_path, capsys, argv):
    db = _damaged(tmp_path / "d.db")
    assert cli.main([*argv, "--db", db]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: database {db!r}: SQLite says: database disk image")
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("path", ["", ":memory:", "file::memory:?cache=shared"])
def test_a_db_path_that_keeps_nothing_is_refused(tmp_path, capsys, path):
    with pytest.raises(StoreError, match="is not a file path: the results would be lost"):
        Store(path)
    assert cli.main(["run", "smoke", "--db", path]) == 2
    assert "is not a file path" in capsys.readouterr().err


def test_staleness_rules():
    h = Holder("s", "hostA", 123, heartbeat=1000.0, started_at=900.0)
    alive, dead = (lambda pid: True), (lambda pid: False)
    assert not is_stale(h, 1010.0, "hostA", alive, stale_s=60)
    assert is_stale(h, 1010.0, "hostA", dead, stale_s=60)  # its pid is gone on this host
    assert not is_stale(h, 1010.0, "hostB", dead, stale_s=60)  # another host: pid not probed
    assert is_stale(h, 1061.0, "hostB", alive, stale_s=60)  # heartbeat too old


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_driver_is_refused_naming_the_holder_and_a_dead_one_is_taken_over(tmp_path):
    db = str(tmp_path / "r.db")
    Store(db).close()
    other = os.getppid()  # a live process that is not this one
    first = Lease(db, "s", pid=other)
    first.acquire()
    with pytest.raises(LeaseHeld) as err:
        Lease(db, "s").acquire()
    assert f"pid {other} on " in str(err.value) and "sweep 's' is being run" in str(err.value)
    Lease(db, "another-sweep").acquire()  # one lease per sweep name, not per file
    first.release()
    assert lease_mod.holder(db, "s") is None
    with Lease(db, "s"):  # free again
        assert lease_mod.holder(db, "s").pid == os.getpid()
    assert lease_mod.holder(db, "s") is None  # released on the way out

    gone = _dead_pid()
    Lease(db, "s", pid=gone).acquire()  # a driver SIGKILLed while it held the lease
    taker = Lease(db, "s")
    taker.acquire()
    assert taker.taken_over is not None and taker.taken_over.pid == gone
    taker.release()

    clock = [1000.0]
    Lease(db, "s", host="elsewhere", pid=other, clock=lambda: clock[0]).acquire()
    with pytest.raises(LeaseHeld):
        Lease(db, "s", clock=lambda: clock[0] + 10, stale_s=60).acquire()
    late = Lease(db, "s", clock=lambda: clock[0] + 61, stale_s=60)
    late.acquire()  # another host's lease whose heartbeat stopped
    assert late.taken_over.host == "elsewhere"
    late.release()


def test_a_live_pid_that_another_process_now_has_does_not_hold_the_lease(tmp_path):
    me = lease_mod.pid_start(os.getpid())
    assert isinstance(me, int) and me == lease_mod.pid_start(os.getpid())
    assert lease_mod.pid_start(_dead_pid()) is None
    h = Holder("s", "hostA", 123, heartbeat=0.0, started_at=0.0, pid_start=500)
    alive = lambda pid: True  # noqa: E731
    assert not is_stale(h, 1.0, "hostA", alive, start=lambda pid: 500)  # the same process
    assert is_stale(h, 1.0, "hostA", alive, start=lambda pid: 501)  # its pid reused
    assert not is_stale(h, 1.0, "hostA", alive, start=lambda pid: None)  # cannot tell: alive

    db = str(tmp_path / "r.db")
    Store(db).close()
    other = os.getppid()  # alive on this host, its start time known
    Lease(db, "s", pid=other).acquire()  # the holder's start time goes with the lease
    with pytest.raises(LeaseHeld):
        Lease(db, "s").acquire()
    conn = sqlite3.connect(db)  # the holder ended and the kernel gave its pid to a new process
    conn.execute("UPDATE leases SET pid_start = pid_start - 1")
    conn.commit()
    conn.close()
    taker = Lease(db, "s")
    taker.acquire()
    assert taker.taken_over.pid == other
    taker.release()


def test_a_lease_table_written_before_start_times_is_read_and_extended(tmp_path):
    db = str(tmp_path / "r.db")
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE leases (sweep TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, "
        "heartbeat REAL NOT NULL, started_at REAL NOT NULL)"
    )
    conn.execute("INSERT INTO leases VALUES ('s', 'h', 1, 0, 0)")
    conn.commit()
    conn.close()
    assert lease_mod.holder(db, "s").pid_start is None
    with Lease(db, "t"):
        pass
    with Lease(db, "s", host="h2", stale_s=1) as taken:
        assert taken.taken_over.pid == 1
        assert lease_mod.holder(db, "s").pid_start == lease_mod.pid_start(os.getpid())


def test_the_heartbeat_moves_and_the_lease_is_released_on_an_error(tmp_path):
    db = str(tmp_path / "r.db")
    Store(db).close()
    t = [100.0]
    with pytest.raises(RuntimeError):
        with Lease(db, "s", clock=lambda: t[0], beat_s=3600) as held:
            t[0] = 150.0
            held.beat()
            assert lease_mod.holder(db, "s").heartbeat == 150.0
            raise RuntimeError("the sweep failed")
    assert lease_mod.holder(db, "s") is None
    with pytest.raises(KeyboardInterrupt):
        with Lease(db, "s"):
            raise KeyboardInterrupt
    assert lease_mod.holder(db, "s") is None


def test_the_lease_keeps_beating_while_the_sweep_runs(tmp_path):
    db = str(tmp_path / "r.db")
    Store(db).close()
    t = [100.0]

    def clock() -> float:
        t[0] += 1.0
        return t[0]

    with Lease(db, "s", clock=clock, beat_s=0.02):
        first = lease_mod.holder(db, "s").heartbeat
        deadline = time.monotonic() + 3
        while lease_mod.holder(db, "s").heartbeat == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lease_mod.holder(db, "s").heartbeat > first  # the thread refreshed it
    assert lease_mod.holder(db, "s") is None


def test_run_refuses_a_held_sweep_before_ray_and_stores_nothing(tmp_path, capsys):
    src = tmp_path / "lease-t.yaml"
    src.write_text(PLAN)
    db = str(tmp_path / "r.db")
    Store(db).close()
    Lease(db, "lease-t", pid=os.getppid()).acquire()
    assert cli.main(["run", str(src), "--db", db, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: database {db!r}: sweep 'lease-t' is being run by")
    assert len(Store(db, readonly=True)) == 0
    assert sweepfile.load(str(src)).name == "lease-t"
