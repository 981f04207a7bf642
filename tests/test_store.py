"""The central store: round trip, replacement rules, WAL readers, old records, bad paths."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from sweep.plan.config import TrialConfig
from sweep.results import record as rec
from sweep.results.frame import frame_columns, load_frame
from sweep.results.store import Store, StoreError


def make(status=rec.OK, batch=8, repeat=0, sweep="t", **kw) -> rec.Trial:
    config = TrialConfig(batch_size=batch).to_dict()
    metrics = {"tokens_per_s": 1000.0 * batch, "step_time_ms_p50": 12.5} if status == rec.OK else {}
    return rec.Trial(
        config=config,
        status=status,
        metrics=metrics,
        repeat=repeat,
        sweep=sweep,
        env={"hostname": "h1", "device": "cpu"},
        finished_at=rec.utc_now(),
        **kw,
    )


def test_round_trip_keeps_the_whole_record(tmp_path):
    db = tmp_path / "r.db"
    t = make(
        node="n1",
        ray_trial_id="abc_00001",
        gpu_type="A100",
        error=None,
        started_at="2026-01-01T00:00:00+00:00",
    )
    with Store(db) as s:
        assert s.put(t)
    with Store(db) as s:
        (back,) = s.trials()
        assert back == t
        assert s.get(t.key) == t
        assert s.counts() == {"ok": 1}
        assert s.final_keys() == {t.key}
    # the query columns agree with the record
    row = (
        sqlite3.connect(db)
        .execute("SELECT key, sweep, status, gpu_type, node, ray_trial_id FROM trials")
        .fetchone()
    )
    assert row == (t.key, "t", "ok", "A100", "n1", "abc_00001")


def test_repeats_are_distinct_rows_and_sweep_filter(tmp_path):
    with Store(tmp_path / "r.db") as s:
        s.put(make(repeat=0))
        s.put(make(repeat=1))
        s.put(make(batch=16, sweep="other"))
        assert len(s) == 3
        assert len(s.trials(sweep="t")) == 2
        assert s.counts(sweep="other") == {"ok": 1}


def test_ok_row_is_never_replaced_by_a_failure(tmp_path):
    with Store(tmp_path / "r.db") as s:
        good = make()
        s.put(good)
        assert not s.put(make(status=rec.OOM))
        assert not s.put(make(status=rec.CRASHED))
        assert s.get(good.key).status == rec.OK
        # a rerun that measures again replaces it, and the old one is kept aside
        newer = make().replace(metrics={"tokens_per_s": 1.0})
        assert s.put(newer)
        assert s.get(good.key).metrics == {"tokens_per_s": 1.0}
        assert [t.metrics for t in s.superseded(good.key)] == [good.metrics]


def test_non_final_rows_are_replaced_and_final_rows_not_by_non_final(tmp_path):
    with Store(tmp_path / "r.db") as s:
        s.put(make(status=rec.CRASHED))
        assert s.final_keys() == set()
        assert s.put(make(status=rec.TIMEOUT))
        assert not s.put(make(status=rec.NO_GPU_TYPE))  # final timeout kept
        assert s.put(make(status=rec.OK))
        assert s.counts() == {"ok": 1}
        assert len(s) == 1


def test_load_frame_one_row_per_trial_and_empty_frame_has_columns(tmp_path):
    db = tmp_path / "r.db"
    Store(db).close()
    empty = load_frame(db)
    assert len(empty) == 0
    for col in (
        "key",
        "status",
        "model",
        "batch_size",
        "tokens_per_s",
        "mfu",
        "env.gpu_name",
        "gpu",
    ):
        assert col in empty.columns
    assert list(empty.columns) == frame_columns()
    with Store(db) as s:
        s.put(make(batch=8))
        s.put(make(batch=32, status=rec.OOM))
    df = load_frame(db)
    assert len(df) == 2
    assert sorted(df["batch_size"]) == [8, 32]
    ok = df[df.status == "ok"].iloc[0]
    assert ok["tokens_per_s"] == 8000.0
    assert ok["env.hostname"] == "h1"
    assert ok["gpu"] == "cpu"


def test_older_schema_rows_still_load(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as s:
        s.put(make())
    # simulate a row written by an earlier version (no provenance/source fields, version 0)
    old = json.loads(make(batch=64).to_json())
    for k in ("provenance", "source", "schema_version"):
        old.pop(k)
    con = sqlite3.connect(db)
    con.execute(
        "INSERT INTO trials(key, sweep, status, schema_version, record) VALUES "
        "(?, 't', 'ok', 0, ?)",
        (old["key"], json.dumps(old)),
    )
    con.commit()
    con.close()
    df = load_frame(db)
    assert sorted(df["batch_size"]) == [8, 64]


def test_newer_schema_row_is_left_out_and_named(tmp_path):
    db = tmp_path / "r.db"
    Store(db).close()
    new = json.loads(make().to_json())
    new["schema_version"] = rec.SCHEMA_VERSION + 1
    con = sqlite3.connect(db)
    con.execute(
        "INSERT INTO trials(key, status, schema_version, record) VALUES (?, 'ok', 9, ?)",
        (new["key"], json.dumps(new)),
    )
    con.commit()
    con.close()
    with Store(db, readonly=True) as store:
        assert store.trials() == []
        assert "schema_version" in store.unreadable_note() and new["key"] in store.unreadable_note()


def test_wal_reader_reads_while_writer_holds_a_transaction(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as s:
        s.put(make(batch=8))
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # a writer in the middle of a transaction must not block a reader (WAL)
        s._conn.execute("BEGIN IMMEDIATE")
        s._conn.execute("UPDATE trials SET node='x'")
        reader = Store(db, readonly=True)
        reader._conn.execute("PRAGMA busy_timeout=0")  # would raise "locked" instead of waiting
        assert len(reader.trials()) == 1
        assert reader.trials()[0].node is None  # sees the last commit, not the open write
        s._conn.execute("COMMIT")
        reader.close()


def test_a_row_committed_survives_the_writer_being_killed(tmp_path):
    db = tmp_path / "r.db"
    code = (
        "import os, signal, sys\n"
        "from sweep.results.store import Store; from sweep.results import record as r\n"
        "s = Store(sys.argv[1])\n"
        "s.put(r.Trial(config={'batch_size': 1}, status='ok'))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(db)], cwd=os.getcwd())
    assert proc.returncode == -9
    assert len(Store(db, readonly=True).trials()) == 1


@pytest.mark.parametrize(
    "case", ["missing_dir", "not_sqlite", "other_db", "directory", "readonly_dir"]
)
def test_unusable_path_is_one_error_naming_it(tmp_path, case):
    if case == "missing_dir":
        path = tmp_path / "no" / "such" / "r.db"
    elif case == "not_sqlite":
        path = tmp_path / "notes.db"
        path.write_text("these are my notes, not a database\n" * 100)
    elif case == "other_db":
        path = tmp_path / "other.db"
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE customers(id INTEGER)")
        con.commit()
        con.close()
    elif case == "directory":
        path = tmp_path
    else:
        if os.geteuid() == 0:
            pytest.skip("root can write to a read-only directory")
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        path = ro / "r.db"
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(StoreError) as err:
        Store(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, ValueError)
    if before is not None:
        assert path.read_bytes() == before  # untouched


def test_missing_file_read_only_is_an_error_and_creates_nothing(tmp_path):
    path = tmp_path / "absent.db"
    with pytest.raises(StoreError, match="does not exist"):
        load_frame(path)
    assert not path.exists()


def test_store_imports_neither_torch_nor_ray():
    code = (
        "import sys, sweep.results.store; "
        "bad = [m for m in ('torch', 'ray', 'transformers', 'gradio') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
