"""capacity_gb's second cap (sweep/trial/capacity.py, ``recap``), on the CPU: the hook that runs it
between the warm-up and the measured steps in both harnesses, and its arithmetic against invented
readings of torch.cuda (no GPU). The first cap and the arithmetic it shares are
tests/test_capacity.py's; the cap on a real card is tests/test_gpu.py's."""

from __future__ import annotations

import pytest
import torch

from sweep.plan.config import TrialConfig
from sweep.results.memory_model import GIB, allocator_cap
from sweep.trial import capacity, transforms
from sweep.trial.run import run_trial

TINY = dict(model="bert-tiny", batch_size=4, seq_len=32, warmup_steps=2, steps=3, device="cpu")
H200_SHOWN = 150_012_215_296  # bytes an H200 shows (139.7 GiB)


def test_only_a_capped_configuration_has_a_hook_between_warm_up_and_measured_steps():
    assert transforms.after_warmup_all(TrialConfig(**TINY), {}) is None
    capped = TrialConfig(**{**TINY, "device": "cuda", "capacity_gb": 24})
    assert transforms.after_warmup_all(capped, {}) is not None
    hooks = [t.after_warmup for t in transforms.wanted(capped) if t.after_warmup]
    assert hooks == [capacity.recap]


@pytest.mark.parametrize("harness_name", ["native", "lightning"])
def test_the_hook_runs_once_after_every_warm_up_step_and_before_the_window(
    monkeypatch, harness_name
):
    import sweep.trial.window as window

    events: list[str] = []
    real_begin = window.MeasurementWindow.begin

    def begin(self):
        events.append("begin")
        return real_begin(self)

    def hook(config, facts):
        events.append("hook")
        facts["outside_allocator_gib"] = 1.25  # a fact the hook writes reaches the record

    monkeypatch.setattr(window.MeasurementWindow, "begin", begin)
    probe = transforms.Transform(
        "probe", lambda c: True, transforms.no_reason, lambda m, c: m, after_warmup=hook
    )
    monkeypatch.setattr(transforms, "TRANSFORMS", (*transforms.TRANSFORMS, probe))
    steps: list[int] = []  # per optimizer step: how many events preceded it
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(lambda *a: steps.append(len(events)))
    try:
        rec = run_trial(TrialConfig(**{**TINY, "harness": harness_name}))
    finally:
        handle.remove()
    assert rec.status == "ok", rec.error
    assert events == ["hook", "begin"]
    # the two warm-up steps before the hook, the three measured ones after the window opened
    assert steps == [0, 0, 2, 2, 2]
    assert rec.metrics["outside_allocator_gib"] == 1.25


class FakeCuda:
    """What recap reads of torch.cuda, invented: the card's shown total and free bytes, what the
    allocator keeps (reserved) after the cache is emptied; the fraction it is given is kept."""

    def __init__(self, total: int, used: int, reserved: int):
        self.total, self.used, self.reserved = total, used, reserved
        self.fraction: float | None = None
        self.emptied = False

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: setattr(self, "emptied", True))
        monkeypatch.setattr(
            torch.cuda, "mem_get_info", lambda *a: (self.total - self.used, self.total)
        )
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a: self.reserved)
        monkeypatch.setattr(
            torch.cuda,
            "set_per_process_memory_fraction",
            lambda f, *a: setattr(self, "fraction", f),
        )


def test_recap_takes_what_the_warm_up_left_outside_the_allocator(monkeypatch):
    # after the warm-up: 9 GiB in use on the card, 7.75 of it the allocator's: 1.25 outside
    cuda = FakeCuda(H200_SHOWN, 9 * GIB, int(7.75 * GIB))
    cuda.install(monkeypatch)
    facts = {"capacity_cap_gib": 99.0}
    capacity.recap(TrialConfig(**{**TINY, "device": "cuda", "capacity_gb": 24}), facts)
    expected = allocator_cap(24, H200_SHOWN, 1.25 * GIB)
    assert cuda.emptied
    assert facts["outside_allocator_gib"] == pytest.approx(1.25)
    assert facts["capacity_cap_gib"] == pytest.approx(expected.cap_bytes / GIB)
    assert cuda.fraction == pytest.approx(expected.fraction)
    # 0.75 GiB less than the first cap's, taken at CUDA's start with 0.5 GiB in use
    first = allocator_cap(24, H200_SHOWN, 0.5 * GIB)
    assert (first.cap_bytes - expected.cap_bytes) / GIB == pytest.approx(0.75)


