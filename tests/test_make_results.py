"""scripts/make_results.py on a small database built from the recorded fixture (no GPU).

The fixture's bert-base-uncased rows are renamed roberta-base so that they meet the 2020 reference
rows (which are RoBERTa models) at matching (model, seq_len, batch_size).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from sweep.analysis.pairs import pair_ratio
from sweep.analysis.report_rows import (
    Failure,
    load,
    measured,
    record_order,
    reference_frame,
    reference_records,
    results_frame,
    write_reference,
)
from sweep.analysis.report_tables import repeat_stats, seed_comparison, status_counts
from sweep.results.frame import read_jsonl
from sweep.results.record import ADDED_FIELDS, MEASURED, REFERENCE, Trial
from sweep.results.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "make_results.py")
FIXTURE = os.path.join(ROOT, "tests", "data", "trials_small.jsonl")
SEED_REF = os.path.join(ROOT, "ui", "data", "reference_seed_v100_a100.jsonl")


def _script():
    spec = importlib.util.spec_from_file_location("make_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mr = _script()


def _fixture_trials() -> list[Trial]:
    trials, problems = read_jsonl(FIXTURE)
    assert not problems
    out = []
    for t in trials:
        if t.config["model"] == "bert-base-uncased":
            t = t.replace(config=t.config | {"model": "roberta-base"}, key="")
        out.append(t)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The database, the script run on it once, and what it wrote."""
    tmp = tmp_path_factory.mktemp("results")
    db = tmp / "results-fixture.db"
    trials = _fixture_trials()
    with Store(db) as store:
        for t in trials:
            store.put(t)
        # One row of someone else's reference data in the same file: never shipped.
        store.put(trials[0].replace(source=REFERENCE, provenance="elsewhere", key="ref-x"))
    out, docs = tmp / "reference_h200.jsonl", tmp / "docs"
    messages: list[str] = []
    files = mr.run([str(db)], str(out), str(docs), SEED_REF, print_fn=messages.append)
    return dict(db=db, trials=trials, out=out, docs=docs, files=files, messages=messages)


def test_reference_file_round_trips_with_metrics_unchanged(built):
    lines = built["out"].read_text(encoding="utf-8").splitlines()
    refs = [Trial.from_json(line) for line in lines]
    by_key = {t.key: t for t in built["trials"]}
    assert len(refs) == len(by_key)  # every measured row, and the foreign reference row left out
    assert {t.key for t in refs} == set(by_key)  # keys unchanged
    for r in refs:
        m = by_key[r.key]
        assert m.source == MEASURED and r.source == REFERENCE
        assert r.metrics == m.metrics  # never altered, never filled in
        assert (r.config, r.status, r.env, r.repeat) == (m.config, m.status, m.env, m.repeat)
        assert r.provenance.startswith("Measured by transformers-sweep on ")
    ok = next(r for r in refs if r.status == "ok" and r.env.get("gpu_name") == "NVIDIA H200")
    for needle in (
        "NVIDIA H200",
        "driver 570.133.20",
        "torch 2.11.0+cu128",
        "transformers 5.17.0",
        "2026-05-02",
        "git commit 0e4a542",
        "CUDA events",
        "warm-up steps excluded",
        f"median of {ok.metrics['steps_measured']} measured steps",
    ):
        assert needle in ok.provenance
    # Deterministic: sorted, and the same input writes the same bytes.
    assert [record_order(t) for t in refs] == sorted(record_order(t) for t in refs)
    again = built["out"].parent / "again.jsonl"
    write_reference(reference_records(measured(load([str(built["db"])]))[0]), again)
    assert again.read_bytes() == built["out"].read_bytes()


