"""Where a trial's memory goes: the bytes its weights, gradients and optimizer state take, read
from the tensors themselves (their storages, each counted once), and the rest of the peak.
"""

from __future__ import annotations

from typing import Any

GIB = 2**30


def _storages(tensors) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        if t is None or not hasattr(t, "untyped_storage") or t.device.type == "meta":
            continue
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def _quant_tensors(p) -> list:
    """A 4-bit weight's quantization statistics (absmax, and the double quantization's own)."""
    state = getattr(p, "quant_state", None)
    out = []
    while state is not None:
        out += [getattr(state, name, None) for name in ("absmax", "code")]
        state = getattr(state, "state2", None)
    return out


def memory_parts(model, optimizer, peak_allocated_bytes: int | None) -> dict[str, Any]:
    """GiB of the weights (parameters, their 4-bit statistics, buffers), the gradients (every
    trainable parameter's, at its dtype: their size once the backward has made them all), the
    optimizer's state, and the rest of the peak: activations, logits and workspace. The rest is
    the peak less the three, a lower bound of what they took at the peak (the gradients need not
    all exist at that moment). An optimizer state in paged (unified) memory lies outside torch's
    allocator: it is reported, and not subtracted from the peak."""
    params = list(model.parameters())
    weights = _storages(
        [*params, *(q for p in params for q in _quant_tensors(p)), *model.buffers()]
    )
    grads = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    state_tensors = [
        v
        for state in (optimizer.state.values() if optimizer is not None else ())
        for v in state.values()
        if hasattr(v, "untyped_storage")
    ]
    paged = [t for t in state_tensors if getattr(t, "is_paged", False)]
    optim = _storages([t for t in state_tensors if not getattr(t, "is_paged", False)])
    out: dict[str, Any] = {
        "weights_gib": weights / GIB,
        "gradients_gib": grads / GIB,
        "optimizer_state_gib": optim / GIB,
        "optimizer_state_paged_gib": _storages(paged) / GIB if paged else None,
    }
    if peak_allocated_bytes:
        out["activations_other_gib"] = max(0, peak_allocated_bytes - weights - grads - optim) / GIB
    return out
