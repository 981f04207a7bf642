"""capacity_gb: the allocator cap's arithmetic with invented numbers, its refusals, the fixed
memory that answers a configuration without a run, and the read side leaving capped rates out.
No GPU: the cap's CUDA part is only refused here."""

from __future__ import annotations

import pandas as pd
import pytest

from sweep.plan.catalog import get_spec
from sweep.plan.config import TrialConfig
from sweep.plan.fixed_memory import GIB, decoder_params, fixed_memory_bytes, too_big, weights_bytes
from sweep.trial.capacity import allocator_cap, card_size_gb, check


def test_the_cap_of_a_24_gb_card_on_a_141_gb_one():
    shown = 139.8 * GIB  # an H200 "141 GB" shows 139.8 GiB
    cap = allocator_cap(24, shown, 0.5 * GIB)
    kept = 24 * GIB * (1 - 139.8 / 141)  # the driver's share of the emulated card
    assert cap.card_gb == 141
    assert cap.driver_reserved_bytes == pytest.approx(kept)
    assert cap.cap_bytes == pytest.approx(24 * GIB - kept - 0.5 * GIB)
    assert cap.fraction == pytest.approx((24 * 139.8 / 141 - 0.5) / 139.8)
    assert cap.fraction == pytest.approx(0.16664, abs=1e-5)


def test_the_whole_card_is_its_shown_memory_less_the_context():
    cap = allocator_cap(141, 139.8 * GIB, 0.5 * GIB)
    assert cap.cap_bytes == pytest.approx(139.3 * GIB)
    assert cap.fraction == pytest.approx(139.3 / 139.8)


def test_card_sizes_as_sold_from_what_they_show():
    assert card_size_gb(79.19 * GIB) == 80
    assert card_size_gb(39.4 * GIB) == 40
    assert card_size_gb(178 * GIB) == pytest.approx(178)  # bigger than any known: as shown


def test_a_bigger_card_than_the_running_one_is_refused_naming_both():
    with pytest.raises(ValueError, match="200 GB card cannot be emulated on this 141 GB"):
        allocator_cap(200, 139.8 * GIB, 0.5 * GIB)


def test_on_the_cpu_the_cap_is_unsupported():
    c = TrialConfig(model="bert-tiny", capacity_gb=24)
    assert check(c, "cpu") == "capacity_gb: the allocator cap needs a CUDA GPU"


@pytest.mark.parametrize("bad", [0, -8, float("nan"), float("inf"), "24GB", True])
def test_capacity_must_be_a_positive_number(bad):
    with pytest.raises(ValueError, match="capacity_gb: expected a positive number"):
        TrialConfig(capacity_gb=bad)


def test_capacity_keys_are_one_for_24_and_24_0():
    assert TrialConfig(capacity_gb=24).capacity_gb == 24.0
    assert TrialConfig().capacity_gb is None


def test_an_uncapped_row_keeps_its_stored_key():
    from sweep.results.record import trial_key

    plain = TrialConfig().to_dict()
    old = {k: v for k, v in plain.items() if k != "capacity_gb"}
    assert trial_key(plain, None) == trial_key(old, None)
    assert trial_key(TrialConfig(capacity_gb=24).to_dict(), None) != trial_key(plain, None)


def test_parameter_counts_of_the_atlas_models():
    n = {m: sum(decoder_params(get_spec(m)).values()) for m in ("llama-3.2-1b", "llama-3.1-8b")}
    assert n["llama-3.2-1b"] == pytest.approx(1.236e9, rel=1e-3)  # the model card's 1.24B
    assert n["llama-3.1-8b"] == pytest.approx(8.030e9, rel=1e-3)
    assert decoder_params(get_spec("bert-tiny")) == {}


def _llm(**kw):
    return TrialConfig(model="llama-3.1-8b", task="causal-lm", precision="bf16-mixed", **kw)


def test_fixed_memory_by_method():
    n = 8.030261248e9
    assert fixed_memory_bytes(_llm()) == pytest.approx(16 * n)  # fp32 weights, grads, 2 moments
    true = TrialConfig(model="llama-3.1-8b", task="causal-lm", precision="bf16-true")
    assert fixed_memory_bytes(true) == pytest.approx(8 * n)
    assert fixed_memory_bytes(_llm(finetune="lora")) == pytest.approx(2 * n)  # a bf16 base
    qlora = fixed_memory_bytes(_llm(finetune="qlora"))
    assert 5.0 * GIB < qlora < 5.6 * GIB  # NF4 blocks, embeddings and head in bf16
    assert weights_bytes(_llm()) == pytest.approx(4 * n)


def test_fixed_memory_over_the_card_is_answered_without_a_run():
    why = too_big(TrialConfig(model="llama-3.1-8b", task="causal-lm", capacity_gb=80))
    assert why.startswith("fixed memory 119.7 GiB") and why.endswith("the card's 80 GiB: not run")
    assert too_big(_llm(finetune="qlora", capacity_gb=16)) is None
    assert too_big(_llm()) is None  # the whole card: not known before the run


def test_the_answer_leaves_capped_rows_out_of_the_rates():
    from sweep.analysis.answer import answer

    base = dict(
        model="m",
        seq_len=128,
        precision="fp32",
        status="ok",
        dataset="measured",
        sweep="s",
        batch_size=8,
        gpu_type=None,
    )
    rows = [
        {**base, "key": "a", "gpu": "NVIDIA H200", "tokens_per_s": 1000.0},
        {**base, "key": "b", "gpu": "NVIDIA H200", "tokens_per_s": 9999.0, "capacity_gb": 24.0},
    ]
    got = answer(pd.DataFrame(rows), "m", 128)
    assert got.table["Tokens/s (like baseline)"].tolist() == [1000]
    assert any("capacity_gb" in n for n in got.notes)
