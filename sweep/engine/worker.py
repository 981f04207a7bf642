"""What the driver sends a trial, and the Ray Tune trainable that runs it in the worker.

A ``TrialRequest`` (frozen; to and from the dict Tune carries) holds everything the worker needs:
the trial's identity (key, sweep, GPU type, repeat), its configuration, the placement decision
the driver made (``gpu``: whether it asked Ray for a GPU) and how to run it (trial function by
dotted path, timeout, isolation). The trainable is a thin adapter: request in, one record dict
out. It never raises: an exception, a hang past the timeout, each becomes a record. A process that
dies cannot report: the driver's callback writes its ``crashed`` row from what Ray says.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sweep.plan.config import REQUIRE_GPU_ENV, TrialConfig, shape_fields
from sweep.plan.grid import PlannedTrial
from sweep.results.record import ERROR, OK, TIMEOUT, Trial, failure_row, utc_now

# After a trial thread hung past its timeout, the worker process exits this many seconds after
# returning its timeout record: long enough for the record to reach the driver, and the hung
# thread (which Python cannot stop) stops holding the GPU.
EXIT_AFTER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TrialRequest:
    """One trial as the driver hands it to a worker. Times in seconds.

    gpu: the driver's placement decision (a GPU was asked of Ray for this trial); a trial with
      ``gpu`` must measure on a GPU, never on the CPU.
    trial_fn: "module:function" taking a TrialConfig and returning a Trial, imported in the worker.
    isolate: run the trial in a fresh process forked from the worker's fork server.
    reuse: the worker process runs further trials (a hung trial must then end the process).
    pin_cpus: pin the trial's process to its GPUs' share of the node's cores (isolated trials).
    """

    key: str
    config: dict[str, Any]
    sweep: str
    gpu_type: str | None = None
    repeat: int = 0
    gpu: bool = False
    cpus: int = 1
    timeout_s: float = 600.0
    trial_fn: str = "sweep.trial.run:run_trial"
    isolate: bool = True
    reuse: bool = False
    pin_cpus: bool = False

    @classmethod
    def of(cls, t: PlannedTrial, sweep: str, gpu: bool, **how: Any) -> TrialRequest:
        return cls(
            key=t.key,
            config=t.config.to_dict(),
            sweep=sweep,
            gpu_type=t.gpu_type,
            repeat=t.repeat,
            gpu=gpu,
            **how,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRequest:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def failure(self, status: str, error: str, error_type: str, **fields: Any) -> Trial:
        """This trial's row when it produced no record of its own."""
        return failure_row(
            self.config,
            status,
            error,
            error_type,
            key=self.key,
            sweep=self.sweep,
            gpu_type=self.gpu_type,
            repeat=self.repeat,
            **fields,
        )


def host_env() -> dict[str, Any]:
    import platform
    import socket

    return {"hostname": socket.gethostname(), "python_version": platform.python_version()}


def run_bounded(
    fn: Callable[[TrialConfig], Trial],
    config: TrialConfig,
    timeout_s: float,
    exit_now: bool = False,
) -> Trial:
    """Run ``fn(config)`` in a thread for at most ``timeout_s`` seconds; always returns a Trial.

    A thread, not a subprocess: the trial runs in this (Ray worker) process (``--no-isolate``).
    A hung thread cannot be stopped, so on timeout the process is made to exit shortly after the
    record is returned.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["record"] = fn(config)
        except BaseException as exc:  # the trial function should not raise; if it does, a row
            box["error"] = (type(exc).__name__, traceback.format_exc())

    thread = threading.Thread(target=target, name="sweep-trial", daemon=True)
    thread.start()
    thread.join(timeout_s)
    as_dict = config.to_dict()
    if thread.is_alive():
        if exit_now:
            # A reused worker would run the next trial beside the hung one: end the process now;
            # the driver sees it die past the timeout and stores a timeout row.
            os._exit(3)
        exiter = threading.Timer(EXIT_AFTER_TIMEOUT_S, os._exit, args=(3,))
        exiter.daemon = True
        exiter.start()
        text = f"trial ran past its timeout of {timeout_s:g} s"
        return failure_row(as_dict, TIMEOUT, text, "Timeout", env=host_env())
    if "error" in box:
        name, text = box["error"]
        return failure_row(as_dict, ERROR, text, name, env=host_env())
    record = box.get("record")
    if not isinstance(record, Trial):
        text = f"trial function returned {type(record).__name__}, not a Trial"
        return failure_row(as_dict, ERROR, text, "TypeError", env=host_env())
    return record


# FLOPs of one sequence per workload shape, from this worker's earlier ok trials: the next trial
# of the same shape at another batch scales it instead of counting again.
_FLOPS_PER_SEQUENCE: dict[tuple, int] = {}


def shape_key(config: dict[str, Any]) -> tuple:
    """The workload without its batch size: trials equal here do the same work per sequence."""
    return tuple((k, config.get(k)) for k in shape_fields())


def remember_flops(config: dict[str, Any], record: Trial) -> None:
    """Keep an ok record's count per sequence (exact: the count is taken on a batch of one)."""
    flops, batch = record.metrics.get("flops_per_step"), config.get("batch_size")
    if record.status == OK and flops and batch and int(flops) % int(batch) == 0:
        _FLOPS_PER_SEQUENCE[shape_key(config)] = int(flops) // int(batch)


