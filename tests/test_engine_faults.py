"""Issue 26's fault scenarios on one local Ray instance with fake trials: a store that fills up
mid-sweep, a second sweep name over the same configurations, SIGTERM and SIGHUP, a paused
driver's lease. Each ends with every planned configuration stored exactly once, or with a
one-line refusal."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys

import pytest

from sweep import cli
from sweep.engine.guard import StoreFailed
from sweep.engine.pause import PauseClock
from sweep.engine.run import run_sweep
from sweep.plan import sweepfile
from sweep.plan.grid import claimed_keys, expand
from sweep.results.lease import Holder, Lease, LeaseHeld, is_stale
from sweep.results.store import Store
from tests.test_engine import FAKE, REPO, _gcs_address, options, wait_for_rows
from tests.test_store import make

pytestmark = pytest.mark.timeout(240)

SLOW = """
name: {name}
axes:
  batch_size: [10, 11, 12, 13, 14, 15, 16, 17]
fixed: {{device: cpu}}
timeout_s: 60
"""


def test_a_full_disk_stops_the_sweep_at_once_and_keeps_what_it_measured(
    tmp_path, ray_session, monkeypatch, capsys
):
    spec = sweepfile.parse(SLOW.format(name="full"))
    db = tmp_path / "r.db"
    real_put = Store.put
    puts = []

    def put_until_full(self, trial):
        puts.append(trial.key)
        if len(puts) > 2:  # as SQLite says it when the disk holding the file is full
            raise self._sqlite_failed(sqlite3.OperationalError("database or disk is full"))
        return real_put(self, trial)

    monkeypatch.setattr(Store, "put", put_until_full)
    with pytest.raises(StoreFailed) as err:
        run_sweep(spec, options(db, "sleep_by_batch", num_cpus=2))
    msg = str(err.value)
    assert f"database {str(db)!r}: SQLite says: database or disk is full" in msg
    assert "python -m sweep import" in msg and "\n" not in msg
    spill = msg.split(" are in ")[1].split(" (load them")[0]
    monkeypatch.setattr(Store, "put", real_put)
    with Store(db) as store:
        assert len(store) == 2
    n_spilled = sum(1 for _ in open(spill))
    assert n_spilled >= 1
    assert len(puts) < 8  # stopped scheduling: not every trial ran into a full disk

    assert cli.main(["import", spill, "--db", str(db)]) == 0
    assert f"imported {n_spilled} of {n_spilled}" in capsys.readouterr().err
    again = run_sweep(spec, options(db, "sleep_by_batch", num_cpus=2))
    with Store(db) as store:
        assert sorted(t.status for t in store.trials()) == ["ok"] * 8
        assert store.superseded() == []  # every configuration measured exactly once
    assert again.counts == {"ok": 8}


def test_a_second_sweep_name_over_running_configurations_is_refused(tmp_path):
    db = str(tmp_path / "r.db")
    Store(db).close()
    shared = ["k1", "k2", "k3"]
    with Lease(db, "first", keys=[*shared, "k4"]):
        with pytest.raises(LeaseHeld, match=r"3 of the 4 configurations of sweep 'second' are "):
            Lease(db, "second", keys=[*shared, "k5"], pid=1).acquire()
        other = Lease(db, "other", keys=["k9"])  # nothing shared: runs beside it
        other.acquire()
        other.release()
    # the first sweep ended: its planned keys are stored, the second may run (it skips them)
    second = Lease(db, "second", keys=[*shared, "k5"])
    second.acquire()
    second.release()


MAX_BATCH = """
name: {name}
mode: max-batch
axes: {{seq_len: {seq_lens}}}
fixed: {{device: cpu, batch_size: {start}}}
"""


def test_two_max_batch_sweeps_over_the_same_groups_are_refused(tmp_path, capsys):
    db = str(tmp_path / "r.db")
    Store(db).close()

    def claimed(name, seq_lens, start=4):
        spec = sweepfile.parse(MAX_BATCH.format(name=name, seq_lens=seq_lens, start=start))
        return claimed_keys(spec, expand(spec))

    first = claimed("first", [64, 128])
    assert len(first) == 2 and claimed("first", [64, 128], start=16) == first  # batch aside
    with Lease(db, "first", keys=first):
        with pytest.raises(LeaseHeld, match=r"1 of the 2 groups \(batch size aside\) of sweep "):
            Lease(db, "second", keys=claimed("second", [128, 256], start=8), pid=1).acquire()
        with Lease(db, "apart", keys=claimed("apart", [32])):  # no group shared: runs beside it
            pass
    with Store(db) as store:
        store.put(make(batch=4, sweep="first"))
    assert cli.main(["status", "--db", db]) == 0  # groups are not rows: counted from its rows
    assert "  first: 1 (ok 1)" in capsys.readouterr().out


def test_status_counts_a_sweeps_planned_keys_wherever_their_rows_came_from(tmp_path, capsys):
    db = str(tmp_path / "r.db")
    rows = [make(batch=b, sweep="first") for b in (1, 2)] + [make(batch=3, sweep="second")]
    with Store(db) as store:
        for row in rows:
            store.put(row)
    for name, keys in (("first", rows), ("second", rows)):
        lease = Lease(db, name, keys=[t.key for t in keys])
        lease.acquire()
        lease.release()
    assert cli.main(["status", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "  first: 3 (ok 3)" in out and "  second: 3 (ok 3)" in out, out


def test_a_live_pid_on_this_host_is_never_stale_and_a_lost_lease_is_noticed(tmp_path):
    paused = Holder("s", "here", 123, heartbeat=0.0, started_at=0.0)
    assert not is_stale(paused, 10_000.0, "here", alive=lambda pid: True)
    assert is_stale(paused, 10_000.0, "there", alive=lambda pid: True)  # another host: heartbeat
    db = str(tmp_path / "r.db")
    Store(db).close()
    with Lease(db, "s", beat_s=3600) as lease:
        lease.beat()
        assert not lease.lost
        conn = sqlite3.connect(db)  # another host took it over
        conn.execute("UPDATE leases SET host='elsewhere', pid=1")
        conn.commit()
        conn.close()
        lease.beat()
        assert lease.lost


def test_the_pause_clock_leaves_the_drivers_pause_out():
    now = [0.0]
    clock = PauseClock(tick_s=0.5, gap_s=5.0, monotonic=lambda: now[0])
    for _ in range(4):
        now[0] += 0.5
        clock.tick()
    assert clock() == 2.0
    now[0] += 130.0  # SIGSTOP for 130 s: no tick ran
    assert clock() == pytest.approx(2.5)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_like_ctrl_c(tmp_path, ray_session, sig, code):
    sweep_file = tmp_path / "slow.yaml"
    sweep_file.write_text(SLOW.format(name=f"sig{code}"))
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "sweep", "run", str(sweep_file), "--db", str(db)]
    cmd += ["--address", _gcs_address(ray_session), "--trial-fn", FAKE + "sleep_by_batch"]
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_rows(db, driver, 1)
    driver.send_signal(sig)
    _, err = driver.communicate(timeout=120)
    text = err.decode()
    assert driver.returncode == code, text
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].startswith("interrupted: ")
    with Store(db) as s:
        assert all(t.status in ("ok", "crashed") for t in s.trials())
        assert s.final_keys() and len(s.final_keys()) < 8
