"""Build the engine's searcher as the driver does, without Ray or a cluster (tests drive it by
hand: Tune calls these same methods)."""

from __future__ import annotations

from cluster.placement import place
from sweep.engine.searcher import SweepSearcher
from sweep.engine.worker import TrialRequest
from sweep.plan.grid import expand


def make_searcher(
    spec, stored=None, rerun=False, write=None, progress=None, has_gpu=False, types=None, **kw
):
    planned = expand(spec)
    placement = place(spec, planned, types or {}, has_gpu=has_gpu)
    return SweepSearcher(
        spec,
        placement.runnable,
        lambda t, gpu: TrialRequest.of(t, spec.name, gpu, cpus=spec.cpus_per_trial),
        stored or {},
        rerun,
        write if write is not None else (lambda record: None),
        progress,
        **kw,
    )
