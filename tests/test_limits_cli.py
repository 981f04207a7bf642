"""The memory model as a feature: the summary's limits section (sweep/report.py), the export's
limits table and ``--capacities`` (sweep/report.py, sweep/cli.py). No Ray, no torch."""

from __future__ import annotations

import json

import pytest

from sweep import cli
from sweep.report import format_summary, limits_table
from sweep.results.frame import trials_frame
from sweep.results.record import OK, OOM, Trial
from sweep.results.store import Store


def _row(model, batch, status=OK, peak=None, reserved=None, sweep="s"):
    metrics = {}
    if peak is not None:
        metrics["nvml_peak_used_gib"] = peak
    if reserved is not None:
        metrics["peak_reserved_gib"] = reserved
    config = {"model": model, "batch_size": batch, "seq_len": 128, "device": "cuda"}
    return Trial(config=config, status=status, metrics=metrics, env={"gpu_name": "G"}, sweep=sweep)


ROWS = [
    # a: 2 GiB + 0.5 GiB per sequence (NVML); b: one ok batch; c: reserved peaks only
    _row("a", 8, peak=6.0),
    _row("a", 16, peak=10.0),
    _row("a", 32, status=OOM),
    _row("b", 8, peak=5.0),
    _row("b", 16, status=OOM),
    _row("c", 4, reserved=3.0),
    _row("c", 8, reserved=5.0),
]


def test_limits_table_one_row_per_group_with_two_ok_batches():
    table = limits_table(trials_frame(ROWS), (16, 40))
    assert list(table["model"]) == ["a", "c"]  # b has one ok batch: no prediction
    assert list(table.columns[:3]) == ["model", "seq_len", "gpu"]
    a, c = table.iloc[0], table.iloc[1]
    # a: (16 * 0.98 - 2) / 0.5 = 27.36, (40 * 0.98 - 2) / 0.5 = 74.4
    assert (a["16GB"], a["40GB"], a["points"], a["up_to"], a["peak"]) == (27, 74, 2, 16, "nvml")
    # c: 1 GiB + 0.5 per sequence, from torch's reserved peak
    assert (c["16GB"], c["peak"]) == (29, "reserved")


def test_limits_table_shows_a_max_batch_answer_beside_the_predictions():
    answer = _row("a", 16, peak=10.0)
    answer = answer.replace(metrics={**answer.metrics, "max_batch_size": 16})
    table = limits_table(trials_frame([ROWS[0], answer, *ROWS[2:]]), (16,))
    assert list(table["max_batch"]) == ["16", "-"]  # a searched; c was not
    assert "max_batch" not in limits_table(trials_frame(ROWS), (16,)).columns


def test_summary_shows_the_limits_section_only_with_a_prediction():
    text = format_summary(trials_frame(ROWS), (16, 40))
    assert "predicted largest batch per card" in text and "40GB" in text
    one = format_summary(trials_frame([_row("b", 8, peak=5.0)]))
    assert "predicted largest batch" not in one


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "r.db"
    with Store(path) as store:
        for t in ROWS:
            store.put(t)
    return str(path)


def test_export_limits_to_stdout_and_beside_the_trials(db, tmp_path, capsys):
    assert cli.main(["export", "--db", db, "--limits", "--capacities", "16,40"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("model,") and "predicted_max_batch" in lines[0]
    assert len(lines) == 1 + 2 * 2  # groups a and c, two card sizes each

    out = tmp_path / "all.jsonl"
    assert cli.main(["export", "--db", db, "--format", "jsonl", "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == len(ROWS)  # the trials, unchanged
    limits = [json.loads(x) for x in (tmp_path / "all.limits.jsonl").read_text().splitlines()]
    assert len(limits) == 2 * 8  # the eight default card sizes
    assert {r["model"] for r in limits} == {"a", "c"}
    assert "predicted limits (2 groups x 8 card sizes)" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["16,abc", "0", "-1", "nan", ","])
def test_bad_capacities_are_one_error_line(db, capsys, bad):
    assert cli.main(["export", "--db", db, "--capacities", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --capacities: ") and err.count("\n") == 1
    # run checks them before anything starts (no Ray, no database written)
    assert cli.main(["run", "smoke", "--db", db, "--capacities", bad]) == 2
    assert capsys.readouterr().err.startswith("error: --capacities: ")


def test_the_summary_converter_reads_the_table_above_the_limits(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "convert_summary_tables.py"
    spec = importlib.util.spec_from_file_location("convert_summary_tables", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "s.out"
    out.write_text(format_summary(trials_frame(ROWS)) + "\n")
    table = mod.read_table(str(out))
    assert len(table) == len(ROWS) and "16GB" not in table.columns
