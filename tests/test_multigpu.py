"""Scheduling N-GPU trials (gpus_per_trial > 1): N GPUs of ONE node, never split."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cluster.placement import capacity_of_nodes, max_gpus_per_node, place
from sweep.plan import sweepfile
from sweep.plan.grid import expand

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _node(cpus, gpus, gpu_type=None):
    res = {"CPU": cpus, "GPU": gpus}
    if gpu_type:
        res[f"accelerator_type:{gpu_type}"] = 1
    return {"Resources": res, "Alive": True}


NODES = [_node(8, 1, "A100"), _node(8, 1, "A100"), _node(16, 4, "H100"), _node(4, 0)]


def test_capacity_counts_n_gpus_of_one_node():
    cap = capacity_of_nodes(NODES, cpus_per_trial=1)
    assert cap.of((True, None)) == 6 and cap.of((True, None, 1)) == 6  # one-GPU slots as before
    assert cap.of((True, "A100", 2)) == 0  # two nodes of 1 GPU never make a 2-GPU slot
    assert cap.of((True, "H100", 2)) == 2 and cap.of((True, "H100", 4)) == 1
    assert cap.of((True, None, 2)) == 2 and cap.of((True, None, 8)) == 0
    # each rank takes cpus_per_trial CPUs: 4 GPUs x 5 CPUs do not fit in 16
    assert capacity_of_nodes(NODES, cpus_per_trial=5).of((True, "H100", 4)) == 0
    assert cap.of((False, None, 2)) == 4 + 4 + 8 + 2  # CPU ranks: 2 CPUs per trial


def test_place_refuses_an_n_gpu_trial_no_node_holds():
    spec = sweepfile.parse(
        "name: m\ngpu_types: [A100, H100]\naxes: {gpus_per_trial: [1, 2, 8]}\n"
        "fixed: {device: cuda}\n"
    )
    planned = expand(spec)
    p = place(spec, planned, {"A100": 2, "H100": 4}, True, max_gpus_per_node(NODES))
    ran = sorted((t.gpu_type, t.config.gpus_per_trial) for t, _ in p.runnable)
    assert ran == [("A100", 1), ("H100", 1), ("H100", 2)]
    errors = sorted(r.error for r in p.unplaceable)
    assert all(r.status == "no_gpu_type" for r in p.unplaceable) and len(errors) == 3
    assert "gpus_per_trial: 2 GPUs on one node asked for; the largest node has 1 A100" in errors[0]
    # a type with no live node yet (autoscaled) is not refused: its node may be large
    p = place(spec, planned, {"A100": 0}, True, {None: 0, "A100": 0})
    assert len(p.runnable) == 3 and all(t.gpu_type == "A100" for t, _ in p.runnable)


def test_place_refuses_n_ranks_whose_cpus_no_node_has():
    spec = sweepfile.parse(
        "name: c\naxes: {gpus_per_trial: [1, 2, 4]}\nfixed: {device: cpu}\ncpus_per_trial: 1\n"
    )
    p = place(spec, expand(spec), {}, False, node_cpus={True: None, False: 2.0})
    assert [t.config.gpus_per_trial for t, _ in p.runnable] == [1, 2]
    assert p.unplaceable[0].error == (
        "gpus_per_trial: 4 ranks reserve 4 x cpus_per_trial = 4 CPUs on one node; the largest has 2"
    )


def test_resources_ask_for_n_gpus_in_one_bundle():
    pytest.importorskip("ray")
    from sweep.engine.worker import TrialRequest, resources
    from sweep.plan.config import TrialConfig

    cfg = TrialConfig(gpus_per_trial=4).to_dict()
    req = TrialRequest(key="k", config=cfg, sweep="s", gpu=True, gpu_type="H100", cpus=2)
    pgf = resources(req.to_dict())
    assert pgf.strategy == "STRICT_PACK" and len(pgf.bundles) == 1
    assert pgf.bundles[0]["GPU"] == 4 and pgf.bundles[0]["CPU"] == 8
    one = resources({**req.to_dict(), "config": TrialConfig().to_dict()}).bundles[0]
    assert one["GPU"] == 1 and one["CPU"] == 2


def test_searcher_hands_out_a_2_gpu_trial_only_where_a_node_has_2():
    from engine_helpers import make_searcher

    spec = sweepfile.parse("name: m\naxes: {gpus_per_trial: [2]}\nfixed: {device: cuda}\n")
    small = capacity_of_nodes([_node(8, 1), _node(8, 1)], 1)
    s = make_searcher(spec, has_gpu=True, capacity=lambda: small)
    assert s.suggest("t1") is None  # two 1-GPU nodes: nothing placeable
    big = capacity_of_nodes([_node(8, 2)], 1)
    s = make_searcher(spec, has_gpu=True, capacity=lambda: big)
    assert s.suggest("t1")["config"]["gpus_per_trial"] == 2


@pytest.mark.timeout(200)
def test_a_2_gpu_trial_gets_both_gpus_of_the_2_gpu_node(tmp_path):
    pytest.importorskip("ray")
    db, out = str(tmp_path / "r.db"), str(tmp_path / "out.json")
    script = os.path.join(REPO, "tests", "multigpu_scenarios.py")
    proc = subprocess.run(
        [sys.executable, script, db, out], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out) as fh:
        result = json.load(fh)
    rows = {r["gpus"]: r for r in result["rows"]}
    assert rows[1]["status"] == "ok" and len(rows[1]["visible"].split(",")) == 1
    assert rows[2]["status"] == "ok" and rows[2]["node"] == result["two"]
    assert len(rows[2]["visible"].split(",")) == 2  # both GPUs, in the trial's process
    assert rows[4]["status"] == "no_gpu_type" and "largest node has 2" in rows[4]["error"]
