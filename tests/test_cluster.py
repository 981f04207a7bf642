"""Cluster: Ray's validator accepts both cluster configs; the Dockerfile matches the driver; GPU
types and resource requests; a fake multi-node cluster with V100 and A100 nodes.

The fake cluster (ray.cluster_utils.Cluster) runs in a subprocess: it needs its own Ray head, and
the test session already has a Ray instance in this process.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from cluster import ray_cluster

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ["cluster.yaml", "cluster-local.yaml"]


def _load(name):
    with open(os.path.join(REPO, name), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.mark.parametrize("name", CONFIGS)
def test_ray_validator_accepts_the_cluster_config(name):
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    # what `ray up` does before anything else (commands/_bootstrap_config)
    validate_config(prepare_config(_load(name)))


@pytest.mark.parametrize("name", CONFIGS)
def test_the_validator_would_catch_a_typo(name):
    """The acceptance above means something: the same validator rejects a misspelled key."""
    jsonschema = pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _load(name)
    config["idle_timeout_minuts"] = 5
    with pytest.raises(jsonschema.ValidationError, match="idle_timeout_minuts"):
        validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_top_level_key_is_commented(name):
    lines = open(os.path.join(REPO, name), encoding="utf-8").read().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line):
            above = lines[i - 1].strip() if i else ""
            assert above.startswith("#"), f"{name}:{i + 1}: {line!r} has no comment above it"


def test_aws_worker_types_declare_gpu_and_accelerator_type():
    config = _load("cluster.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert "GPU" not in head["resources"]  # a CPU-only head
    expected = {"p3.2xlarge": ("V100", 1), "p4d.24xlarge": ("A100", 8), "p5.48xlarge": ("H100", 8)}
    seen = {}
    for t in types.values():
        instance = t["node_config"]["InstanceType"]
        if instance in expected:
            gpu, n = expected[instance]
            assert t["resources"]["GPU"] == n
            assert t["resources"][f"accelerator_type:{gpu}"] == n
            assert t["min_workers"] == 0  # autoscaling from zero
            seen[gpu] = n
    assert seen == {"V100": 1, "A100": 8, "H100": 8}
    assert config["docker"]["image"]
    assert "~/transformers-sweep" in config["file_mounts"]


def test_autoscaler_types_are_read_from_the_bootstrap_config(tmp_path):
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(open(os.path.join(REPO, "cluster.yaml"), encoding="utf-8").read())
    assert ray_cluster.autoscaler_gpu_types(str(path)) == {"V100": 1, "A100": 8, "H100": 8}
    assert ray_cluster.autoscaler_gpu_types(str(tmp_path / "absent.yaml")) == {}


def test_dockerfile_uses_ngc_pytorch_and_the_drivers_ray():
    import ray

    text = open(os.path.join(REPO, "Dockerfile"), encoding="utf-8").read()
    tag = re.search(r"^ARG NGC_TAG=([\d.]+)$", text, re.M)
    assert tag, "the NGC release is pinned"
    assert re.search(r"^FROM nvcr\.io/nvidia/pytorch:\$\{NGC_TAG\}-py3$", text, re.M)
    assert f"ray[tune]=={ray.__version__}" in text or f"RAY_VERSION={ray.__version__}" in text
    # apex comes with the NGC image; the PyPI "apex" is another project and is never installed
    assert not re.search(r"pip install[^\n]*\bapex\b", text)
    assert "from apex.optimizers import FusedAdam" in text  # the build checks it is there


def test_gpu_types_of_nodes_counts_gpus_per_type():
    nodes = [
        {"Alive": True, "Resources": {"CPU": 8, "GPU": 4, "accelerator_type:A100": 1}},
        {"Alive": True, "Resources": {"CPU": 8, "GPU": 1, "accelerator_type:V100": 1}},
        {"Alive": True, "Resources": {"CPU": 8, "GPU": 2, "accelerator_type:A100": 1}},
        {"Alive": True, "Resources": {"CPU": 16}},  # the head
    ]
    assert ray_cluster.gpu_types_of_nodes(nodes) == {"A100": 6, "V100": 1}


def test_most_cpus_a_trial_can_reserve(tmp_path):
    """A trial reserving more CPUs than any node offers waits for ever in Ray: the engine refuses
    the sweep instead, from this figure."""
    nodes = [
        {"Alive": True, "Resources": {"CPU": 16}},  # a CPU-only head
        {"Alive": True, "Resources": {"CPU": 8, "GPU": 1, "accelerator_type:V100": 1}},
    ]
    assert ray_cluster.most_cpus_of_a_node(nodes, [], gpu=False) == 16
    assert ray_cluster.most_cpus_of_a_node(nodes, [], gpu=True) == 8  # the head has no GPU
    assert ray_cluster.most_cpus_of_a_node(nodes[:1], [], gpu=True) == 0
    # node types the autoscaler can add count as well...
    p5 = {"CPU": 192, "GPU": 8, "accelerator_type:H100": 8}
    assert ray_cluster.most_cpus_of_a_node(nodes, [p5], gpu=True) == 192
    # ...one that declares CPUs and no GPU is a CPU node...
    assert ray_cluster.most_cpus_of_a_node(nodes, [{"CPU": 64}], gpu=True) == 8
    assert ray_cluster.most_cpus_of_a_node(nodes, [{"CPU": 64}], gpu=False) == 64
    # ...and one that does not declare its CPUs makes the figure unknown: no refusal
    assert ray_cluster.most_cpus_of_a_node(nodes, [{"GPU": 8}], gpu=True) is None
    # the shipped cluster.yaml declares every worker type, as the bootstrap config on the head
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(open(os.path.join(REPO, "cluster.yaml"), encoding="utf-8").read())
    types = ray_cluster.autoscaler_node_resources(str(path))
    assert ray_cluster.most_cpus_of_a_node(nodes[:1], types, gpu=True) == 192


def test_resource_request_is_one_gpu_of_the_type():
    pgf = ray_cluster.resource_request(True, "H100", cpus=2)
    assert pgf.bundles == [{"CPU": 2.0, "GPU": 1.0, "accelerator_type:H100": 0.001}]
    assert ray_cluster.resource_request(True, None).bundles == [{"CPU": 1.0, "GPU": 1.0}]
    assert ray_cluster.resource_request(False, None, cpus=2).bundles == [{"CPU": 2.0}]


# -- a fake multi-node cluster -------------------------------------------------------------------

SWEEP = """
name: fleet
axes:
  batch_size: [8, 16]
