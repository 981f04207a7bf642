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

# A kind of slot: (asks for a GPU, GPU type or None), and for an N-GPU trial (N > 1) its N:
# (asks for a GPU, GPU type or None, N); N GPUs (or N CPU ranks) of one node.
Slot = tuple


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
    spec: SweepSpec,
    planned: list[PlannedTrial],
    cluster_types: dict[str, int],
    has_gpu: bool,
    node_gpus: dict[str | None, int] | None = None,
    node_cpus: dict[bool, float | None] | None = None,
) -> Placement:
    """Split the plan by what the cluster has (pure: the cluster facts are arguments).
    ``node_gpus``: the most GPUs one live node has, per GPU type and (key None) of any type
    (max_gpus_per_node); an N-GPU trial no node can hold is a row. ``node_cpus``: the most CPUs
    a trial can reserve on one node, with a GPU (True) or not (False); an N-rank trial needs N x
    cpus_per_trial of them. None: not checked."""
    runnable, rows = [], []
    have = ", ".join(sorted(cluster_types)) or "none"
    for t in planned:
        gpu = needs_gpu(t, has_gpu)
        reason = None
        if gpu and not has_gpu:
            reason = "the cluster has no GPU"
        elif gpu and t.gpu_type is not None and t.gpu_type not in cluster_types:
            reason = f"the cluster has no {t.gpu_type} GPU (GPU types: {have})"
        elif gpu and node_gpus is not None:
            reason = _too_many_gpus(t, node_gpus)
        if reason is None and node_cpus is not None:
            reason = _too_many_cpus(t, spec.cpus_per_trial, node_cpus.get(gpu))
        if reason:
            rows.append(t.unrun(spec.name, NO_GPU_TYPE, reason, "NoGpuType"))
        else:
            runnable.append((t, gpu))
    return Placement(runnable, rows, cluster_types, has_gpu)


def _too_many_gpus(t: PlannedTrial, node_gpus: dict[str | None, int]) -> str | None:
    """Why no live node can hold this trial's GPUs (one node: DDP within a node), or None. A
    type with no live node yet (the autoscaler may start one) is not refused."""
    n = t.config.gpus_per_trial
    most = node_gpus.get(t.gpu_type)
    if n <= 1 or most is None or (most == 0 and t.gpu_type is not None):
        return None
    if n > most:
        what = f"{t.gpu_type} GPUs" if t.gpu_type else "GPUs"
        return f"gpus_per_trial: {n} GPUs on one node asked for; the largest node has {most} {what}"
    return None


def _too_many_cpus(t: PlannedTrial, cpus_per_trial: int, most: float | None) -> str | None:
    """Why no node can hold an N-rank trial's CPUs (cpus_per_trial per rank), or None."""
    n = t.config.gpus_per_trial
    if n <= 1 or most is None or n * cpus_per_trial <= most:
        return None
    return (
        f"gpus_per_trial: {n} ranks reserve {n} x cpus_per_trial = {n * cpus_per_trial} CPUs "
        f"on one node; the largest has {most:g}"
    )


def max_gpus_per_node(nodes: list[dict[str, Any]]) -> dict[str | None, int]:
    """From live ``ray.nodes()`` entries: the most GPUs on one node, per GPU type and (None) of
    any type."""
    out: dict[str | None, int] = {None: 0}
    for node in nodes:
        res = node.get("Resources", {})
        gpus = int(res.get("GPU", 0))
        out[None] = max(out[None], gpus)
        for key in res:
            if key.startswith(ACCELERATOR_PREFIX):
                t = key[len(ACCELERATOR_PREFIX) :]
                out[t] = max(out.get(t, 0), gpus)
    return out


@dataclass
class Capacity:
    """How many trials the live nodes can run at once, per kind of slot, and the GPU types the
    autoscaler could still start (trials for them are pending demand, not a lost node)."""

    slots: dict[Slot, int] = field(default_factory=dict)
    autoscaled: frozenset[str] = frozenset()
    # per live node: (CPUs, GPUs, its GPU types), for the slots of N-GPU trials
    nodes: tuple[tuple[int, int, frozenset[str]], ...] = ()
    cpus_per_trial: int = 1

    def of(self, slot: Slot) -> int:
        if len(slot) < 3 or slot[2] <= 1:
            return self.slots.get(slot[:2], 0)
        gpu, gpu_type, n = slot
        total = 0
        for cpus, gpus, types in self.nodes:
            by_cpu = cpus // (max(self.cpus_per_trial, 1) * n)  # a rank per GPU, each its CPUs
            if not gpu:
                total += by_cpu
            elif gpu_type is None or gpu_type in types:
                total += min(gpus // n, by_cpu)  # all N GPUs on this node, never split
        return total


def capacity_of_nodes(
    nodes: list[dict[str, Any]], cpus_per_trial: int, autoscaled: set[str] | frozenset[str] = ()
) -> Capacity:
    """From live ``ray.nodes()`` entries: one-GPU trials per GPU type and of any type (limited
    by the node's CPUs too), and CPU trials per ``cpus_per_trial`` CPUs."""
    slots: dict[Slot, int] = {}
    facts = []
    for node in nodes:
        res = node.get("Resources", {})
        cpus, gpus = int(res.get("CPU", 0)), int(res.get("GPU", 0))
        prefixed = (k for k in res if k.startswith(ACCELERATOR_PREFIX))
        facts.append((cpus, gpus, frozenset(k[len(ACCELERATOR_PREFIX) :] for k in prefixed)))
        by_cpu = cpus // max(cpus_per_trial, 1)
        with_gpu = min(gpus, by_cpu)
        slots[(True, None)] = slots.get((True, None), 0) + with_gpu
        slots[(False, None)] = slots.get((False, None), 0) + by_cpu
        for key in res:
            if key.startswith(ACCELERATOR_PREFIX):
                slot = (True, key[len(ACCELERATOR_PREFIX) :])
                slots[slot] = slots.get(slot, 0) + with_gpu
    return Capacity(slots, frozenset(autoscaled), tuple(facts), cpus_per_trial)


def cpu_share(cores: list[int], gpu_ids: list[int], node_gpus: int) -> list[int] | None:
    """The cores a GPU trial is pinned to (``pin_cpus``): the node's cores split evenly by GPU
    index, GPU k taking the k-th slice (an N-GPU trial the union of its GPUs' slices), so that
    co-located trials never share a core. None where there is nothing to split by (a CPU trial,
    no GPU count) or fewer cores than GPUs."""
    cores = sorted(cores)
    if not gpu_ids or node_gpus < 1 or len(cores) < node_gpus:
        return None
    per = len(cores) // node_gpus
    share = sorted(
        {c for k in gpu_ids for c in cores[k * per : (k + 1) * per] if 0 <= k < node_gpus}
    )
    return share or None
