"""Where trials can go: the driver's placement decision, as pure functions of the cluster's facts.

``place`` splits a plan into the trials this cluster can run (each with whether it asks Ray for
a GPU) and the rows for those it cannot (``no_gpu_type``). ``capacity_of_nodes`` says how many
trials of each kind the live nodes can run at once. The Ray calls that gather the facts are in
cluster/ray_cluster.py; these functions take them as arguments, so they are tested without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweep.plan.grid import PlannedTrial, SweepSpec
from sweep.results.record import NO_GPU_TYPE, Trial

ACCELERATOR_PREFIX = "accelerator_type:"

# A kind of slot: (asks for a GPU, GPU type or None)
Slot = tuple[bool, "str | None"]


@dataclass
class Placement:
    """Where each planned trial can go: ``runnable`` trials (with gpu: bool) and the rows for
    those the cluster cannot run."""

    runnable: list[tuple[PlannedTrial, bool]]
    unplaceable: list[Trial]
    cluster_types: dict[str, int]
    has_gpu: bool


def needs_gpu(t: PlannedTrial, has_gpu: bool) -> bool:
    """Whether a trial asks for a GPU: device cuda, or a GPU type (even with device auto), or
    device auto on a cluster that has GPUs."""
    return t.gpu_type is not None or (has_gpu if t.uses_gpu is None else t.uses_gpu)


def place(
    spec: SweepSpec, planned: list[PlannedTrial], cluster_types: dict[str, int], has_gpu: bool
) -> Placement:
    """Split the plan by what the cluster has (pure: the cluster facts are arguments)."""
    runnable, rows = [], []
    have = ", ".join(sorted(cluster_types)) or "none"
    for t in planned:
        gpu = needs_gpu(t, has_gpu)
        reason = None
        if gpu and not has_gpu:
            reason = "the cluster has no GPU"
        elif gpu and t.gpu_type is not None and t.gpu_type not in cluster_types:
            reason = f"the cluster has no {t.gpu_type} GPU (GPU types: {have})"
        if reason:
            rows.append(t.unrun(spec.name, NO_GPU_TYPE, reason, "NoGpuType"))
        else:
            runnable.append((t, gpu))
    return Placement(runnable, rows, cluster_types, has_gpu)


@dataclass
class Capacity:
    """How many trials the live nodes can run at once, per kind of slot, and the GPU types the
    autoscaler could still start (trials for them are pending demand, not a lost node)."""

    slots: dict[Slot, int] = field(default_factory=dict)
    autoscaled: frozenset[str] = frozenset()

    def of(self, slot: Slot) -> int:
        return self.slots.get(slot, 0)


def capacity_of_nodes(
    nodes: list[dict[str, Any]], cpus_per_trial: int, autoscaled: set[str] | frozenset[str] = ()
) -> Capacity:
    """From live ``ray.nodes()`` entries: one-GPU trials per GPU type and of any type (limited
    by the node's CPUs too), and CPU trials per ``cpus_per_trial`` CPUs."""
    slots: dict[Slot, int] = {}
    for node in nodes:
        res = node.get("Resources", {})
        cpus, gpus = int(res.get("CPU", 0)), int(res.get("GPU", 0))
        by_cpu = cpus // max(cpus_per_trial, 1)
        with_gpu = min(gpus, by_cpu)
        slots[(True, None)] = slots.get((True, None), 0) + with_gpu
        slots[(False, None)] = slots.get((False, None), 0) + by_cpu
        for key in res:
            if key.startswith(ACCELERATOR_PREFIX):
                slot = (True, key[len(ACCELERATOR_PREFIX) :])
                slots[slot] = slots.get(slot, 0) + with_gpu
    return Capacity(slots, frozenset(autoscaled))
