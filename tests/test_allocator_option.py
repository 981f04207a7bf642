"""The allocator option (sweep/trial/allocator.py) and the capacity cap's undoing, on the CPU:
where the option is refused, what restores it, and what the field means to the rest of the
product. Its GPU run: tests/test_gpu.py."""

import pytest

from sweep.plan.config import OPTION, TrialConfig, field_role
from sweep.results.record import ADDED_FIELDS, trial_key
from sweep.trial import allocator, transforms
from sweep.trial.run import run_trial

TINY = dict(model="bert-tiny", batch_size=2, seq_len=16, warmup_steps=1, steps=1, device="cpu")


def test_an_unknown_allocator_is_named():
    with pytest.raises(ValueError, match="allocator: 'big' is not one of default, expandable"):
        TrialConfig(**TINY, allocator="big")


def test_the_field_is_an_option_and_old_rows_keep_their_key():
    assert field_role("allocator") == OPTION
    cfg = TrialConfig(**TINY)
    old = {k: v for k, v in cfg.to_dict().items() if k != "allocator"}
    assert trial_key(cfg.to_dict(), None) == trial_key(old, None)
    expandable = TrialConfig(**TINY, allocator="expandable").to_dict()
    assert trial_key(expandable, None) != trial_key(cfg.to_dict(), None)
    assert ADDED_FIELDS["allocator"] == "default"


def test_expandable_on_the_cpu_is_unsupported_naming_the_field():
    rec = run_trial(TrialConfig(**TINY, allocator="expandable"))
    assert rec.status == "unsupported"
    assert rec.error.startswith("allocator: expandable segments are a CUDA allocator's")


def test_expandable_over_several_gpus_is_refused():
    cfg = TrialConfig(**{**TINY, "device": "cuda"}, allocator="expandable", gpus_per_trial=2)
    assert allocator.check(cfg, "cuda").startswith("allocator: expandable is set in the trial's")


@pytest.mark.parametrize(
    "conf, expected",
    [
        (None, allocator.EXPANDABLE_OFF),
        ("expandable_segments:True", allocator.EXPANDABLE_ON),
        ("max_split_size_mb:128, expandable_segments:True", allocator.EXPANDABLE_ON),
        ("expandable_segments:False", allocator.EXPANDABLE_OFF),
        ("garbage_collection_threshold:0.6", allocator.EXPANDABLE_OFF),
    ],
)
def test_restore_returns_to_what_the_environment_asked(monkeypatch, conf, expected):
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    if conf is None:
        monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    else:
        monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", conf)
    assert allocator._from_environment() == expected


def test_every_restore_runs_even_when_the_trial_fails(monkeypatch):
    """A trial that raises still restores what its preparations changed, and a restore that
    raises does not take the record with it."""
    calls = []

    def boom(config):
        calls.append("boom")
        raise RuntimeError("restore failed")

    probe = transforms.Transform(
        "allocator",
        lambda c: True,
        transforms.no_reason,
        lambda m, c: (_ for _ in ()).throw(RuntimeError("the model broke")),
        restore=lambda c: calls.append("restored"),
    )
    failing = transforms.Transform(
        "liger", lambda c: True, transforms.no_reason, lambda m, c: m, restore=boom
    )
    monkeypatch.setattr(transforms, "TRANSFORMS", (probe, failing))
    rec = run_trial(TrialConfig(**TINY))
    assert rec.status == "error" and "the model broke" in rec.error
    assert calls == ["boom", "restored"]  # reverse order, the failing one did not stop the other


def test_a_capped_trial_is_uncapped_when_it_ends(monkeypatch):
    """capacity_gb's cap is undone by its transform's restore (capacity.uncap), and only where
    CUDA started: a trial refused before its cap touches nothing."""
    import torch

    calls = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", calls.append)
    capped = TrialConfig(**{**TINY, "device": "cuda"}, capacity_gb=24)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    transforms.restore_all(capped)
    assert calls == []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    transforms.restore_all(capped)
    assert calls == [1.0]
    transforms.restore_all(TrialConfig(**{**TINY, "device": "cuda"}))  # not capped: nothing
    assert calls == [1.0]
