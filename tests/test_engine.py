"""The Ray Tune engine on one local Ray instance (2 CPUs), with fake trial functions.

Each test runs a real sweep: the searcher, the trainable in a Ray worker process, the store
callback. Fake trials (tests/fake_trials.py) return OOM above a batch threshold, kill their own
process, hang or raise, so that every failure path ends as a row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from sweep.engine.run import EngineOptions, run_sweep
from sweep.plan import sweepfile
from sweep.plan.grid import expand
from sweep.report import format_summary
from sweep.results import record as rec
from sweep.results.store import Store

pytestmark = pytest.mark.timeout(240)

FAKE = "tests.fake_trials:"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def options(db, fn, **kw) -> EngineOptions:
    kw.setdefault("retries", 0)
    return EngineOptions(db=str(db), trial_fn=FAKE + fn, preimport=False, **kw)


def by_batch(trials, **match):
    out = {}
    for t in trials:
        if all(t.config[k] == v for k, v in match.items()):
            out[t.config["batch_size"]] = t
    return out


def test_oom_prunes_larger_batches_of_the_same_group_only(tmp_path, ray_session):
    spec = sweepfile.parse("""
name: prune
axes:
  batch_size: [16, 32, 64, 128, 256]
  seq_len: [128, 256]
fixed: {device: cpu}
timeout_s: 60
""")
    out = run_sweep(spec, options(tmp_path / "r.db", "oom_above"))
    trials = Store(tmp_path / "r.db").trials()
    assert len(trials) == 10 and sorted(out.keys) == sorted(t.key for t in expand(spec))
    # the plan the app's progress view reads: all 10 planned, none running once it ended
    plan = Store(tmp_path / "r.db", readonly=True).plans()["prune"]
    assert plan["planned"] == 10 and plan["running"] == 0
    # seq 128 fits up to 64: 128 runs and OOMs, 256 is never run
    s128 = by_batch(trials, seq_len=128)
    assert {b: t.status for b, t in s128.items()} == {
        16: "ok",
        32: "ok",
        64: "ok",
        128: "oom",
        256: "skipped_oom",
    }
    # seq 256 fits up to 32: its own pruning starts at 64
    s256 = by_batch(trials, seq_len=256)
    assert {b: t.status for b, t in s256.items()} == {
        16: "ok",
        32: "ok",
        64: "oom",
        128: "skipped_oom",
        256: "skipped_oom",
    }
    for t in trials:
        if t.status == "skipped_oom":  # decided by the searcher: no Tune trial; the driver's node
            import ray

            assert t.ray_trial_id is None and t.node == ray.get_runtime_context().get_node_id()
            assert "ran out of memory" in t.error
        else:  # ran in a Ray worker: the row says where and as which Tune trial
            assert t.ray_trial_id and t.node and len(t.node) == 56  # a Ray node id (hex)
            assert t.env["pid"] != os.getpid()  # in a worker process, not in the driver
            assert t.sweep == "prune"
    # ascending within a group: the OOM came after the batches that fit
    assert s128[64].finished_at <= s128[128].finished_at
    assert out.counts == {"ok": 5, "oom": 2, "skipped_oom": 3}
    table = format_summary(out.frame)
    assert "skipped_oom" in table and "tokens_per_s" in table

    # resume: nothing runs again, every row stays as it was
    again = run_sweep(spec, options(tmp_path / "r.db", "oom_above"))
    with Store(tmp_path / "r.db") as s:
        after = {t.key: t for t in s.trials()}
        assert after == {t.key: t for t in trials}
        assert s.superseded() == []
    assert again.counts == out.counts

    # --rerun runs them again: new Tune trial ids, old records kept aside
    run_sweep(spec, options(tmp_path / "r.db", "oom_above", rerun=True))
    with Store(tmp_path / "r.db") as s:
        rerun = {t.key: t for t in s.trials()}
        assert len(rerun) == 10
        ran = [k for k, t in after.items() if t.ray_trial_id]
        assert all(rerun[k].ray_trial_id != after[k].ray_trial_id for k in ran)
        assert len(s.superseded()) >= len(ran)


def test_max_batch_search_doubles_then_bisects(tmp_path, ray_session):
    # fits up to 5 (seed=5 is the fake's limit): probes 4 ok, 8 oom, 6 oom, 5 ok -> 5
    spec = sweepfile.parse("""
