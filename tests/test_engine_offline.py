"""Engine pieces that need no Ray instance: placement, summary, progress, and the CLI's plan,
status and export on a stored database."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from cluster.placement import place
from sweep.engine.progress import Progress
from sweep.plan import sweepfile
from sweep.plan.config import TrialConfig
from sweep.plan.grid import expand
from sweep.report import summary_table
from sweep.results import record as rec
from sweep.results.frame import trials_frame
from sweep.results.store import Store

FLEET = """
name: fleet
axes: {batch_size: [8, 16]}
fixed: {device: cuda}
gpu_types: [V100, A100]
"""


def test_place_keeps_types_the_autoscaler_can_start():
    spec = sweepfile.parse(FLEET)
    planned = expand(spec)
    # A100 has no node yet (count 0) but the autoscaler can start one: runnable, not missing
    p = place(spec, planned, {"A100": 0}, has_gpu=True)
    assert {t.gpu_type for t, gpu in p.runnable} == {"A100"}
    assert all(gpu for _, gpu in p.runnable)
    assert [r.gpu_type for r in p.unplaceable] == ["V100", "V100"]
    assert all(r.status == "no_gpu_type" and "no V100 GPU" in r.error for r in p.unplaceable)
    # keys of the rows are the planned keys: a later run with the type replaces them
    assert {r.key for r in p.unplaceable} == {t.key for t in planned if t.gpu_type == "V100"}


def test_place_auto_device_follows_the_cluster():
    spec = sweepfile.parse("name: a\naxes: {batch_size: [8]}\nfixed: {device: auto}\n")
    planned = expand(spec)
    assert place(spec, planned, {}, has_gpu=False).runnable[0][1] is False  # CPU trial
    assert place(spec, planned, {"H200": 1}, has_gpu=True).runnable[0][1] is True
    cuda = sweepfile.parse("name: c\nfixed: {device: cuda}\n")
    p = place(cuda, expand(cuda), {}, has_gpu=False)
    assert not p.runnable and p.unplaceable[0].error == "the cluster has no GPU"


def _trial(batch, status="ok", repeat=0, tps=None):
    metrics = {"tokens_per_s": tps, "sequences_per_s": tps / 128} if tps else {}
    return rec.Trial(
        config=TrialConfig(batch_size=batch).to_dict(),
        status=status,
        metrics=metrics,
        repeat=repeat,
        env={"device": "cpu"},
    )


def test_summary_takes_the_median_over_repeats_and_keeps_failures():
    frame = trials_frame(
        [
            _trial(8, tps=100.0),
            _trial(8, repeat=1, tps=300.0),
            _trial(8, repeat=2, tps=200.0),
            _trial(64, status="oom"),
        ]
    )
    table = summary_table(frame)
    assert len(table) == 2
    row8 = table[table.batch_size == 8].iloc[0]
    assert row8["n"] == 3 and row8["tokens_per_s"] == 200.0 and row8["status"] == "ok"
    row64 = table[table.batch_size == 64].iloc[0]
    assert row64["status"] == "oom" and pd.isna(row64["tokens_per_s"])
    # the model-FLOPs MFU beside the counted one (a QLoRA row's counter misses 4-bit work)
    cols = list(table.columns)
    assert cols[cols.index("mfu") + 1] == "mfu_analytic"


def test_summary_says_which_configurations_left_the_gpu_waiting_for_the_host():
    from sweep.report import format_summary

    def busy(batch, util, repeat=0):
        t = _trial(batch, tps=1000.0 * batch, repeat=repeat)
        return t.replace(metrics={**t.metrics, "gpu_util_pct_mean": util})

    frame = trials_frame([busy(8, 20.0), busy(8, 40.0, repeat=1), busy(256, 99.0)])
    table = summary_table(frame)
    assert sorted(table["gpu_busy_pct"]) == [30.0, 99.0]  # the median over repeats
    text = format_summary(frame)
    assert "gpu_busy_pct" in text
    assert "1 configuration(s) kept the GPU busy under 90%" in text
    # CPU trials measure no utilization: no column, no note
    cpu = format_summary(trials_frame([_trial(8, tps=100.0)]))
    assert "gpu_busy_pct" not in cpu and "host-bound" not in cpu


def test_progress_line_counts_and_eta():
    p = Progress(total=10, label="s", enabled=False)
    p.add("ok", ran=True)
    p.add("oom", ran=True)
    p.add("skipped_oom", ran=False)
    p.add("crashed", ran=True)
    p.add("unsupported", ran=True)
    p.already = 2
    line = p.line()
    assert line.startswith(
        "[s] 7/10 trials | ok 1 oom 1 skipped 1 unsupported 1 failed 1 no-gpu-type 0"
    )
    assert "ETA" in line and "2 already stored" in line


def _db(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as s:
        for t in (_trial(8, tps=100.0), _trial(16, tps=150.0), _trial(32, status="oom")):
            s.put(t.replace(sweep="smoke"))
    return db


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "sweep", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_status_export_and_plan(tmp_path):
    db = _db(tmp_path)
    out = _cli("status", "--db", str(db))
    assert out.returncode == 0 and "smoke: 3 (ok 2, oom 1)" in out.stdout

    out = _cli("export", "--db", str(db), "--format", "csv")
    assert out.returncode == 0
    assert out.stdout.splitlines()[0].startswith("key,status,")
    assert len(out.stdout.strip().splitlines()) == 4

    jl = tmp_path / "r.jsonl"
    assert _cli("export", "--db", str(db), "--format", "jsonl", "-o", str(jl)).returncode == 0
    back = [rec.Trial.from_json(line) for line in jl.read_text().splitlines()]
    assert back == Store(db).trials()  # lossless

    pq = tmp_path / "r.parquet"
    assert _cli("export", "--db", str(db), "--format", "parquet", "-o", str(pq)).returncode == 0
    frame = pd.read_parquet(pq)
    assert sorted(frame["batch_size"]) == [8, 16, 32]

    # plan: the smoke trials, and which are already stored (none of these keys: other config)
    out = _cli("plan", "smoke", "--db", str(db), "--no-cluster")
    assert out.returncode == 0, out.stderr
    assert "sweep smoke: 4 trials, 0 already stored" in out.stdout
    assert len([ln for ln in out.stdout.splitlines() if "bert-tiny" in ln]) == 2

    out = _cli("export", "--db", str(tmp_path / "none.db"))
    assert out.returncode == 2 and "does not exist" in out.stderr
    assert not (tmp_path / "none.db").exists()


def test_presets_command_lists_every_preset():
    out = _cli("presets")
    assert out.returncode == 0
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert names == sweepfile.preset_names()
    # a max-seq preset is counted in searches as a max-batch one is (it said "trials")
    units = {line.split()[0]: line.split()[2] for line in out.stdout.splitlines()}
    assert units["atlas"] == units["atlas-batch"] == "searches" and units["seed"] == "trials"


def test_place_a_gpu_type_never_runs_on_the_cpu():
    # device auto (the default) with gpu_types: a cluster without GPUs cannot run an A100 trial;
    # running it on the CPU would store a CPU measurement under the A100 key, and a later run on
    # a cluster with A100s would skip it as already measured.
    spec = sweepfile.parse("name: t\naxes: {batch_size: [8]}\ngpu_types: [A100]\n")
    p = place(spec, expand(spec), {}, has_gpu=False)
    assert not p.runnable
    assert [r.status for r in p.unplaceable] == ["no_gpu_type"]
    assert p.unplaceable[0].gpu_type == "A100"


def test_summary_keeps_configurations_that_differ_in_any_swept_field():
    # two optimizers (or harnesses, modes, ...) at the same batch are two configurations, not
    # two repeats of one: the summary must not take the median across them
    a = _trial(8, tps=100.0)
    b = rec.Trial(
        config=TrialConfig(batch_size=8, optimizer="adamw").to_dict(),
        status="ok",
        metrics={"tokens_per_s": 300.0, "sequences_per_s": 300.0 / 128},
        env={"device": "cpu"},
    )
    table = summary_table(trials_frame([a, b]))
    assert len(table) == 2
    assert sorted(table["tokens_per_s"]) == [100.0, 300.0]
    assert set(table["n"]) == {1}
    assert sorted(table["optimizer"]) == ["adamw", "adamw-fused"]


def test_cpu_and_gpu_trials_of_one_sweep_each_ask_for_their_own_resources():
    # device [cpu, cuda] on a cluster with GPUs: the sweep used to stop with a traceback
    # ("mixes CPU and GPU trials") after Ray had started and rows had been written
    from sweep.engine.worker import resources
    from tests.engine_helpers import make_searcher

    spec = sweepfile.parse("name: mix\naxes: {device: [cpu, cuda, auto]}\n")
    planned = expand(spec)
    p = place(spec, planned, {"H200": 1}, has_gpu=True)
    assert len(p.runnable) == 3
    progress = Progress(total=3, label="mix", enabled=False)
    s = make_searcher(spec, progress=progress, has_gpu=True, types={"H200": 1})
    payloads = [s.suggest(f"t{i}") for i in range(3)]
    gpu = {pl["config"]["device"]: pl["gpu"] for pl in payloads}
    assert gpu == {"cpu": False, "cuda": True, "auto": True}
    bundles = {pl["config"]["device"]: resources(pl).bundles[0] for pl in payloads}
    assert "GPU" not in bundles["cpu"] and bundles["cuda"]["GPU"] == 1.0


def _search(tolerance: float, fits_up_to: int) -> tuple[list[tuple[int, str]], dict[str, int]]:
    """The probes a max-batch search hands out against a model that fits up to ``fits_up_to``."""
    from tests.engine_helpers import make_searcher

    text = "name: mb\nmode: max-batch\nfixed: {device: cpu, batch_size: 64}\n"
    text += f"batch_tolerance: {tolerance}\n"
    spec = sweepfile.parse(text)
    progress = Progress(total=0, label="mb", enabled=False)
    s = make_searcher(spec, progress=progress)
    probes = []
    while (payload := s.suggest(f"t{len(probes)}")) not in (None, s.FINISHED):
        batch = payload["config"]["batch_size"]
        status = "ok" if batch <= fits_up_to else "oom"
        probes.append((batch, status))
        s.on_trial_complete(f"t{len(probes) - 1}", {"status": status})
    return probes, dict(s.answers())


def test_max_batch_search_stops_within_its_tolerance():
    # on the H200, distilroberta-base at seq 512 fits up to 1354: 16 probes to find it exactly
    exact, answer = _search(0, 1354)
    assert len(exact) == 16 and list(answer.values()) == [1354]
    near, answer = _search(0.02, 1354)
    found = list(answer.values())[0]
    smallest_oom = min(b for b, st in near if st == "oom")
    assert found <= 1354 < smallest_oom and smallest_oom - found <= 0.02 * found
    assert len(near) < len(exact) - 3  # the last, finest bisection steps are not run
    # the same prefix: doubling, then bisection, only stopped earlier
    assert near == exact[: len(near)]


def test_batch_tolerance_must_be_a_fraction():
    for bad in ("-0.1", "1", "2%", "true", ".nan"):
        with pytest.raises(ValueError, match="batch_tolerance"):
            sweepfile.parse(f"name: mb\nmode: max-batch\nbatch_tolerance: {bad}\n")


def test_the_engine_stores_its_plan_and_how_many_trials_run(tmp_path):
    # the app's progress view reads them: planned when the sweep starts, running as its trials
    # start and end (Tune's callback hooks, called here as Tune calls them)
    from types import SimpleNamespace

    from sweep.analysis.progress import sweep_progress
    from sweep.analysis.sources import database_plans
    from sweep.engine.callback import StoreCallback

    spec = sweepfile.parse("name: mine\naxes:\n  batch_size: [1, 2, 4]\nfixed: {device: cpu}\n")
    db = tmp_path / "r.db"
    store = Store(db)
    store.put_plan(spec.name, len(expand(spec)))
    cb = StoreCallback(store, spec, Progress(3, "mine", enabled=False), 5.0, None)
    trials = [SimpleNamespace(trial_id=f"t{i}", last_result=None) for i in range(3)]
    for t in trials[:2]:
        cb.on_trial_start(0, trials, t)
    assert database_plans(str(db))["mine"]["running"] == 2
    planned = expand(spec)[0]
    t0 = trials[0]
    done = rec.Trial(config=planned.config.to_dict(), status="ok", sweep="mine")
    t0.last_result = {"record": done.to_json()}
    cb.on_trial_complete(0, trials, t0)
    plan = database_plans(str(db))["mine"]
    assert plan["planned"] == 3 and plan["running"] == 1
    # the view: a sweep file's plan (no preset knows it), one stored, one running now
    frame = trials_frame(store.trials()).assign(dataset="measured")
    view = sweep_progress(frame, plans=database_plans(str(db))).set_index("Sweep")
    assert view.loc["mine", "Planned"] == 3 and view.loc["mine", "Stored"] == 1
    assert view.loc["mine", "Running"] == 1 and view.loc["mine", "Status"] == "running"
    # a count the engine has not touched for an hour (a driver killed outright) is not believed
    from datetime import datetime, timedelta, timezone

    later = datetime.now(timezone.utc) + timedelta(hours=1)
    stale = sweep_progress(frame, now=later, plans=database_plans(str(db))).set_index("Sweep")
    assert stale.loc["mine", "Running"] == 0 and stale.loc["mine", "Status"] != "running"
    # a sweep that has a plan and no row yet is listed; the end of a run sets running to 0
    store.put_plan("next", 54)
    store.set_running("next", 0)
    assert set(sweep_progress(frame, plans=store.plans())["Sweep"]) == {"mine", "next"}
    store.close()


def test_a_database_written_before_plans_reads_as_no_plans(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE plans")
    conn.commit()
    conn.close()
    with Store(db, readonly=True) as store:
        assert store.plans() == {}
    with Store(db) as store:  # a writable open adds the table, rows untouched
        store.put_plan("s", None)
        assert store.plans()["s"]["planned"] is None and len(store) == 0
