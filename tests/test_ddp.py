"""N-GPU trials (gpus_per_trial > 1) on the CPU: 2 gloo ranks forked by the trial process.

The supervisor's rules are tested with torch-free rank functions (milliseconds); two tests run
real DDP ranks on bert-tiny (an ok row with the new fields; a rank that dies mid-step).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from sweep.plan.config import TrialConfig
from sweep.results.record import CRASHED, ERROR, OK, OOM, TIMEOUT, UNSUPPORTED, trial_key
from sweep.trial import ddp
from sweep.trial import metrics as M
from sweep.trial.ddp_rank import bucket_sizes

TINY = dict(
    model="bert-tiny",
    seq_len=16,
    batch_size=2,
    steps=3,
    warmup_steps=1,
    device="cpu",
    gpus_per_trial=2,
    profile_step=False,
)


def _ranks_gone() -> bool:
    return not [p for p in multiprocessing.active_children() if p.name.startswith("sweep-rank")]


# -- the field ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, words",
    [(0, "between 1 and 64"), (65, "between 1 and 64"), ("2", "integer"), (True, "integer")],
)
def test_gpus_per_trial_bad_values_are_one_error(value, words):
    with pytest.raises(ValueError) as err:
        TrialConfig(gpus_per_trial=value)
    assert str(err.value).startswith("gpus_per_trial:") and words in str(err.value)


def test_gpus_per_trial_in_a_sweep_file_is_checked_before_anything_runs():
    from sweep.plan import sweepfile
    from sweep.plan.grid import expand

    with pytest.raises(ValueError, match="gpus_per_trial"):
        expand(sweepfile.parse("name: x\naxes: {gpus_per_trial: [1, 0]}\n"))


def test_default_keeps_old_keys_and_n_gpus_is_another_trial():
    one = TrialConfig().to_dict()
    old = {k: v for k, v in one.items() if k != "gpus_per_trial"}
    assert trial_key(one, None) == trial_key(old, None)
    assert trial_key(TrialConfig(gpus_per_trial=2).to_dict(), None) != trial_key(one, None)


# -- pure parts -----------------------------------------------------------------------------------
def test_bus_bandwidth_is_nccl_tests_formula():
    # 1 GB in 10 ms on 8 ranks: algbw 100 GB/s, busbw 100 * 2 * 7 / 8 = 175 GB/s
    assert M.bus_bandwidth_gb_s(10**9, 0.01, 8) == pytest.approx(175.0)
    assert M.bus_bandwidth_gb_s(10**9, 0.01, 1) == 0.0
    with pytest.raises(ValueError):
        M.bus_bandwidth_gb_s(10**9, 0.0, 2)


def test_buckets_follow_ddp_reverse_order_and_caps():
    mib = 2**20
    # reversed: 2, 30, 10, 10, 10 MiB; first bucket closes at >= 1 MiB, then at >= 25 MiB
    assert bucket_sizes([10 * mib, 10 * mib, 10 * mib, 30 * mib, 2 * mib]) == [
        2 * mib,
        30 * mib,
        30 * mib,
    ]
    assert bucket_sizes([100, 200]) == [300]  # all below the first cap: one bucket


def test_combine_scales_throughput_and_keeps_the_slowest_rank():
    def rank(p50, tokens, peak):
        return {
            "metrics": {
                "step_time_ms_p50": p50,
                "tokens_per_s": tokens,
                "sequences_per_s": tokens / 16,
                "peak_allocated_gib": peak,
            },
            "finite": True,
        }

    out = ddp.combine(2, {0: rank(100.0, 320.0, 1.0), 1: rank(110.0, 290.0, 1.5)})
    assert out["tokens_per_s"] == 640.0 and out["tokens_per_s_per_gpu"] == 320.0
    assert out["sequences_per_s"] == 40.0 and out["world_size"] == 2
    assert out["step_time_ms_p50"] == 100.0 and out["step_time_ms_p50_max_rank"] == 110.0
    assert out["rank_step_skew_pct"] == pytest.approx(10.0)
    assert out["peak_allocated_gib"] == 1.5  # each GPU must hold the largest


def test_outcome_names_the_cause_not_its_echoes():
    echo = (0, ERROR, "Connection closed by peer", "DistBackendError")
    oom = (1, OOM, "CUDA out of memory", "OutOfMemoryError")
    assert ddp.outcome(2, {}, [echo, oom], [], False, None)[0] == OOM
    status, text, kind = ddp.outcome(2, {}, [echo], [1], False, None)
    assert status == CRASHED and kind == "RankDied" and "rank(s) 1 of 2 died" in text
    assert ddp.outcome(2, {}, [echo], [], False, None)[0] == ERROR
    assert ddp.outcome(2, {0: {}}, [], [], True, 5.0)[1].startswith("rank(s) 1 of 2 still")


# -- the supervisor, with torch-free ranks --------------------------------------------------------
def _dies(rank, world, config, store):
    if rank == 1:
        os._exit(9)
    time.sleep(60)  # rank 0 waits for a peer that is gone, as a collective would


def _hangs(rank, world, config, store):
    if rank == 1:
        time.sleep(60)
    return {"rank": rank, "metrics": {}, "env": {}, "finite": True}


def _oom(rank, world, config, store):
    if rank == 1:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    time.sleep(60)


def test_a_rank_that_dies_is_a_crashed_row_and_the_others_are_killed():
    t0 = time.monotonic()
    row = ddp.run_ddp_trial(TrialConfig(**TINY), rank_fn=_dies)
    assert row.status == CRASHED and "rank(s) 1 of 2 died" in row.error
    assert time.monotonic() - t0 < ddp.GRACE_S + 5 and _ranks_gone()


def test_a_hung_rank_is_a_timeout_row_and_every_rank_is_killed():
    t0 = time.monotonic()
    row = ddp.run_ddp_trial(TrialConfig(**TINY), rank_fn=_hangs, timeout_s=1.0)
    assert row.status == TIMEOUT and row.error.startswith("rank(s) 1 of 2 still running")
    assert time.monotonic() - t0 < 8 and _ranks_gone()


def test_out_of_memory_in_one_rank_is_an_oom_row():
    row = ddp.run_ddp_trial(TrialConfig(**TINY), rank_fn=_oom)
    assert row.status == OOM and row.error.startswith("rank 1: CUDA out of memory")
    assert _ranks_gone()


def _pid_file_then_hang(rank, world, config, store):
    with open(f"{store}.{rank}.pid", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)


def _supervise(folder):
    import tempfile

    tempfile.tempdir = folder  # the ranks' pid files land where the test can read them
    ddp.run_ddp_trial(TrialConfig(**TINY), rank_fn=_pid_file_then_hang)


def test_ranks_die_with_the_trial_process(tmp_path):
    """The engine's timeout kills the trial process (SIGKILL): its ranks must not outlive it."""
    sup = multiprocessing.get_context("fork").Process(target=_supervise, args=(str(tmp_path),))
    sup.start()
    deadline = time.monotonic() + 20
    while len(list(tmp_path.glob("*/*.pid"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p.read_text()) for p in tmp_path.glob("*/*.pid")]
    assert len(pids) == 2
    os.kill(sup.pid, signal.SIGKILL)
    sup.join(5)

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


# -- real DDP on the CPU --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def warm():
    import sweep.trial.preload  # noqa: F401  the ranks fork with transformers loaded, as in a sweep


def test_two_gloo_ranks_give_an_ok_row_with_the_ddp_fields(warm):
    from sweep.trial.run import run_trial

    row = run_trial(TrialConfig(**TINY))
    assert row.status == OK, row.error
    m = row.metrics
    assert m["world_size"] == 2 and m["steps_measured"] == 3
    assert m["tokens_per_s"] == pytest.approx(2 * m["tokens_per_s_per_gpu"])
    assert m["tokens_per_s_per_gpu"] == pytest.approx(2 * 16 * 1000 / m["step_time_ms_p50"])
    assert m["step_time_ms_p50_max_rank"] >= m["step_time_ms_p50"] * 0.5
    assert m["allreduce_busbw_gb_s"] > 0 and m["allreduce_ms_per_step"] > 0
    assert m["grad_allreduce_bytes"] == 4 * m["n_params"]  # every fp32 gradient, once
    for name in ("loss_first", "loss_last"):
        assert m[name] == m[name] and abs(m[name]) < 10  # finite
    assert row.config["gpus_per_trial"] == 2 and _ranks_gone()


def test_bf16_true_gradients_are_all_reduced_in_bf16(warm):
    from sweep.trial.run import run_trial

    row = run_trial(TrialConfig(**{**TINY, "precision": "bf16-true"}))
    assert row.status == OK, row.error
    m = row.metrics
    assert m["grad_allreduce_bytes"] == 2 * m["n_params"]  # it timed 4 bytes a parameter
    assert _ranks_gone()


def test_a_rank_dying_mid_step_is_a_crashed_row_in_bounded_time(warm):
    from sweep.trial import ddp_rank, harness

    def dies_in_its_second_step(rank, world, config, store):
        if rank == 1:
            real, calls = harness.train_step, []

            def step(w, mark=None):
                calls.append(1)
                if len(calls) == 2:
                    os._exit(9)
                return real(w, mark)

            harness.train_step = step  # the native loop's step, in rank 1's process only (forked)
        return ddp_rank.rank_trial(rank, world, config, store)

    t0 = time.monotonic()
    row = ddp.run_ddp_trial(TrialConfig(**TINY), rank_fn=dies_in_its_second_step)
    assert row.status == CRASHED and row.error.startswith("rank(s) 1 of 2 died"), row.error
    assert time.monotonic() - t0 < 30 and _ranks_gone()


def test_inference_across_gpus_is_unsupported(warm):
    from sweep.trial.run import run_trial

    row = run_trial(TrialConfig(**{**TINY, "mode": "inference"}))
    assert row.status == UNSUPPORTED and "gpus_per_trial" in row.error


def test_a_death_seen_before_its_pipe_closed_is_still_a_death(monkeypatch):
    """A dying rank closes its sentinel and its message pipe one after the other: the supervisor
    can see the sentinel first while the pipe still polls as readable (a message pending?), then
    read EOF from the pipe. That rank died (seen in `bash .ci/run`, 2026-12-07: the survivor's
    "Connection reset by peer" became the row's error instead of "rank(s) 1 of 2 died")."""

    class Conn:
        def __init__(self, msg=None):
            self.msg = msg

        def recv(self):
            if self.msg is None:
                raise EOFError
            return self.msg

        def poll(self, timeout):
            return True

    class Proc:
        def __init__(self, sentinel):
            self.sentinel = sentinel

    echo = ("error", ERROR, "Connection reset by peer", "DistBackendError")
    conns = [Conn(echo), Conn()]
    procs = [Proc("s0"), Proc("s1")]
    script = [[conns[0], "s1"], [conns[1]], ["s0"]]  # rank 1: its sentinel, then its pipe
    monkeypatch.setattr(ddp, "wait", lambda objs, timeout=None: script.pop(0) if script else [])
    results, failures, died, timed_out = ddp.collect(procs, conns, timeout_s=5)
    assert died == [1] and not timed_out
    status, error, _ = ddp.outcome(2, results, failures, died, timed_out, 5)
    assert status == CRASHED and error.startswith("rank(s) 1 of 2 died"), error
