"""benchmarks/gpu_collect.sh packs what a detached GPU campaign measured. Its first version
dropped every database snapshot from the archive (a tar exclude pattern matched inside
snapshot/), and the per-trial records of a whole H200 run were lost; these tests keep that from
happening again."""

import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "gpu_collect.sh")

pytestmark = pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")


def _campaign(tmp_path):
    d = tmp_path / "camp"
    d.mkdir()
    db = sqlite3.connect(d / "h200.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE trials (key TEXT, record TEXT)")
    db.execute("INSERT INTO trials VALUES ('k1', '{}')")
    db.commit()  # left open: the campaign's writer may still hold it, its rows in the WAL
    (d / "campaign.log").write_text("START seed\n")
    (d / "seed.out").write_text("summary\n")
    (d / "DONE").touch()
    return d, db


def _collect(d, archive):
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    return subprocess.run(
        ["bash", SCRIPT, str(d), "0", str(archive)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )


def test_the_archive_holds_a_consistent_snapshot_of_each_database(tmp_path):
    d, writer = _campaign(tmp_path)
    archive = tmp_path / "camp.tgz"
    out = _collect(d, archive)
    writer.close()
    assert "packed 1 database snapshot(s)" in out.stdout
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        assert "./snapshot/h200.db" in names
        assert "./seed.out" in names and "./campaign.log" in names
        # the live database (and its WAL) is left out: copied mid-write it could be torn
        assert "./h200.db" not in names and "./h200.db-wal" not in names
        tar.extractall(tmp_path / "back", filter="data")
    rows = (
        sqlite3.connect(tmp_path / "back" / "snapshot" / "h200.db")
        .execute("SELECT key FROM trials")
        .fetchall()
    )
    assert rows == [("k1",)]  # the row still in the writer's WAL made it into the snapshot


def test_the_campaign_runs_the_named_steps_in_the_order_given(tmp_path):
    """STEPS= puts what a lease did not finish first; a misspelt step says so, not silently."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "python3"  # stands in for every python3 the campaign starts
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake.chmod(0o755)
    script = os.path.join(os.path.dirname(SCRIPT), "gpu_campaign.sh")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env["STEPS"] = "max_batch repeats no_such_step"
    subprocess.run(
        ["bash", script, str(tmp_path / "camp"), "600"],
        env=env,
        timeout=60,
        check=True,
        capture_output=True,
    )
    runs = [line for line in calls.read_text().splitlines() if line.startswith("-m sweep run")]
    assert [r.split()[3] for r in runs] == [
        "benchmarks/sweeps/h200-max-batch.yaml",
        "benchmarks/sweeps/h200-repeats.yaml",
    ]
    log = (tmp_path / "camp" / "campaign.log").read_text()
    assert "UNKNOWN step no_such_step" in log
    assert (tmp_path / "camp" / "DONE").exists()


def test_every_sweep_file_the_campaign_names_exists_and_plans():
    """A lease is too short to find a misspelt or broken sweep file on the GPU machine."""
    import re

    from sweep.plan.grid import expand
    from sweep.plan.sweepfile import load

    root = os.path.dirname(os.path.dirname(os.path.abspath(SCRIPT)))
    text = open(os.path.join(os.path.dirname(SCRIPT), "gpu_campaign.sh"), encoding="utf-8").read()
    named = sorted(set(re.findall(r"benchmarks/sweeps/[\w.-]+\.yaml", text)))
    assert "benchmarks/sweeps/h200-compile-bert.yaml" in named
    for rel in named:
        trials = expand(load(os.path.join(root, rel)))
        assert trials and all(t.config.device == "cuda" for t in trials), rel
