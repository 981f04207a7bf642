"""The interference check: a reference configuration alone on the node, then among the sweep's
trials; both rows stored (distinct repeats), the summary says the slowdown."""

from __future__ import annotations

import pytest

from sweep.analysis.interference import interference
from sweep.plan import sweepfile
from sweep.plan.grid import INTERFERENCE_ALONE, INTERFERENCE_FULL, interference_trials
from sweep.results.frame import trials_frame
from sweep.results.record import OK, Trial

SWEEP = """
name: crowd
axes: {batch_size: [3, 4, 5]}
fixed: {device: cpu}
interference: {batch_size: 20, seq_len: 64}  # sleep_by_batch: 2 s, the others run beside it
"""


def test_the_check_plans_two_rows_of_the_reference_that_no_trial_shares():
    spec = sweepfile.parse(SWEEP)
    alone, full = interference_trials(spec)
    assert alone.config == full.config and alone.config.batch_size == 20
    assert alone.config.seq_len == 64 and alone.config.device == "cpu"  # over fixed
    assert (alone.repeat, full.repeat) == (INTERFERENCE_ALONE, INTERFERENCE_FULL)
    assert alone.key != full.key  # two rows
    assert interference_trials(sweepfile.parse("name: x\n")) == []


@pytest.mark.parametrize(
    "block, words",
    [
        ("interference: [bert-tiny]", "interference: expected the reference configuration"),
        ("interference: {modle: bert-tiny}", "interference: unknown trial field(s): modle"),
        ("interference: {batch_size: 0}", "interference: batch_size: must be at least 1"),
        ("mode: max-batch\ninterference: {model: bert-tiny}", "grid mode only"),
    ],
)
def test_bad_interference_blocks_are_one_error(block, words):
    with pytest.raises(ValueError) as err:
        sweepfile.parse(f"name: x\n{block}\n")
    assert words in str(err.value)


def _row(repeat, tokens, start, end, batch=4):
    return Trial(
        config={
            "model": "bert-tiny",
            "seq_len": 64,
            "batch_size": batch,
            "precision": "fp32",
            "device": "cpu",
        },
        status=OK,
        metrics={"tokens_per_s": tokens, "step_time_ms_p50": 1000.0 * batch * 64 / tokens},
        env={"device": "cpu"},
        repeat=repeat,
        sweep="crowd",
        started_at=f"2026-12-01T10:00:{start:02d}+00:00",
        finished_at=f"2026-12-01T10:00:{end:02d}+00:00",
    )


def test_slowdown_and_the_trials_beside_it():
    rows = [
        _row(INTERFERENCE_ALONE, 1200.0, 0, 5),
        _row(INTERFERENCE_FULL, 1000.0, 10, 20),
        _row(0, 900.0, 9, 12, batch=3),  # overlaps the second run
        _row(0, 900.0, 19, 30, batch=5),  # overlaps
        _row(0, 900.0, 0, 4, batch=6),  # ran beside the first (alone) run: not counted
    ]
    t = interference(trials_frame(rows))
    assert len(t) == 1
    assert t["slowdown_pct"][0] == pytest.approx(20.0) and t["beside"][0] == 2


def test_a_sweep_runs_the_reference_alone_then_among_the_others(ray_session, tmp_path):
    from sweep.engine.run import EngineOptions, run_sweep
    from sweep.report import format_summary

    spec = sweepfile.parse(SWEEP)
    db = str(tmp_path / "r.db")
    out = run_sweep(
        spec,
        EngineOptions(
            db=db,
            trial_fn="tests.fake_trials:sleep_by_batch",
            preimport=False,
            retries=0,
            progress=False,
            isolate=False,  # the fake trial needs no fork server (torch's imports)
        ),
    )
    by_repeat = out.frame.groupby("repeat")
    alone = by_repeat.get_group(INTERFERENCE_ALONE).iloc[0]
    full = by_repeat.get_group(INTERFERENCE_FULL).iloc[0]
    others = out.frame[out.frame["repeat"] == 0]
    assert len(others) == 3 and (out.frame["status"] == OK).all()
    # alone: nothing else ran at the time; among others: another trial overlapped it (2 slots)
    assert not (
        (others["wall_start_s"] < alone["wall_end_s"])
        & (others["wall_end_s"] > alone["wall_start_s"])
    ).any()
    assert (
        (others["wall_start_s"] < full["wall_end_s"])
        & (others["wall_end_s"] > full["wall_start_s"])
    ).any()
    text = format_summary(out.frame)
    print(text)
    table, check = text.split("\n\n")[:2]
    assert check.startswith("Interference (the reference configuration alone")
    # the summary table holds the sweep's three trials only, once each (n = 1)
    assert len(table.splitlines()) == 1 + 3 and "seq_len" in table


def test_the_views_leave_out_the_run_among_the_others():
    """The check's second run was slowed on purpose: the answer table (and the app's views,
    through the same filter) must not average it into its configuration's figures."""
    from sweep.analysis.answer import answer
    from sweep.analysis.interference import without_perturbed
    from sweep.analysis.selection import combine

    rows = [_row(INTERFERENCE_ALONE, 1200.0, 0, 5), _row(INTERFERENCE_FULL, 600.0, 10, 20)]
    frame = trials_frame(rows)
    kept = without_perturbed(frame)
    assert kept["repeat"].tolist() == [INTERFERENCE_ALONE]
    c = rows[0].config
    table = answer(combine(frame, {}), c["model"], c["seq_len"]).table
    assert len(table) == 1
    best = [v for k, v in table.iloc[0].items() if "tokens" in str(k).lower()]
    assert 1200.0 in best and 600.0 not in best and 900.0 not in best, table.iloc[0].to_dict()