def test_recap_is_out_of_memory_where_the_allocator_already_keeps_more_than_the_card_leaves(
    monkeypatch,
):
    cuda = FakeCuda(H200_SHOWN, 17 * GIB, int(15.8 * GIB))  # a 16 GB card leaves ~13.7 GiB
    cuda.install(monkeypatch)
    facts: dict = {}
    with pytest.raises(torch.OutOfMemoryError, match="after the warm-up.*16 GB card"):
        capacity.recap(TrialConfig(**{**TINY, "device": "cuda", "capacity_gb": 16}), facts)
    assert cuda.fraction is None  # no cap set: the trial ends as out of memory
    assert facts["outside_allocator_gib"] == pytest.approx(1.2)


def _first_cap_cuda(monkeypatch, used_gib: float) -> FakeCuda:
    """FakeCuda at CUDA's start (nothing reserved yet) on an invented H200, with its name and
    properties, for ``check`` and ``cap_allocator``."""
    cuda = FakeCuda(H200_SHOWN, int(used_gib * GIB), 0)
    cuda.install(monkeypatch)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    props = type("Props", (), {"total_memory": H200_SHOWN})()
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: props)
    return cuda


def test_the_first_cap_says_where_it_was_emulated_and_caps_to_the_card(monkeypatch):
    cuda = _first_cap_cuda(monkeypatch, 0.5)
    config = TrialConfig(
        model="llama-3.2-1b", task="causal-lm", finetune="lora", precision="bf16-mixed",
        device="cuda", capacity_gb=24,
    )  # fmt: skip
    assert capacity.check(config, "cuda") is None
    env, facts = {}, {}
    capacity.cap_allocator(config, "cuda", env, facts)
    expected = allocator_cap(24, H200_SHOWN, 0.5 * GIB)
    assert env["emulated_on"] == "NVIDIA H200"
    assert cuda.fraction == pytest.approx(expected.fraction)
    assert facts["capacity_cap_gib"] == pytest.approx(expected.cap_bytes / GIB)
    assert facts["cuda_context_gib"] == pytest.approx(0.5)
    assert 0 < facts["driver_reserved_gib"] < 1


def test_a_bigger_card_than_this_one_is_refused_naming_both(monkeypatch):
    _first_cap_cuda(monkeypatch, 0.5)
    config = TrialConfig(**{**TINY, "device": "cuda", "capacity_gb": 192})
    reason = capacity.check(config, "cuda")
    assert reason is not None and "192 GB is more than this GPU has (NVIDIA H200, 141 GB)" in reason


def test_weights_over_the_cap_and_a_card_below_its_context_are_oom_at_setup_saying_which(
    monkeypatch,
):
    cuda = _first_cap_cuda(monkeypatch, 0.5)
    full_8b = TrialConfig(
        model="llama-3.1-8b", task="causal-lm", precision="bf16-true", device="cuda",
        capacity_gb=15,
    )  # fmt: skip
    with pytest.raises(torch.OutOfMemoryError, match=r"weights alone take 14\.96 GiB, more than"):
        capacity.cap_allocator(full_8b, "cuda", {}, {})
    # bert-tiny's weights are not counted; a 0.3 GB card is all context: said as such, not as
    # "weights of 0.0 GiB over 0.0 GiB" (the message before)
    tiny = TrialConfig(**{**TINY, "device": "cuda", "capacity_gb": 0.3})
    with pytest.raises(torch.OutOfMemoryError, match="0.3 GB card leaves nothing to PyTorch"):
        capacity.cap_allocator(tiny, "cuda", {}, {})
    assert cuda.fraction is None
