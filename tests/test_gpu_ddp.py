"""N-GPU trials on real GPUs (NCCL): run on a host with 2 or more GPUs with
``python -m pytest -q -ra -m gpu tests/test_gpu_ddp.py`` (benchmarks/gpu_campaign.sh
STEPS=issue15 does). Skipped without CUDA, and with fewer than 2 GPUs (saying so)."""

from __future__ import annotations

import os
import time

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available() or torch.cuda.device_count() < 2,
        reason="needs 2 or more CUDA GPUs on one host (an N-GPU trial; none lent here)",
    ),
]

from sweep.plan.config import TrialConfig  # noqa: E402
from sweep.results.record import CRASHED, OK, OOM  # noqa: E402
from sweep.trial import ddp  # noqa: E402

TINY = dict(model="bert-tiny", seq_len=128, batch_size=8, steps=10, warmup_steps=3, device="cuda")


def _gpus() -> int:
    return torch.cuda.device_count()


@pytest.fixture(scope="module", autouse=True)
def warm():
    import sweep.trial.preload  # noqa: F401  ranks fork with transformers loaded, as in a sweep


def test_n_gpu_trial_on_nccl_gives_an_ok_row_with_the_ddp_fields():
    from sweep.trial.run import run_trial

    n = min(_gpus(), 8)
    row = run_trial(TrialConfig(**TINY, gpus_per_trial=n))
    assert row.status == OK, row.error
    m = row.metrics
    print(
        f"\n{n} GPUs ({row.env.get('gpu_name')}): {m['tokens_per_s']:.0f} tokens/s, "
        f"{m['tokens_per_s_per_gpu']:.0f} per GPU, step {m['step_time_ms_p50']:.2f} ms "
        f"(slowest rank {m['step_time_ms_p50_max_rank']:.2f}), busbw "
        f"{m['allreduce_busbw_gb_s']:.1f} GB/s, gradient all-reduce "
        f"{m['allreduce_ms_per_step']:.3f} ms/step"
    )
    assert m["world_size"] == n
    assert m["tokens_per_s"] == pytest.approx(n * m["tokens_per_s_per_gpu"])
    assert m["allreduce_busbw_gb_s"] > 1.0  # NVLink or PCIe: well above a gigabyte per second
    assert m["allreduce_ms_per_step"] > 0 and m["peak_allocated_gib"] > 0
    assert m["loss_first"] == m["loss_first"] and m["loss_last"] == m["loss_last"]
    assert row.env.get("gpu_uuid") and row.env.get("device") == "cuda"


def test_out_of_memory_in_one_rank_is_an_oom_row_on_gpus():
    from sweep.trial import ddp_rank

    def rank1_fills_its_gpu(rank, world, config, store):
        if rank == 1:
            torch.cuda.set_device(1)
            torch.empty(
                torch.cuda.get_device_properties(1).total_memory * 2,
                dtype=torch.uint8,
                device="cuda",
            )
        return ddp_rank.rank_trial(rank, world, config, store)

    row = ddp.run_ddp_trial(TrialConfig(**TINY, gpus_per_trial=2), rank_fn=rank1_fills_its_gpu)
    assert row.status == OOM and row.error.startswith("rank 1:"), row.error


def test_a_rank_dying_mid_step_on_nccl_is_a_crashed_row_in_bounded_time():
    from sweep.trial import ddp_rank

    def dies(rank, world, config, store):
        if rank == 1:
            real, calls = ddp_rank.train_step, []

            def step(w, mark=None):
                calls.append(1)
                if len(calls) == 4:
                    os._exit(9)
                return real(w, mark)

            ddp_rank.train_step = step
        return ddp_rank.rank_trial(rank, world, config, store)

    t0 = time.monotonic()
    row = ddp.run_ddp_trial(TrialConfig(**TINY, gpus_per_trial=2), rank_fn=dies)
    assert row.status == CRASHED and "rank(s) 1 of 2 died" in row.error, row.error
    assert time.monotonic() - t0 < 60
