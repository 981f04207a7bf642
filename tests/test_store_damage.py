"""Valid databases that are hard to read (issue 26): a row whose JSON has the wrong shape, and a
file in a read-only location. The commands read what they can and name the rest; no traceback,
no "not a results database". Pure, no Ray instance."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess

import pytest

from sweep import cli
from sweep.analysis.sources import load_database
from sweep.results.store import Store
from tests.test_store import make


def _with_bad_row(path) -> tuple[str, str]:
    """Two good rows and one whose record is valid JSON of another shape."""
    with Store(path) as store:
        store.put(make(batch=1))
        store.put(make(batch=2))
        bad = make(batch=3)
        store.put(bad)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE trials SET record=? WHERE key=?", ('{"config": 5, "status": []}', bad.key))
    conn.commit()
    conn.close()
    return str(path), bad.key


@pytest.mark.parametrize(
    "argv",
    [["status"], ["export"], ["export", "--format", "jsonl"], ["export", "--sweep", "t"]],
)
def test_a_row_of_the_wrong_shape_is_skipped_and_named(tmp_path, capsys, caplog, argv):
    db, key = _with_bad_row(tmp_path / "r.db")
    assert cli.main([*argv, "--db", db]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert f"1 row(s) of {db!r} cannot be read and are left out: {key}" in out + err + caplog.text
    if argv == ["status"]:
        assert f"{db}: 2 trials" in out


def test_the_store_names_the_bad_row_and_reads_the_others(tmp_path):
    db, key = _with_bad_row(tmp_path / "r.db")
    with Store(db, readonly=True) as store:
        assert len(store.trials()) == 2
        assert store.get(key) is None
        assert store.unreadable == [store.unreadable[0]] and store.unreadable[0].startswith(key)
    frame, messages = load_database(db)
    assert len(frame) == 2 and key in messages[0]


@contextlib.contextmanager
def _read_only(directory):
    """``directory`` made unwritable for this process (chmod for a user, the immutable attribute
    for root, whom permissions do not stop); skipped where neither can be done."""
    if os.geteuid() != 0:
        os.chmod(directory, 0o555)
        undo = ["chmod", "755", str(directory)]
    else:
        done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a directory read-only as root here: {done.stderr!r}")
        undo = ["chattr", "-i", str(directory)]
    try:
        try:
            open(os.path.join(directory, "probe"), "w").close()
        except OSError:
            pass
        else:
            pytest.skip("the directory is still writable")
        yield
    finally:
        subprocess.run(undo, check=True)


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["export"],
        ["plan", "smoke", "--no-cluster"],
        ["compare", "--model", "bert-tiny", "--seq-len", "128", "--no-reference"],
    ],
)
def test_a_database_in_a_read_only_location_is_read_and_said_to_be(tmp_path, capsys, caplog, argv):
    path = tmp_path / "ro" / "r.db"
    path.parent.mkdir()
    with Store(path) as store:  # WAL mode: a reader needs a -shm file beside it
        store.put(make(batch=1))
        store.put(make(batch=2))
    assert not os.path.exists(f"{path}-shm")
    with _read_only(path.parent):
        code = cli.main([*argv, "--db", str(path)])
        frame, messages = load_database(str(path))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "not a results database" not in err
    assert "is in a read-only location" in out + err + caplog.text
    assert len(frame) == 2 and any("read-only location" in m for m in messages)
