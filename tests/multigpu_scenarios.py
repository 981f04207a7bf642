"""N-GPU trials on a fake Ray cluster (logical GPUs), run in its own process by
tests/test_multigpu.py:

    python tests/multigpu_scenarios.py DB OUT

A head node with 1 A100 and a node with 2: the 1-GPU trial runs anywhere, the
2-GPU trial must get both GPUs of the 2-GPU node, the 4-GPU trial fits no node.
"""

from __future__ import annotations

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SWEEP = """
name: multigpu
gpu_types: [A100]
axes: {gpus_per_trial: [1, 2, 4]}
fixed: {device: cuda, batch_size: 2}
timeout_s: 60
"""


def main(db: str, out: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from sweep.engine.run import EngineOptions, run_sweep
    from sweep.plan import sweepfile
    from sweep.results.store import Store

    a100 = {"accelerator_type:A100": 1}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "num_gpus": 1,
            "resources": a100,
            "include_dashboard": False,
        },
    )
    one = cluster.head_node
    two = cluster.add_node(num_cpus=2, num_gpus=2, resources=a100)
    cluster.wait_for_nodes()
    try:
        run_sweep(
            sweepfile.parse(SWEEP),
            EngineOptions(
                db=db,
                address=cluster.address,
                trial_fn="tests.fake_trials:noop",
                retries=0,
                node_wait_s=5.0,
                isolate=False,  # no fork server: the fake trial needs no torch
                progress=False,
            ),
        )
        rows = [
            {
                "gpus": t.config["gpus_per_trial"],
                "status": t.status,
                "error": t.error,
                "node": t.node,
                "visible": t.env.get("cuda_visible_devices"),
            }
            for t in Store(db, readonly=True).trials()
        ]
        with open(out, "w") as fh:
            json.dump({"rows": rows, "one": one.node_id, "two": two.node_id}, fh)
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    main(sys.argv[1], sys.argv[2])