name: mb
mode: max-batch
axes:
  seq_len: [128]
fixed: {device: cpu, batch_size: 4, seed: 5}
batch_limit: 64
timeout_s: 60
""")
    out = run_sweep(spec, options(tmp_path / "r.db", "oom_above"))
    trials = Store(tmp_path / "r.db").trials()
    probes = {t.config["batch_size"]: t.status for t in trials}
    assert probes == {4: "ok", 8: "oom", 6: "oom", 5: "ok"}
    answer = [t for t in trials if "max_batch_size" in t.metrics]
    assert len(answer) == 1
    assert answer[0].config["batch_size"] == 5 and answer[0].metrics["max_batch_size"] == 5
    assert set(out.frame["max_batch_size"].dropna()) == {5}

    # resume: the stored probes steer the search again, nothing runs, the answer stays
    out2 = run_sweep(spec, options(tmp_path / "r.db", "oom_above"))
    with Store(tmp_path / "r.db") as s:
        assert {t.key: t.ray_trial_id for t in s.trials()} == {
            t.key: t.ray_trial_id for t in trials
        }
    assert set(out2.frame["max_batch_size"].dropna()) == {5}


def test_max_batch_search_guided_by_memory_stores_its_predictions(tmp_path, ray_session):
    # fits up to 50; with memory readings the search jumps from the line of 4 and 8
    spec = sweepfile.parse("""
name: mbm
mode: max-batch
fixed: {device: cpu, batch_size: 4, seed: 50}
batch_limit: 1024
timeout_s: 60
""")
    out = run_sweep(spec, options(tmp_path / "r.db", "oom_above_with_memory"))
    trials = Store(tmp_path / "r.db").trials()
    probes = sorted(t.config["batch_size"] for t in trials)
    assert set(out.frame["max_batch_size"].dropna()) == {50}
    assert probes[:2] == [4, 8] and len(probes) <= 5  # doubling alone: 4..64, then 5 more
    guided = [t for t in trials if "predicted_limit_batch" in t.metrics]
    assert {t.config["batch_size"] for t in guided} == set(probes) - {4, 8}
    for t in guided:
        assert t.metrics["predicted_limit_batch"] in range(45, 56)
        if t.status == "ok":  # the line is exact here: the error is rounding only
            assert abs(t.metrics["prediction_error_pct"]) < 1e-6

    # resume: the stored probes' memory guides the search to the same probes; nothing runs
    out2 = run_sweep(spec, options(tmp_path / "r.db", "oom_above_with_memory"))
    again = {t.key: t.ray_trial_id for t in Store(tmp_path / "r.db").trials()}
    assert again == {t.key: t.ray_trial_id for t in trials}
    assert set(out2.frame["max_batch_size"].dropna()) == {50}


def test_capped_searches_seeded_from_the_uncapped_one_answer_exactly(tmp_path, ray_session):
    # The atlas's plan: the uncapped search runs first; each capped one starts where the line
    # through its probes' reserved peaks meets the card's cap and ends with the last batch that
    # fits and the first that does not (fake card: sweep/../tests/fake_trials.py capped_memory).
    spec = sweepfile.parse("""
name: atlas-fake
mode: max-batch
axes:
  capacity_gb: [8, 16, 24, null]
