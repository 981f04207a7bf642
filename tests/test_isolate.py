"""Each trial in a fresh process forked from a warm fork server (sweep/engine/forkserver.py)."""

import subprocess
import sys
import textwrap

from sweep.engine.forkserver import run_in_child
from sweep.plan.config import TrialConfig

FAKE = "tests.fake_trials:"
CFG = TrialConfig(
    model="bert-tiny", batch_size=2, seq_len=16, warmup_steps=1, steps=2, device="cpu"
).to_dict()


def test_real_trial_runs_in_a_child_with_imports_done():
    first = run_in_child("sweep.trial.run:run_trial", CFG, 120)
    second = run_in_child("sweep.trial.run:run_trial", {**CFG, "seed": 1}, 120)
    for rec in (first, second):
        assert rec.status == "ok", rec.error
        # the fork server imported transformers' model code: building is quick in the child
        assert rec.metrics["setup_s"] < 2.0
    assert first.env["hostname"] and first.config["seed"] == 0 and second.config["seed"] == 1


BUDGET = ("time_fork_s", "time_env_s", "time_flops_s", "time_release_s", "time_exit_s")


def test_trial_process_time_budget_and_flops_reused_across_batches():
    """Each trial's record says where its process's seconds went (fork, environment, FLOP count,
    release, exit); a later trial of the same shape at another batch reuses the count per
    sequence and gets exactly the count it would have taken itself."""
    from sweep.engine.flops import FlopsByShape, shape_key

    first = run_in_child("sweep.trial.run:run_trial", CFG, 120)
    assert first.status == "ok", first.error
    m = first.metrics
    for name in BUDGET:
        assert m[name] >= 0, name
    assert m["flops_reused"] == 0 and m["time_flops_s"] > 0
    # the parts happen inside the process's time; the measured steps are in it too
    parts = m["time_fork_s"] + m["setup_s"] + m["warmup_s"] + m["measure_s"] + m["time_exit_s"]
    assert parts <= m["time_process_s"]
    memory = FlopsByShape()
    memory.remember(CFG, first.status, first.metrics)
    bigger = {**CFG, "batch_size": 6}
    known = memory.per_sequence(bigger)
    assert known * CFG["batch_size"] == m["flops_per_step"]
    reused = run_in_child("sweep.trial.run:run_trial", bigger, 120, flops_per_sequence=known)
    counted = run_in_child("sweep.trial.run:run_trial", bigger, 120)
    assert reused.status == counted.status == "ok"
    assert reused.metrics["flops_reused"] == 1 and "time_flops_s" not in reused.metrics
    assert reused.metrics["flops_per_step"] == counted.metrics["flops_per_step"] == 6 * known
    # another shape (seq_len) never reuses it
    assert memory.per_sequence({**CFG, "seq_len": 32}) is None
    assert shape_key({**CFG, "seq_len": 32}) != shape_key(bigger)


def test_each_trial_is_a_new_process():
    a = run_in_child(FAKE + "noop", CFG, 60)
    b = run_in_child(FAKE + "noop", CFG, 60)
    assert a.env["pid"] != b.env["pid"]
    import os

    assert os.getpid() not in (a.env["pid"], b.env["pid"])


def test_death_hang_and_exception_become_rows():
    died = run_in_child(FAKE + "kill_self", {**CFG, "seed": 1}, 30)
    assert died.status == "crashed" and "SIGKILL" in died.error
    assert died.error_type == "ProcessDied"
    hung = run_in_child(FAKE + "hang", {**CFG, "seed": 2}, 2)
    assert hung.status == "timeout" and "timeout of 2 s" in hung.error
    gil = run_in_child(FAKE + "hold_gil", {**CFG, "seed": 4}, 2)
    assert gil.status == "timeout"
    raised = run_in_child(FAKE + "raise_error", {**CFG, "seed": 3}, 30)
    assert raised.status == "error" and "boom from the fake trial" in raised.error
    assert raised.error_type == "RuntimeError"
    # after all that, the fork server still serves
    assert run_in_child(FAKE + "noop", CFG, 30).status == "ok"


def test_preload_never_touches_cuda():
    # A fork server that initialised CUDA would hand every trial a broken CUDA: the preload
    # must not call into torch.cuda at all.
    code = textwrap.dedent("""
        import torch
        calls = []
        for name in ("is_available", "device_count", "_lazy_init", "get_device_properties",
                     "get_device_capability", "is_bf16_supported", "current_device"):
            orig = getattr(torch.cuda, name)
            def spy(*a, _o=orig, _n=name, **k):
                calls.append(_n)
                return _o(*a, **k)
            setattr(torch.cuda, name, spy)
        import sweep.trial.preload
        assert calls == [], calls
        assert not torch.cuda.is_initialized()
        import sys
        for mod in ("transformers.models.roberta.modeling_roberta", "sweep.trial.run"):
            assert mod in sys.modules, mod
        print("clean")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "clean" in out.stdout


def test_a_trial_dies_with_its_fork_server():
    # When Ray kills a worker, its fork server goes, and a still-running trial must go too
    # (it would otherwise hold the GPU). Here: a worker-like parent process starts a hanging
    # trial, then is killed; the trial process must not survive it.
    code = textwrap.dedent("""
        import os, sys, threading, time
        sys.path.insert(0, os.getcwd())
        from sweep.engine.forkserver import run_in_child
        from sweep.plan.config import TrialConfig
        cfg = TrialConfig(device="cpu", seed=2).to_dict()
        threading.Thread(target=run_in_child, args=("tests.fake_trials:hang", cfg, 600),
                         daemon=True).start()
        time.sleep(600)
    """)
    import os
    import signal
    import time

    parent = subprocess.Popen([sys.executable, "-c", code], cwd=os.getcwd())
    try:
        deadline = time.monotonic() + 120
        trial_pids = []
        while time.monotonic() < deadline and not trial_pids:
            time.sleep(0.5)
            out = subprocess.run(
                ["pgrep", "-f", "multiprocessing.forkserver"], capture_output=True, text=True
            )
            servers = [int(p) for p in out.stdout.split()]
            for server in servers:
                kids = subprocess.run(
                    ["pgrep", "-P", str(server)], capture_output=True, text=True
                ).stdout.split()
                trial_pids += [int(k) for k in kids]
        assert trial_pids, "the hanging trial process never started"
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 30
    alive = trial_pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [
            p
            for p in trial_pids
            if os.path.exists(f"/proc/{p}")
            and "zombie" not in open(f"/proc/{p}/status").read().lower()
        ]
    assert not alive, f"trial processes outlived their worker: {alive}"
