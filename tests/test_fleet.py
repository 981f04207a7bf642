"""A fleet sweep on a fake Ray cluster: a node lost mid-sweep, a scarce GPU type, device auto on
GPU-typed nodes without CUDA (tests/fleet_scenarios.py, one process per scenario)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tests", "fleet_scenarios.py")


def _scenario(name, tmp_path, timeout=280):
    db, out = str(tmp_path / "r.db"), str(tmp_path / "out.json")
    proc = subprocess.run(
        [sys.executable, SCRIPT, name, db, out],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out) as fh:
        return json.load(fh)


@pytest.mark.timeout(300)
def test_a_node_lost_mid_sweep_does_not_hang_it_and_a_resume_runs_the_rest(tmp_path):
    result = _scenario("lost-node", tmp_path)
    first = result["first"]
    assert "removed_at" in result, "the V100 node was never removed"
    # the sweep ended by itself, well before a hang would be noticed
    assert result["first_wall_s"] < 90
    a100 = [r for r in first if r["gpu_type"] == "A100"]
    v100 = [r for r in first if r["gpu_type"] == "V100"]
    assert sorted(r["status"] for r in a100) == ["ok"] * 4  # the other type kept running
    # every V100 trial is a row: ok if it ended before the node went, else not final
    assert len(v100) == 4
    assert {r["status"] for r in v100} <= {"ok", "no_gpu_type", "crashed"}
    assert any(r["status"] == "no_gpu_type" for r in v100)
    waited = [r for r in v100 if r["status"] == "no_gpu_type"]
    assert all("no live node with a free V100 GPU for 5 s" in r["error"] for r in waited)
    # two A100 GPUs: A100 trials ran side by side (some pair overlaps in time)
    spans = sorted((r["metrics"]["wall_start_s"], r["metrics"]["wall_end_s"]) for r in a100)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False)), spans
    # the resume, with a V100 node back, runs what was left: 8 ok rows, none twice
    resumed = result["resumed"]
    assert len({r["key"] for r in resumed}) == len(resumed) == 8
    assert sorted(r["status"] for r in resumed) == ["ok"] * 8


@pytest.mark.timeout(300)
def test_device_auto_on_gpu_typed_nodes_without_cuda_never_stores_a_cpu_measurement(tmp_path):
    pytest.importorskip("torch")
    rows = _scenario("auto-device", tmp_path)["rows"]
    assert len(rows) == 1
    (row,) = rows
    assert row["gpu_type"] == "V100"
    assert row["status"] == "no_gpu_type", row  # not ok, and not final: a resume retries it
    assert "no CUDA device" in row["error"]
    assert "step_time_ms_p50" not in row["metrics"]