fixed: {device: cpu, batch_size: 4}
batch_limit: 1024
timeout_s: 60
""")
    out = run_sweep(spec, options(tmp_path / "r.db", "capped_memory"))
    trials = Store(tmp_path / "r.db").trials()
    answers = {
        r.capacity_gb if r.capacity_gb == r.capacity_gb else None: r.max_batch_size
        for r in out.frame.dropna(subset=["max_batch_size"]).itertuples()
    }
    # peak 1 + 0.5 b under the cap (capacity - 0.7) or the shown 32 GiB less 0.85
    assert answers == {8.0: 12, 16.0: 28, 24.0: 44, None: 60}
    capped = [t for t in trials if t.config.get("capacity_gb") is not None]
    by_card = Counter(t.config["capacity_gb"] for t in capped)
    # the first card guessed the context (0.5 GiB): at most one probe more than the others
    assert sorted(by_card.values())[:2] == [2, 2] and max(by_card.values()) <= 3
    for t in capped:
        if t.config["batch_size"] == answers[t.config["capacity_gb"]]:
            assert t.metrics["predicted_limit_batch"] in (
                answers[t.config["capacity_gb"]],
                answers[t.config["capacity_gb"]] + 1,
            )
    # resume: the same probes, stored, nothing run
    run_sweep(spec, options(tmp_path / "r.db", "capped_memory"))
    again = {t.key: t.ray_trial_id for t in Store(tmp_path / "r.db").trials()}
    assert again == {t.key: t.ray_trial_id for t in trials}


def test_isolated_trials_crash_hang_and_raise_as_rows(tmp_path, ray_session):
    # The default: each trial in its own process forked from the worker's fork server. The
    # worker sees the child die or hang and writes the row itself; the worker lives on.
    spec = sweepfile.parse("""
name: chaos-isolated
axes:
  seed: [0, 1, 2, 3, 4]
fixed: {device: cpu}
timeout_s: 4
""")
    t0 = time.monotonic()
    out = run_sweep(spec, options(tmp_path / "r.db", "chaos"))
    trials = {t.config["seed"]: t for t in Store(tmp_path / "r.db").trials()}
    assert {s: t.status for s, t in trials.items()} == {
        0: "ok",
        1: "crashed",
        2: "timeout",
        3: "error",
        4: "timeout",
    }
    assert trials[1].error_type == "ProcessDied" and "SIGKILL" in trials[1].error
    assert trials[2].error.startswith("trial ran past its timeout of 4 s")
    assert trials[4].error.startswith("trial ran past its timeout of 4 s")  # GIL held: killed
    assert "boom from the fake trial" in trials[3].error
    assert all(t.ray_trial_id and t.node for t in trials.values())
    assert out.counts == {"ok": 1, "crashed": 1, "timeout": 2, "error": 1}
    assert time.monotonic() - t0 < 120


def test_crash_hang_and_exception_each_end_as_a_row(tmp_path, ray_session):
    # Trials inside the Ray worker itself (no isolation): a dead process is an actor death
    # that Tune reports and retries.
    spec = sweepfile.parse("""
name: chaos
axes:
  seed: [0, 1, 2, 3]
fixed: {device: cpu}
timeout_s: 4
""")
    t0 = time.monotonic()
    out = run_sweep(spec, options(tmp_path / "r.db", "chaos", retries=1, isolate=False))
    trials = {t.config["seed"]: t for t in Store(tmp_path / "r.db").trials()}
    assert {s: t.status for s, t in trials.items()} == {
        0: "ok",
        1: "crashed",
        2: "timeout",
        3: "error",
    }
    crashed = trials[1]
    # Ray's own words about the dead process are in the row
    assert crashed.error_type == "ActorDiedError"
    assert "worker process has died" in crashed.error
    assert "attempt 2 of 2" in crashed.error  # retried once (retries=1), then one row
    assert crashed.ray_trial_id
    assert trials[2].error.startswith("trial ran past its timeout of 4 s")
    assert "boom from the fake trial" in trials[3].error
    assert trials[3].error_type == "RuntimeError"
    assert out.counts == {"ok": 1, "crashed": 1, "timeout": 1, "error": 1}
    assert time.monotonic() - t0 < 120  # the hang did not hold the sweep

    # crashed is not final: a resume tries it again (and it crashes again, still one row)
    run_sweep(spec, options(tmp_path / "r.db", "chaos", isolate=False))
    with Store(tmp_path / "r.db") as s:
        assert len(s) == 4
        assert [t.config["seed"] for t in s.superseded()] == [1]


def test_gpu_trials_on_a_cpu_cluster_are_no_gpu_type_rows(tmp_path, ray_session):
    spec = sweepfile.parse("""