def test_speedup_equals_hand_computed_ratio(built):
    meas = results_frame(measured(load([str(built["db"])]))[0])
    ref = reference_frame(SEED_REF)
    wide, ratios = seed_comparison(meas, ref)
    assert "H200 bf16 / A100 2020" in ratios and "H200 bf16 / V100 2020" in ratios
    # By hand: the H200 fixture row and the 2020 A100 row at roberta-base, seq 128, batch 32.
    h200 = next(
        t
        for t in built["trials"]
        if t.gpu_type == "H200"
        and t.status == "ok"
        and t.config["model"] == "roberta-base"
        and t.config["seq_len"] == 128
        and t.config["batch_size"] == 32
        and not t.config["compile"]
    )
    ref_rows = [json.loads(line) for line in open(SEED_REF, encoding="utf-8")]
    a100 = next(
        r
        for r in ref_rows
        if r["gpu_type"] == "A100"
        and r["config"]["model"] == "roberta-base"
        and r["config"]["seq_len"] == 128
        and r["config"]["batch_size"] == 32
    )
    expected = h200.metrics["tokens_per_s"] / a100["metrics"]["tokens_per_s"]
    row = wide[(wide.model == "roberta-base") & (wide.seq_len == 128) & (wide.batch_size == 32)]
    assert len(row) == 1
    assert row["H200 bf16"].iloc[0] == h200.metrics["tokens_per_s"]
    assert row["H200 bf16 / A100 2020"].iloc[0] == pytest.approx(expected, rel=1e-12)
    # An out-of-memory cell says so, and has no ratio.
    oom = wide[(wide.seq_len == 512) & (wide.batch_size == 512)]
    assert oom["H200 bf16"].iloc[0] == "OOM"
    # The table in tables.md shows the same ratio.
    md = (built["docs"] / "tables.md").read_text(encoding="utf-8")
    assert "| roberta-base | 128 | 32 | " in md
    line = next(x for x in md.splitlines() if x.startswith("| roberta-base | 128 | 32 | "))
    assert f"{expected:.2f}x" in line


