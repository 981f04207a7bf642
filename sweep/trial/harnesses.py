"""Which harness runs a configuration, and the one place a configuration is refused.

``HARNESSES`` is a table: the first entry that ``applies`` to a configuration runs it, and its
``check`` says why it cannot (an ``unsupported`` row naming the field), or None. ``refusal``
walks the workload's own checks (precision, attention, optimizer on this machine), the wanted
transforms' checks (sweep/trial/transforms.py) and the harness's: the trial raises Unsupported
from its answer and from nowhere else.

An entry with ``ranks`` (DDP across N GPUs) is launched as N rank processes
(sweep/trial/ddp.py); each rank measures with the native loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sweep.plan.config import TrialConfig
from sweep.trial import transforms, workload
from sweep.trial.graph import check_graph_support, run_graphed
from sweep.trial.harness import run_lightning, run_native
from sweep.trial.measure import RawTiming
from sweep.trial.outcome import Unsupported

Check = Callable[[TrialConfig, str], "str | None"]


@dataclass(frozen=True)
class Harness:
    """name: what the record's reader calls it; applies: whether it runs this configuration;
    check(config, device_type): why not here, or None; run(workload, gpu_uuid): the measurement
    in this process (None for ``ranks``); ranks: run as N rank processes (one per GPU)."""

    name: str
    applies: Callable[[TrialConfig], bool]
    check: Check
    run: Callable[..., RawTiming] | None
    ranks: bool = False


def _ddp_check(config: TrialConfig, device_type: str) -> str | None:
    if config.mode != "train":
        return (
            "gpus_per_trial: N > 1 measures training (DDP); inference has no "
            "gradients to all-reduce (use gpus_per_trial 1)"
        )
    if config.harness != "native":
        return "gpus_per_trial: N > 1 runs with the native harness only"
    if config.cuda_graph:
        return "gpus_per_trial: N > 1 does not capture CUDA graphs (cuda_graph)"
    return None


def _lightning_check(config: TrialConfig, device_type: str) -> str | None:
    if config.mode == "inference":
        return "harness: inference mode is measured with the native harness only"
    return None


HARNESSES: tuple[Harness, ...] = (
    Harness("ddp", lambda c: c.gpus_per_trial > 1, _ddp_check, None, ranks=True),
    Harness("cuda_graph", lambda c: c.cuda_graph, check_graph_support, run_graphed),
    Harness("lightning", lambda c: c.harness == "lightning", _lightning_check, run_lightning),
    Harness("native", lambda c: True, transforms.no_reason, run_native),
)


def harness_for(config: TrialConfig) -> Harness:
    """The first entry of HARNESSES that applies (native always does)."""
    return next(h for h in HARNESSES if h.applies(config))


def refusal(config: TrialConfig, device_type: str) -> str | None:
    """Why ``config`` cannot run on this machine (naming the field), or None: the workload's
    checks, then the transforms', then the harness's."""
    return (
        workload.refusal(config, device_type)
        or transforms.refusal(config, device_type)
        or harness_for(config).check(config, device_type)
    )


def check(config: TrialConfig, device_type: str) -> None:
    """Raise Unsupported with ``refusal``'s reason, if any."""
    reason = refusal(config, device_type)
    if reason:
        raise Unsupported(reason)