name: nogpu
axes:
  batch_size: [8, 16]
fixed: {device: cuda}
gpu_types: [H100]
""")
    t0 = time.monotonic()
    out = run_sweep(spec, options(tmp_path / "r.db", "noop"))
    trials = Store(tmp_path / "r.db").trials()
    assert [t.status for t in trials] == ["no_gpu_type", "no_gpu_type"]
    assert all(t.gpu_type == "H100" and "no GPU" in t.error for t in trials)
    assert out.counts == {"no_gpu_type": 2}
    assert time.monotonic() - t0 < 30  # nothing was scheduled (it would wait forever)


def test_more_cpus_per_trial_than_any_node_has_is_one_clear_error(tmp_path, ray_session):
    # the test cluster has 2 CPUs: a trial reserving 3 would wait for ever, and did
    from sweep.engine.run import SweepError

    spec = sweepfile.parse("name: big\naxes: {batch_size: [8]}\ncpus_per_trial: 3\n")
    t0 = time.monotonic()
    with pytest.raises(
        SweepError, match="reserves 3 CPUs, but the largest node of this cluster has 2"
    ):
        run_sweep(spec, options(tmp_path / "r.db", "noop"))
    assert time.monotonic() - t0 < 30
    assert Store(tmp_path / "r.db").trials() == []  # nothing stored


def _gcs_address(ray) -> str:
    return ray.get_runtime_context().gcs_address


def wait_for_rows(db, driver: subprocess.Popen, n: int, timeout_s: float = 120) -> dict:
    """key -> Trial stored in ``db`` once it holds ``n`` rows (or what it holds when
    ``timeout_s`` runs out); fails if ``driver`` ends first."""
    deadline = time.monotonic() + timeout_s
    rows: dict = {}
    while time.monotonic() < deadline:
        try:
            rows = {t.key: t for t in Store(db, readonly=True).trials()} if db.exists() else {}
        except ValueError:  # the file is being created
            rows = {}
        if len(rows) >= n:
            break
        assert driver.poll() is None, driver.communicate()
        time.sleep(0.2)
    return rows


def test_driver_killed_mid_sweep_then_resumed_keeps_every_row_once(tmp_path, ray_session):
    sweep_file = tmp_path / "slow.yaml"
    sweep_file.write_text("""
name: slow
axes:
  batch_size: [10, 11, 12, 13, 14, 15, 16, 17]