fixed: {device: cuda}
gpu_types: [V100, A100, H100]
timeout_s: 60
"""


def scenario(db: str, out: str) -> None:
    """A CPU head and one V100 and one A100 node (logical GPUs); run a sweep that also asks for
    H100s; write the nodes' resources to ``out``. Runs in its own process."""
    import ray
    from ray.cluster_utils import Cluster

    from sweep.engine.run import EngineOptions, run_sweep
    from sweep.plan import sweepfile

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1, num_gpus=1, resources={"accelerator_type:V100": 1})
    cluster.add_node(num_cpus=1, num_gpus=1, resources={"accelerator_type:A100": 1})
    cluster.wait_for_nodes()
    try:
        run_sweep(
            sweepfile.parse(SWEEP),
            EngineOptions(
                db=db,
                address=cluster.address,
                trial_fn="tests.fake_trials:noop",
                retries=0,
                preimport=False,
            ),
        )
        nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
        with open(out, "w") as fh:
            json.dump(nodes, fh)
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.timeout(240)
def test_fake_cluster_each_trial_lands_on_a_node_of_its_type(tmp_path):
    from sweep.results.store import Store

    db, out = str(tmp_path / "r.db"), str(tmp_path / "nodes.json")
    proc = subprocess.run(
        [sys.executable, __file__, db, out], cwd=REPO, capture_output=True, text=True, timeout=220
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    nodes = json.load(open(out))
    trials = Store(db, readonly=True).trials()
    assert len(trials) == 6
    by_type = {}
    for t in trials:
        by_type.setdefault(t.gpu_type, []).append(t)
    for gpu in ("V100", "A100"):
        assert [t.status for t in by_type[gpu]] == ["ok", "ok"]
        for t in by_type[gpu]:
            # the node the record names is a node of the type the trial asked for
            assert f"accelerator_type:{gpu}" in nodes[t.node], (gpu, nodes[t.node])
            assert t.env["cuda_visible_devices"] == "0"  # exactly one (logical) GPU
    assert {t.node for t in by_type["V100"]}.isdisjoint({t.node for t in by_type["A100"]})
    # the type the cluster lacks is a row, never scheduled
    assert [t.status for t in by_type["H100"]] == ["no_gpu_type", "no_gpu_type"]
    assert all("no H100 GPU" in t.error and t.ray_trial_id is None for t in by_type["H100"])


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    scenario(sys.argv[1], sys.argv[2])
