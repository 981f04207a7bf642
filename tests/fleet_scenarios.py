"""Fleet scenarios on a fake Ray cluster (a CPU head plus nodes with logical GPUs and
``accelerator_type:*`` resources), each run in its own process by tests/test_fleet.py:

    python tests/fleet_scenarios.py lost-node DB OUT
    python tests/fleet_scenarios.py auto-device DB OUT
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOST_NODE = """
name: fleet
gpu_types: [V100, A100]
axes: {seed: [0, 1, 2, 3]}
fixed: {device: cuda, batch_size: 15}
timeout_s: 60
"""

AUTO_DEVICE = """
name: auto
gpu_types: [V100]
fixed: {device: auto, model: bert-tiny, seq_len: 16, batch_size: 2, steps: 2, warmup_steps: 1}
timeout_s: 120
"""


def _cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False},
    )
    v100 = cluster.add_node(num_cpus=1, num_gpus=1, resources={"accelerator_type:V100": 1})
    cluster.add_node(num_cpus=2, num_gpus=2, resources={"accelerator_type:A100": 1})
    cluster.wait_for_nodes()
    return cluster, v100


def lost_node(db: str, out: str) -> None:
    """The V100 node is removed while its first trial runs: A100 trials go on two at a time; the
    V100 trials become rows after node_wait_s; the sweep ends. A resume with a V100 node back
    runs what is left."""
    import ray

    from sweep.engine.run import EngineOptions, run_sweep
    from sweep.plan import sweepfile
    from sweep.results.store import Store

    cluster, v100 = _cluster()
    spec = sweepfile.parse(LOST_NODE)
    options = EngineOptions(
        db=db,
        address=cluster.address,
        trial_fn="tests.fake_trials:sleep_by_batch",  # 1.5 s a trial
        retries=1,
        node_wait_s=5.0,
        progress=os.environ.get("FLEET_PROGRESS") == "1",
    )
    result: dict = {}

    def remove_v100_once_it_runs() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(t.gpu_type == "A100" for t in _rows(db)):  # the sweep is under way
                break
            time.sleep(0.2)
        time.sleep(0.3)
        cluster.remove_node(v100)
        result["removed_at"] = time.time()

    killer = threading.Thread(target=remove_v100_once_it_runs, daemon=True)
    killer.start()
    t0 = time.monotonic()
    try:
        outcome = run_sweep(spec, options)
        result["first_wall_s"] = time.monotonic() - t0
        result["first"] = [_row(t) for t in Store(db, readonly=True).trials()]
        result["first_not_run"] = outcome.not_run
        ray.shutdown()
        cluster.add_node(num_cpus=1, num_gpus=1, resources={"accelerator_type:V100": 1})
        cluster.wait_for_nodes()
        run_sweep(spec, options)
        result["resumed"] = [_row(t) for t in Store(db, readonly=True).trials()]
    finally:
        with open(out, "w") as fh:
            json.dump(result, fh)
        ray.shutdown()
        cluster.shutdown()


def auto_device(db: str, out: str) -> None:
    """device auto with gpu_types on GPU-typed nodes where CUDA is not visible (logical GPUs):
    the real trial must not store a CPU measurement under the GPU type."""
    import ray

    from sweep.engine.run import EngineOptions, run_sweep
    from sweep.plan import sweepfile
    from sweep.results.store import Store

    cluster, _ = _cluster()
    try:
        run_sweep(
            sweepfile.parse(AUTO_DEVICE),
            EngineOptions(db=db, address=cluster.address, retries=0, progress=False),
        )
        rows = [_row(t) for t in Store(db, readonly=True).trials()]
        with open(out, "w") as fh:
            json.dump({"rows": rows}, fh)
    finally:
        ray.shutdown()
        cluster.shutdown()


def _rows(db: str):
    from sweep.results.store import Store, StoreError

    if not os.path.exists(db):
        return []
    try:
        with Store(db, readonly=True) as store:
            return store.trials()
    except (StoreError, ValueError):
        return []


def _row(t) -> dict:
    return {
        "key": t.key,
        "gpu_type": t.gpu_type,
        "status": t.status,
        "error": t.error,
        "started_at": t.started_at,
        "finished_at": t.finished_at,
        "metrics": t.metrics,
    }


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    {"lost-node": lost_node, "auto-device": auto_device}[sys.argv[1]](sys.argv[2], sys.argv[3])