fixed: {device: cpu}
timeout_s: 60
""")
    db = tmp_path / "r.db"
    cmd = [
        sys.executable,
        "-m",
        "sweep",
        "run",
        str(sweep_file),
        "--db",
        str(db),
        "--address",
        _gcs_address(ray_session),
        "--trial-fn",
        FAKE + "sleep_by_batch",
        "--retries",
        "0",
    ]
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stored_before = wait_for_rows(db, driver, 2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert 2 <= len(stored_before) < 8, "the driver must die mid-sweep"

    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    with Store(db) as s:
        trials = s.trials()
        keys = [t.key for t in trials]
        assert len(keys) == len(set(keys)) == 8
        assert sorted(t.config["batch_size"] for t in trials) == list(range(10, 18))
        assert all(t.status == "ok" for t in trials)
        after = {t.key: t for t in trials}
        for key, before in stored_before.items():  # not run again, not touched
            assert after[key] == before
        assert s.superseded() == []
    assert "already stored" in resumed.stderr


def test_smoke_preset_end_to_end_with_the_real_trial(tmp_path, ray_session):
    pytest.importorskip("sweep.trial.run", reason="sweep/trial/run.py not landed yet")
    spec = sweepfile.load("smoke")
    out = run_sweep(spec, EngineOptions(db=str(tmp_path / "r.db"), retries=0, preimport=False))
    trials = Store(tmp_path / "r.db").trials()
    assert len(trials) == len(expand(spec))
    bad = {t.config["model"]: (t.status, t.error) for t in trials if t.status != "ok"}
    assert not bad
    for t in trials:
        assert t.metrics["tokens_per_s"] > 0
        assert t.env.get("torch_version") and t.node and t.ray_trial_id
    frame = out.frame
    assert (frame["tokens_per_s"] > 0).all()
    assert "bert-tiny" in format_summary(frame)


def test_bad_database_path_fails_before_anything_runs(tmp_path, ray_session):
    spec = sweepfile.load("smoke")
    with pytest.raises(ValueError, match="does not exist"):
        run_sweep(spec, options(tmp_path / "missing" / "r.db", "noop"))
    assert rec.OK  # the record module is still importable after a failed run (no side effects)


def test_reuse_workers_runs_trials_in_one_process_and_a_hang_still_times_out(tmp_path, ray_session):
    spec = sweepfile.parse("""
name: reuse
axes:
  batch_size: [8, 16, 32]
fixed: {device: cpu, seed: 0}
timeout_s: 3
cpus_per_trial: 2
""")
    run_sweep(spec, options(tmp_path / "r.db", "chaos", reuse_workers=True, isolate=False))
    trials = Store(tmp_path / "r.db").trials()
    assert [t.status for t in trials] == ["ok"] * 3
    assert len({t.env["pid"] for t in trials}) == 1  # one worker process served all three
    # a hang in a reused worker ends its process (it must not run beside the next trial)
    hang = sweepfile.parse("name: h\nfixed: {device: cpu, seed: 2}\ntimeout_s: 3\n")
    run_sweep(hang, options(tmp_path / "h.db", "chaos", reuse_workers=True, isolate=False))
    (t,) = Store(tmp_path / "h.db").trials()
    assert t.status == "timeout" and "timeout of 3 s" in t.error


def test_a_hang_holding_the_gil_is_killed_from_the_driver(tmp_path, ray_session):
    # the worker's watchdog thread cannot run; the driver kills the actor at timeout + grace
    spec = sweepfile.parse("name: gil\nfixed: {device: cpu, seed: 4}\ntimeout_s: 2\n")
    t0 = time.monotonic()
    run_sweep(spec, options(tmp_path / "r.db", "chaos", kill_grace_s=3.0))
    (t,) = Store(tmp_path / "r.db").trials()
    assert t.status == "timeout" and "was killed" in t.error
    assert time.monotonic() - t0 < 60


def test_ctrl_c_exits_130_says_how_to_resume_and_leaves_nothing_final_it_stopped(
    tmp_path, ray_session
):
    sweep_file = tmp_path / "slow.yaml"
    sweep_file.write_text("""
name: slowc
axes:
  batch_size: [10, 11, 12, 13, 14, 15, 16, 17]
fixed: {device: cpu}
timeout_s: 60
""")
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "sweep", "run", str(sweep_file), "--db", str(db)]
    cmd += ["--address", _gcs_address(ray_session), "--trial-fn", FAKE + "sleep_by_batch"]
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_rows(db, driver, 1)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err.decode()
    assert b"run the same command again to resume" in err
    with Store(db) as s:
        trials = s.trials()
    assert 1 <= len(trials) < 8, "the sweep must have stopped early"
    # a trial that was running when it stopped is a crashed row, which a resume runs again
    assert all(t.status in ("ok", "crashed") for t in trials)
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    with Store(db) as s:
        assert sorted(t.status for t in s.trials()) == ["ok"] * 8