def test_tables_and_figures_written(built):
    docs = built["docs"]
    md = (docs / "tables.md").read_text(encoding="utf-8")
    for heading in ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)", "(g)", "(h)"):
        assert f"## {heading}" in md
    assert md.count("GPU: ") >= 8 and "Units" in md
    for name in ("seed_throughput.png", "seed_speedup.png", "memory.png", "time_breakdown.png"):
        assert (docs / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in md
    # Compile ratio from the same run, at the same batch: by hand for batch 64.
    meas = results_frame(measured(load([str(built["db"])]))[0])
    comp = pair_ratio(meas, "compile", True, False)
    on = [
        t.metrics["tokens_per_s"]
        for t in built["trials"]
        if t.gpu_type == "H200" and t.config["compile"] and t.config["batch_size"] == 64
    ]
    off = sorted(
        t.metrics["tokens_per_s"]
        for t in built["trials"]
        if t.gpu_type == "H200"
        and t.status == "ok"
        and not t.config["compile"]
        and t.config["model"] == "roberta-base"
        and t.config["seq_len"] == 128
        and t.config["batch_size"] == 64
    )
    assert len(on) == 1 and len(off) == 3  # three repeats: their median is the middle one
    row = comp[comp.batch_size == 64]
    assert row["ratio"].iloc[0] == pytest.approx(on[0] / off[1])
    # Repeats: three of H200 roberta-base 128 x 64; the CV across them by hand.
    rep = repeat_stats(meas)
    r = rep[(rep.gpu == "H200") & (rep.batch_size == 64)].iloc[0]
    p50 = [
        t.metrics["step_time_ms_p50"]
        for t in built["trials"]
        if t.gpu_type == "H200"
        and t.status == "ok"
        and not t.config["compile"]
        and t.config["seq_len"] == 128
        and t.config["batch_size"] == 64
        and t.config["model"] == "roberta-base"
    ]
    mean = sum(p50) / 3
    std = (sum((x - mean) ** 2 for x in p50) / 2) ** 0.5
    assert r["repeats"] == 3
    assert r["cv_across_repeats_pct"] == pytest.approx(100 * std / mean, abs=1e-3)
    # Status counts add up to the rows.
    counts = status_counts(meas)
    assert counts["total"].sum() == len(built["trials"])
    assert counts["skipped_oom"].sum() == sum(t.status == "skipped_oom" for t in built["trials"])


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_missing_database_is_one_clear_error(tmp_path):
    missing = tmp_path / "nope.db"
    out, docs = tmp_path / "ref.jsonl", tmp_path / "docs"
    proc = _cli(missing, "--out", out, "--docs", docs, cwd=tmp_path)
    assert proc.returncode == 2
    assert str(missing) in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and not docs.exists()


def test_no_measured_rows_writes_nothing(tmp_path):
    db = tmp_path / "refs-only.db"
    with Store(db) as store:
        for t in _fixture_trials()[:3]:
            store.put(t.replace(source=REFERENCE, provenance="someone else's"))
    empty = tmp_path / "empty.db"
    Store(empty).close()
    out, docs = tmp_path / "ref.jsonl", tmp_path / "docs"
    for path in (db, empty):
        proc = _cli(path, "--out", out, "--docs", docs, cwd=tmp_path)
        assert proc.returncode == 1
        assert "no measured rows" in proc.stderr and "nothing written" in proc.stderr
        assert not out.exists() and not docs.exists()


def _ok(model="roberta-base", harness="native", tokens=1000.0, sweep="s", repeat=0, **cfg):
    config = {
        "model": model,
        "batch_size": 8,
        "seq_len": 128,
        "precision": "bf16-mixed",
        "device": "cuda",
        "harness": harness,
        **cfg,
    }
    return Trial(
        config=config,
        status="ok",
        sweep=sweep,
        repeat=repeat,
        metrics={"tokens_per_s": tokens, "sequences_per_s": tokens / 128},
        env={"gpu_name": "NVIDIA H200"},
    )


def test_harness_ratio_pairs_rows_of_one_sweep_only():
    # The harness sweep ran native and lightning side by side; the seed sweep's native row of
    # the same configuration (another hour, another process) must not become the baseline.
    rows = [
        ("a.db", _ok(harness="lightning", tokens=900.0, sweep="harness")),
        ("a.db", _ok(harness="native", tokens=1000.0, sweep="harness")),
        ("a.db", _ok(harness="native", tokens=2000.0, sweep="seed")),
    ]
    ratio = pair_ratio(results_frame(rows), "harness", "lightning", "native")
    assert len(ratio) == 1
    assert ratio["ratio"].iloc[0] == pytest.approx(0.9)


def test_jsonl_inputs_are_read_and_a_carried_provenance_is_kept(tmp_path):
    src = tmp_path / "records.jsonl"
    rows = [_ok(tokens=1000.0), _ok(tokens=1100.0, repeat=1).replace(provenance="rebuilt from X")]
    src.write_text("".join(t.to_json() + "\n" for t in rows), encoding="utf-8")
    loaded = load([str(src)])
    # read back as written, with the fields added since schema 1 at their default (same key)
    assert [t for _, t in loaded] == [t.replace(config={**ADDED_FIELDS, **t.config}) for t in rows]
    assert [t.key for _, t in loaded] == [t.key for t in rows]
    refs = {t.repeat: t for t in reference_records(loaded)}
    assert refs[1].provenance == "rebuilt from X"  # said why the row is partial: kept
    assert refs[0].provenance.startswith("Measured by transformers-sweep on NVIDIA H200")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(Failure, match="bad.jsonl"):
        load([str(bad)])


def test_graph_against_eager_pairs_presets_and_reads_busy_from_the_profiled_step():
    # seed and seed-graph are two presets (two sweeps) into one database: paired across sweeps
    # on the same configuration, batch and GPU; busy from launch_bound_pct where profiled
    from sweep.analysis.pairs import graph_against_eager
    from sweep.report import format_graph_against_eager
    from sweep.results.frame import trials_frame

    def row(graph, tokens, launch, batch=8, sweep=None, util=None):
        t = _ok(tokens=tokens, sweep=sweep or ("seed-graph" if graph else "seed"), batch_size=batch)
        t = t.replace(config={**t.config, "cuda_graph": graph})
        return t.replace(
            metrics={**t.metrics, "launch_bound_pct": launch, "gpu_util_pct_mean": util}
        )

    rows = [
        ("a.db", row(False, 1000.0, 88.0)),
        ("a.db", row(True, 5470.0, 9.5)),
        ("a.db", row(False, 9000.0, None, batch=64, util=97.0)),  # not profiled: NVML's
        ("a.db", row(True, 9100.0, 2.0, batch=64)),
        ("a.db", row(False, 3000.0, 50.0, batch=16)),  # no graphed twin: no pair
        ("b.db", row(False, 2000.0, 50.0)),  # eager only, elsewhere: neither pair nor busy
    ]
    table = graph_against_eager(results_frame(rows))
    assert table["batch_size"].tolist() == [8, 64]
    b8 = table.iloc[0]
    assert b8["graph/eager"] == pytest.approx(5.47)
    assert (b8["eager busy %"], b8["graph busy %"]) == (pytest.approx(12.0), pytest.approx(90.5))
    assert table.iloc[1]["eager busy %"] == pytest.approx(97.0)
    # the host-bound eager step is marked (its rate is the CPU's), not left to the busy figure
    assert table["eager step"].tolist() == ["host-bound", "GPU-bound"]
    # another database is not side by side
    other = [("a.db", row(False, 1000.0, 88.0)), ("b.db", row(True, 5470.0, 9.5))]
    assert graph_against_eager(results_frame(other)).empty
    # the summary prints it, from a plain trials frame (no db or probe columns)
    text = format_graph_against_eager(trials_frame([t for db, t in rows if db == "a.db"]))
    assert "CUDA graph against eager" in text and "5.47x" in text and "1.01x" in text
    assert (
        format_graph_against_eager(trials_frame([t for _, t in rows if not t.config["cuda_graph"]]))
        == ""
    )


def test_the_2020_method_gets_its_own_column_beside_the_2020_rows_and_no_other_table():
    """seed-2020 rows (fp16, eager attention, Lightning) are the like-for-like column against the
    2020 A100/V100 rows; a seed row at the same batch keeps its own column, and the 2020-method
    row enters no memory table (its memory is of another method)."""
    from sweep.analysis.report_tables import memory_table

    cfg = {
        "attention": "eager",
        "optimizer": "adamw-fused",
        "compile": False,
        "task": "seq-cls",
        "mode": "train",
        "gradient_checkpointing": False,
        "batch_size": 32,
    }
    old_way = _ok(harness="lightning", tokens=80000.0, sweep="seed-2020", **cfg)
    old_way = old_way.replace(
        config={**old_way.config, "precision": "fp16-mixed"},
        metrics={**old_way.metrics, "peak_allocated_gib": 9.0},
    )
    today = _ok(tokens=110000.0, sweep="seed", **{**cfg, "attention": "sdpa"})
    today = today.replace(metrics={**today.metrics, "peak_allocated_gib": 3.0})
    meas = results_frame([("a.db", old_way), ("a.db", today)])
    ref = reference_frame(SEED_REF)
    wide, ratios = seed_comparison(meas, ref)
    assert "H200 fp16 Lightning eager / A100 2020" in ratios and "H200 bf16 / A100 2020" in ratios
    row = wide[(wide.model == "roberta-base") & (wide.seq_len == 128) & (wide.batch_size == 32)]
    a100 = next(
        json.loads(line)
        for line in open(SEED_REF, encoding="utf-8")
        if '"A100"' in line
        and json.loads(line)["config"]["model"] == "roberta-base"
        and json.loads(line)["config"]["seq_len"] == 128
        and json.loads(line)["config"]["batch_size"] == 32
    )
    assert row["H200 fp16 Lightning eager"].iloc[0] == 80000.0
    assert row["H200 bf16"].iloc[0] == 110000.0
    expected = 80000.0 / a100["metrics"]["tokens_per_s"]
    assert row["H200 fp16 Lightning eager / A100 2020"].iloc[0] == pytest.approx(expected)
    mem = memory_table(meas, "peak_allocated_gib")
    assert set(mem["precision"]) == {"bf16-mixed"}  # the fp16 2020-method row is not in it
