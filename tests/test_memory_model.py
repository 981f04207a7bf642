"""The memory model (sweep/results/memory_model.py): its arithmetic on invented numbers, and its
predictions against the limits measured on the H200 (benchmarks/results/2026-11-29-h200-run3)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sweep.results.frame import read_jsonl, trials_frame
from sweep.results.memory_model import (
    CAPACITIES_GB,
    GIB,
    MARGIN,
    MemoryFit,
    fit_memory,
    fit_rows,
    parse_capacities,
    predicted_limits,
)
from sweep.results.record import OK, OOM, Trial

H200_RUN = Path(__file__).parents[1] / "benchmarks/results/2026-11-29-h200-run3/records.jsonl"
H200_ANSWERS = {
    "distilroberta-base": 1354,
    "roberta-base": 704,
    "bert-base-uncased": 705,
    "gpt2": 326,
    "bert-large-uncased": 265,
    "roberta-large": 264,
}


def test_fit_recovers_an_invented_line_and_its_limits():
    # 2 GiB fixed + 0.5 GiB per sequence: exact points, zero error
    fit = fit_memory([(b, (2 + 0.5 * b) * GIB) for b in (8, 16, 32)])
    assert fit.slope_bytes_per_seq == pytest.approx(0.5 * GIB)
    assert fit.intercept_bytes == pytest.approx(2 * GIB)
    assert fit.max_error_pct == pytest.approx(0.0, abs=1e-9)
    assert (fit.n_points, fit.measured_up_to) == (3, 32)
    # 40 GiB card, no margin: (40 - 2) / 0.5 = 76 sequences; 2% margin: (39.2 - 2) / 0.5 = 74.4
    assert fit.largest_batch(40 * GIB, margin=0.0) == 76
    assert fit.largest_batch(40 * GIB) == 74
    assert fit.largest_batch(1 * GIB) == 0  # not even the fixed part fits


def test_fit_error_is_the_largest_relative_miss():
    # points 10 and 12 GiB at batch 1 and 2 plus 13 GiB at 3: least squares 9.333 + 1.5 b
    fit = fit_memory([(1, 10 * GIB), (2, 12 * GIB), (3, 13 * GIB)])
    assert fit.slope_bytes_per_seq == pytest.approx(1.5 * GIB)
    points = ((1, 10), (2, 12), (3, 13))
    misses = [abs(fit.predict_bytes(b) - p * GIB) / (p * GIB) for b, p in points]
    assert fit.max_error_pct == pytest.approx(100 * max(misses))


def test_no_prediction_without_two_batches_or_a_growing_line():
    assert fit_memory([(8, 3 * GIB)]) is None
    assert fit_memory([(8, 3 * GIB), (8, 3.1 * GIB)]) is None  # repeats of one batch: no slope
    assert fit_memory([(8, 3 * GIB), (16, float("nan"))]) is None
    flat = MemoryFit(0.0, 3 * GIB, 2, 16, 0.0)
    assert flat.largest_batch(80 * GIB) is None


def test_fit_rows_takes_one_source_for_every_point():
    rows = [
        {"batch_size": 8, "nvml_peak_used_gib": 6.0, "peak_reserved_gib": 5.0},
        {"batch_size": 16, "nvml_peak_used_gib": None, "peak_reserved_gib": 9.0},
    ]
    fit, source = fit_rows(rows)
    assert source == "peak_reserved_gib"  # NVML is missing on one row: the other source, whole
    assert fit.slope_bytes_per_seq == pytest.approx(0.5 * GIB)
    assert fit_rows([{"batch_size": 8}, {"batch_size": 16}]) == (None, None)


@pytest.mark.parametrize("bad", ["", "16,abc", "0", "-40", "nan", "inf", [], ["80", None]])
def test_parse_capacities_refuses_what_is_not_a_positive_size(bad):
    with pytest.raises(ValueError, match="capacities"):
        parse_capacities(bad)


def test_parse_capacities_reads_lists_and_strings():
    assert parse_capacities("16, 40,80") == (16.0, 40.0, 80.0)
    assert parse_capacities([24, "94.5"]) == (24.0, 94.5)


def _row(model, batch, status=OK, peak=None, gpu="NVIDIA H200"):
    metrics = {"nvml_peak_used_gib": peak} if peak is not None else {}
    config = {"model": model, "batch_size": batch, "seq_len": 128, "device": "cuda"}
    return Trial(config=config, status=status, metrics=metrics, env={"gpu_name": gpu})


def test_predicted_limits_one_row_per_card_and_none_for_a_single_batch():
    frame = trials_frame(
        [
            _row("a", 8, peak=6.0),
            _row("a", 16, peak=10.0),
            _row("a", 32, status=OOM),
            _row("b", 8, peak=5.0),  # one ok batch: no prediction
            _row("b", 16, status=OOM),
        ]
    )
    lim = predicted_limits(frame, capacities_gb=(16, 40))
    assert set(lim["model"]) == {"a"}
    assert list(lim["capacity_gb"]) == [16, 40]
    # 2 GiB + 0.5 GiB per sequence; 16 GiB card: (15.68 - 2) / 0.5 = 27.36
    assert list(lim["predicted_max_batch"]) == [27, 74]
    assert set(lim["peak_source"]) == {"nvml_peak_used_gib"}
    assert lim["fit_points"].tolist() == [2, 2]
    assert predicted_limits(trials_frame([])).empty


@pytest.fixture(scope="module")
def h200_max_batch():
    trials, problems = read_jsonl(str(H200_RUN))
    assert not problems
    frame = trials_frame(trials)
    return frame[frame["sweep"].str.startswith("h200-max-batch")]


def test_h200_predictions_never_above_the_measured_limit_and_within_two_percent(h200_max_batch):
    """The six max-batch models at seq 512: the line through every ok probe predicts the card's
    limit within 2% without a margin, and never above it with MARGIN."""
    total_gib = h200_max_batch["device_total_gib"].dropna().iloc[0]
    for model, g in h200_max_batch.groupby("model"):
        ok = g[g["status"] == OK]
        answer = int(ok["batch_size"].max())
        assert answer == H200_ANSWERS[model]
        fit, source = fit_rows(ok.to_dict("records"))
        assert source == "nvml_peak_used_gib"
        bare = fit.largest_batch(total_gib * GIB, margin=0.0)
        assert abs(bare - answer) <= 0.02 * answer, (model, bare, answer)
        assert fit.largest_batch(total_gib * GIB, MARGIN) <= answer, model
        # the small batches alone (64-256, what a sweep often has) stay below the limit too
        small = ok[ok["batch_size"] <= 256].to_dict("records")
        assert fit_rows(small)[0].largest_batch(total_gib * GIB, MARGIN) <= answer, model


def test_h200_predicted_limits_table_covers_every_card(h200_max_batch):
    lim = predicted_limits(h200_max_batch)
    assert set(lim["model"]) == set(H200_ANSWERS)
    assert sorted(set(lim["capacity_gb"])) == sorted(CAPACITIES_GB)
    h200 = lim[lim["capacity_gb"] == 141]  # the H200 as sold: 141 GB, 139.8 GiB to programs
    for _, r in h200.iterrows():
        assert r["predicted_max_batch"] <= H200_ANSWERS[r["model"]]
    # a bigger card never fits a smaller batch
    for _, g in lim.groupby("model"):
        batches = g.sort_values("capacity_gb")["predicted_max_batch"].tolist()
        assert batches == sorted(batches) and not any(math.isnan(b) for b in batches)


RUN2 = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "2026-12-02-h200-run2"


def test_h200_capped_cards_the_products_model_against_what_really_fitted(capsys):
    """2026-12-02: the card capped to 40 and 80 GB (set_per_process_memory_fraction, the CUDA
    context apart), the largest batch found by real trials; the product's line through that day's
    max-batch probes predicts each within 2%, and never above once the margin is kept."""
    from benchmarks.memory_model_against import main

    check = str(RUN2 / "memory-check.json")
    assert main(["--trials", str(RUN2 / "max-batch.jsonl"), "--check", check]) == 0
    out = capsys.readouterr().out
    assert "12 of 12 within 2%" in out and "12 of 12 at or under" in out
    assert "NVIDIA H200" in out  # the trials' machine is printed


def test_memory_model_against_fails_a_prediction_above_the_limit(tmp_path, capsys):
    from benchmarks.memory_model_against import compare, main, measured_limits

    trials = tmp_path / "t.jsonl"
    # 2 GiB + 0.5 GiB per sequence at seq 128: a 16 GB card predicts 28 bare, 27 with the margin
    rows = [_row("a", 8, peak=6.0), _row("a", 16, peak=10.0), _row("b", 8, peak=5.0)]
    trials.write_text("".join(r.to_json() + "\n" for r in rows))
    check = {"results": [{"model": "a", "rows": [{"cap_gb": 16, "measured": 27}]}]}
    frame = trials_frame(rows)
    [r] = compare(frame, measured_limits(check), seq_len=128)
    assert (r["predicted"], r["predicted_margin"], r["margin_ok"]) == (28, 27, True)
    assert r["error_pct"] == pytest.approx(3.7)  # 28 against 27: outside 2%
    (tmp_path / "c.json").write_text(json.dumps(check))
    args = ["--trials", str(trials), "--check", str(tmp_path / "c.json"), "--seq-len", "128"]
    assert main(args) == 1
    assert "0 of 1 within 2%" in capsys.readouterr().out
    # a limit below the margined prediction fails the margin too
    check["results"][0]["rows"][0]["measured"] = 26
    [r] = compare(frame, measured_limits(check), seq_len=128)
    assert not r["margin_ok"]
    # a model the trials do not have (b has one ok batch: no fit) is not compared: exit 2
    (tmp_path / "c.json").write_text(
        json.dumps({"results": [{"model": "b", "rows": check["results"][0]["rows"]}]})
    )
    assert main(args) == 2
    assert "no model of the check" in capsys.readouterr().err


def test_fragmented_out_of_memory_is_told_from_capacity_on_the_h100_messages():
    import json
    import math

    import pandas as pd

    from sweep.results.memory_model import fragmented, oom_figures

    assert fragmented(23.00, 23.29) and not fragmented(23.85, 1.13)
    got = fragmented(pd.Series([23.0, 23.0, math.nan]), pd.Series([23.29, math.nan, 1.0]))
    assert got.tolist() == [True, False, False]
    # the H100 atlas's LoRA + checkpointing failures (2026-12-07): the capped process's at
    # 48,128-49,664 tokens were fragmentation, every failure from 49,920 up was capacity
    path = "benchmarks/results/2026-12-07-h100/atlas-1b.jsonl"
    seen = {}
    for line in open(path):
        r = json.loads(line)
        c, m = r["config"], oom_figures(r.get("error") or "")  # stored before the parse existed
        if r["status"] == "oom" and c["finetune"] == "lora" and c["gradient_checkpointing"]:
            if c["capacity_gb"] in (80, None) and "oom_cached_gib" in m:
                seen[c["seq_len"], c["capacity_gb"]] = fragmented(
                    m["oom_request_gib"], m["oom_cached_gib"]
                )
    assert {k for k, v in seen.items() if v} == {(48128, 80), (49152, 80), (49664, 80)}
    assert len(seen) >= 6 and all(not v for (s, _), v in seen.items() if s >= 49920)