def _run(request: TrialRequest) -> Trial:
    from sweep.engine.forkserver import resolve, run_in_child

    if request.isolate:
        record = run_in_child(
            request.trial_fn,
            request.config,
            float(request.timeout_s),
            host_env(),
            require_gpu=request.gpu,
            flops_per_sequence=_FLOPS_PER_SEQUENCE.get(shape_key(request.config)),
            cores=_cores(request) if request.pin_cpus else None,
        )
        remember_flops(request.config, record)
        return record
    fn = resolve(request.trial_fn)
    config = TrialConfig.from_dict(request.config)
    with _gpu_required(request.gpu):
        return run_bounded(fn, config, float(request.timeout_s), exit_now=request.reuse)


def _cores(request: TrialRequest) -> list[int] | None:
    """This trial's share of the node's cores (cluster.placement.cpu_share): by the GPUs Ray gave
    it, out of the node's GPUs; None for a CPU trial."""
    import ray

    from cluster.placement import cpu_share

    if not request.gpu:
        return None
    node = ray.get_runtime_context().get_node_id()
    gpus = next(
        (n.get("Resources", {}).get("GPU", 0) for n in ray.nodes() if n.get("NodeID") == node), 0
    )
    ids = [int(i) for i in ray.get_gpu_ids()]
    return cpu_share(sorted(os.sched_getaffinity(0)), ids, int(gpus))


class _gpu_required:
    """Tell the trial (in this process) that it was given a GPU and must measure on it."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def __enter__(self) -> None:
        self.before = os.environ.get(REQUIRE_GPU_ENV)
        if self.on:
            os.environ[REQUIRE_GPU_ENV] = "1"

    def __exit__(self, *exc: Any) -> None:
        if self.before is None:
            os.environ.pop(REQUIRE_GPU_ENV, None)
        else:
            os.environ[REQUIRE_GPU_ENV] = self.before


def trainable(payload: dict[str, Any]) -> dict[str, Any]:
    """The Ray Tune function trainable: a TrialRequest dict in, ``{"record", "status"}`` out."""
    import ray
    from ray import tune

    started = utc_now()
    request = TrialRequest.from_dict(payload)
    try:
        record = _run(request)
    except Exception as exc:
        record = request.failure(ERROR, traceback.format_exc(), type(exc).__name__, env=host_env())
    record = record.replace(
        key=request.key,
        gpu_type=request.gpu_type,
        repeat=request.repeat,
        sweep=request.sweep,
        node=ray.get_runtime_context().get_node_id(),
        ray_trial_id=tune.get_context().get_trial_id(),
        started_at=record.started_at or started,
        finished_at=record.finished_at or utc_now(),
    )
    try:
        text = record.to_json()
    except (TypeError, ValueError) as exc:  # a metric JSON cannot hold: still a row, not a crash
        text = record.replace(
            status=ERROR,
            metrics={},
            env=host_env(),
            error=f"the trial's record is not valid JSON: {exc}",
            error_type=type(exc).__name__,
        ).to_json()
    return {"record": text, "status": Trial.from_json(text).status}


def resources(payload: dict[str, Any]):
    """What a trial asks of Ray (Tune calls this with the trial's config: the request dict)."""
    from cluster.ray_cluster import resource_request

    request = TrialRequest.from_dict(payload)
    gpus = int(request.config.get("gpus_per_trial", 1))
    return resource_request(request.gpu, request.gpu_type, request.cpus, gpus)
