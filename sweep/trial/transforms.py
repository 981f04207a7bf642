"""Workload transforms: what changes the model between building it and building its optimizer.

Each transform is one entry of ``TRANSFORMS``, keyed by the TrialConfig field that asks for it,
with its own ``check`` (why this configuration cannot have it here, or None) and ``apply`` (the
model in, the model out). They run in the table's order; the step, the harnesses and the
optimizer never branch on them. A new transform is its field in ``sweep/plan/config.py`` plus one
entry here (docs/ARCHITECTURE.md, "Where to add...").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sweep.plan.config import TrialConfig
from sweep.trial import allocator, capacity
from sweep.trial import finetune as ft

log = logging.getLogger(__name__)

Check = Callable[[TrialConfig, str], "str | None"]


@dataclass(frozen=True)
class Transform:
    """name: the TrialConfig field that asks for it; wanted: whether this configuration does;
    check(config, device_type): the reason it cannot run here (None: it can); apply(model,
    config): the transformed model (in place or a wrapper); prepare(config, device_type, env,
    facts): what must happen before the model is built (None: nothing), writing its figures into
    ``facts`` (the record's metrics, whatever the status) and ``env``; after_warmup(config,
    facts): what must happen between the warm-up steps and the measured ones (None: nothing);
    restore(config): what undoes a preparation's change to the process once the trial ends,
    whatever its status (None: nothing to undo)."""

    name: str
    wanted: Callable[[TrialConfig], bool]
    check: Check
    apply: Callable[[object, TrialConfig], object]
    prepare: Callable[[TrialConfig, str, dict, dict], None] | None = None
    after_warmup: Callable[[TrialConfig, dict], None] | None = None
    restore: Callable[[TrialConfig], None] | None = None


def no_reason(config: TrialConfig, device_type: str) -> str | None:
    """The check of what runs everywhere."""
    return None


def _checkpointing(model, config: TrialConfig):
    """Recompute each layer's activations in the backward (transformers' own switch), with
    torch's non-reentrant checkpoint: it needs no input that requires grad, so it works under a
    frozen base (LoRA) as well, and it is the variant torch recommends."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def _unchanged(model, config: TrialConfig):
    return model


# In this order: set up the allocator and cap it (before the model exists), quantize the base,
# patch kernels into it, checkpoint its layers, wrap it.
TRANSFORMS: tuple[Transform, ...] = (
    Transform(
        "allocator",
        lambda c: c.allocator == "expandable",
        allocator.check,
        _unchanged,
        prepare=allocator.expand,
        restore=allocator.restore,
    ),
    Transform(
        "capacity_gb",
        lambda c: c.capacity_gb is not None,
        capacity.check,
        _unchanged,
        prepare=capacity.cap_allocator,
        after_warmup=capacity.recap,
        restore=capacity.uncap,
    ),
    Transform("finetune", lambda c: c.finetune == "qlora", ft.qlora_check, ft.quantize_4bit),
    Transform("liger", lambda c: c.liger, ft.liger_check, ft.apply_liger),
    Transform(
        "gradient_checkpointing",
        lambda c: c.gradient_checkpointing,
        no_reason,  # in inference mode transformers checkpoints nothing (model.eval())
        _checkpointing,
    ),
    Transform("finetune", lambda c: c.adapters, ft.lora_check, ft.apply_lora),
)


def wanted(config: TrialConfig) -> list[Transform]:
    """The transforms this configuration asks for, in the order they apply."""
    return [t for t in TRANSFORMS if t.wanted(config)]


def refusal(config: TrialConfig, device_type: str) -> str | None:
    """The first reason a wanted transform cannot run here, or None."""
    for t in wanted(config):
        reason = t.check(config, device_type)
        if reason:
            return reason
    return None


def prepare_all(config: TrialConfig, device_type: str, env: dict, facts: dict) -> None:
    """Every wanted transform's preparation, in order, before the model is built."""
    for t in wanted(config):
        if t.prepare is not None:
            t.prepare(config, device_type, env, facts)


def apply_all(model, config: TrialConfig):
    """The model after every wanted transform, in order."""
    for t in wanted(config):
        model = t.apply(model, config)
    return model


def after_warmup_all(config: TrialConfig, facts: dict) -> Callable[[], None] | None:
    """What the harness calls once the warm-up steps are done and before the measured ones: every
    wanted transform's after_warmup, in order (None when no transform has one)."""
    hooks = [t.after_warmup for t in wanted(config) if t.after_warmup is not None]
    if not hooks:
        return None

    def run_hooks() -> None:
        for hook in hooks:
            hook(config, facts)

    return run_hooks


def restore_all(config: TrialConfig) -> None:
    """Every wanted transform's restore, in reverse order, once the trial has ended. Never raises
    (the record must come back): a restore that fails is logged."""
    for t in reversed(wanted(config)):
        if t.restore is None:
            continue
        try:
            t.restore(config)
        except Exception as exc:
            log.warning("restoring after %s failed: %s", t.name, exc)
