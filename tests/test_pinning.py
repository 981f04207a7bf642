"""CPU pinning per trial (pin_cpus): each GPU trial's share of the node's cores."""

from __future__ import annotations

import os

import pytest

from cluster.placement import cpu_share
from sweep.plan import sweepfile
from sweep.plan.config import TrialConfig
from sweep.results.record import OK, Trial


def test_cores_are_split_by_gpu_index_and_never_shared():
    cores = list(range(16))
    shares = [cpu_share(cores, [k], 8) for k in range(8)]
    assert shares[0] == [0, 1] and shares[7] == [14, 15]
    assert sorted(c for s in shares for c in s) == cores  # every core once
    assert cpu_share(cores, [2, 3], 8) == [4, 5, 6, 7]  # an N-GPU trial: its GPUs' slices
    assert cpu_share([0, 2, 4, 6, 8, 10], [1], 3) == [4, 6]  # the cores it may use, in order
    assert cpu_share(cores, [], 8) is None  # a CPU trial: nothing to split by
    assert cpu_share([0, 1], [0], 4) is None  # fewer cores than GPUs


def test_the_record_says_the_cores_as_taskset_does():
    from sweep.engine.forkserver import _ranges

    assert _ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8" and _ranges([3]) == "3"


def test_pin_cpus_in_a_sweep_file():
    assert sweepfile.parse("name: x\npin_cpus: true\n").pin_cpus is True
    assert sweepfile.parse("name: x\n").pin_cpus is False
    with pytest.raises(ValueError, match="pin_cpus: expected true or false"):
        sweepfile.parse("name: x\npin_cpus: 3\n")


def report_affinity(config: TrialConfig) -> Trial:
    """A trial function (run in the fork server's child) that reports the cores it may use."""
    return Trial(config=config.to_dict(), status=OK, env={"seen": sorted(os.sched_getaffinity(0))})


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_an_isolated_trial_runs_on_its_share_only():
    from sweep.engine.forkserver import run_in_child

    mine = sorted(os.sched_getaffinity(0))
    fn = "tests.test_pinning:report_affinity"
    row = run_in_child(fn, TrialConfig().to_dict(), 120, cores=mine[:1])
    assert row.status == OK, row.error
    assert row.env["seen"] == mine[:1] and row.env["cpu_affinity"] == str(mine[0])
    unpinned = run_in_child(fn, TrialConfig().to_dict(), 120)
    assert unpinned.env["seen"] == mine and "cpu_affinity" not in unpinned.env


def test_the_worker_asks_ray_for_its_gpus_and_the_node_s(monkeypatch):
    ray = pytest.importorskip("ray")
    from sweep.engine.worker import TrialRequest, _cores

    class Context:
        def get_node_id(self):
            return "n2"

    nodes = [{"NodeID": "n1", "Resources": {"GPU": 2}}, {"NodeID": "n2", "Resources": {"GPU": 4}}]
    monkeypatch.setattr(ray, "get_runtime_context", lambda: Context())
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: ["3"])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    gpu = TrialRequest(key="k", config=TrialConfig().to_dict(), sweep="s", gpu=True, pin_cpus=True)
    assert _cores(gpu) == [6, 7]  # GPU 3 of the node's 4: the last quarter of its 8 cores
    assert _cores(TrialRequest(key="k", config={}, sweep="s", gpu=False)) is None


def _report_cores(rank, world, config, store):
    cores = sorted(os.sched_getaffinity(0))
    return {"rank": rank, "metrics": {"cores": cores, "step_time_ms_p50": 1.0}, "finite": True}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_a_pinned_n_gpu_trial_splits_its_cores_between_its_ranks(monkeypatch):
    from sweep.plan.handoff import PINNED_ENV
    from sweep.trial import ddp

    assert ddp.rank_cores([4, 5, 6, 7], 1, 2) == [6, 7] and ddp.rank_cores([4], 1, 2) == [4]
    mine = sorted(os.sched_getaffinity(0))[:2]
    seen = {}

    def remember(procs, conns, timeout_s):
        out = real(procs, conns, timeout_s)
        seen.update({r: v["metrics"]["cores"] for r, v in out[0].items()})
        return out

    real = ddp.collect
    monkeypatch.setattr(ddp, "collect", remember)
    monkeypatch.setenv(PINNED_ENV, "1")
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, mine)  # as the fork server's trial process is
    try:
        ddp.run_ddp_trial(TrialConfig(gpus_per_trial=2, device="cpu"), rank_fn=_report_cores)
    finally:
        os.sched_setaffinity(0, before)
    assert seen == {0: mine[:1], 1: mine[1:2]}
