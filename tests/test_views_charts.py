"""The Plotly chart specifications (sweep.analysis.charts and charts_tabs), read as data."""

from __future__ import annotations

import json

import pandas as pd

from sweep.analysis import charts, charts_tabs
from sweep.analysis.memory import memory_fit, memory_points
from sweep.analysis.selection import combine, gpu_column
from sweep.analysis.throughput import throughput_points
from sweep.results.frame import trials_frame
from sweep.results.record import Trial


def _row(gpu, batch, status="ok", tokens=None, busy=95.0, mem=None, **metrics):
    m = {}
    if status == "ok":
        m = {
            "tokens_per_s": tokens,
            "sequences_per_s": tokens / 128,
            "gpu_util_pct_mean": busy,
            "step_time_ms_p10": 9.0,
            "step_time_ms_p50": 10.0,
            "step_time_ms_p90": 12.0,
            "step_time_cv": 0.05,
            **metrics,
        }
        if mem is not None:
            m["nvml_peak_used_gib"] = mem
    config = {"model": "m", "seq_len": 128, "precision": "bf16-mixed", "batch_size": batch}
    env = {"gpu_name": gpu} if gpu else {}
    return Trial(config=config, status=status, metrics=m, env=env, gpu_type=gpu and gpu[-4:])


def _points(trials, metric="tokens_per_s", refs=None):
    return throughput_points(combine(trials_frame(trials), refs or {}), metric)


def _traces(fig, name):
    lines = [t for t in fig["data"] if t.get("mode") == "lines+markers"]
    return [t for t in lines if t["name"].startswith(name)]


def test_throughput_chart_rings_a_limit_only_where_a_larger_batch_ran_out_of_memory():
    rows = [_row("NVIDIA A100", b, tokens=100.0 * b, mem=b) for b in (8, 16)]
    rows += [_row("NVIDIA A100", 32, status="oom")]
    rows += [_row("NVIDIA H200", b, tokens=300.0 * b, busy=50.0) for b in (8, 16, 32)]
    fig = charts.throughput(_points(rows), "tokens_per_s", "t")
    json.dumps(fig)  # plain JSON: what the app's chart sends to plotly.js
    rings = [t for t in fig["data"] if t.get("legendgroup") == "fits"]
    assert len(rings) == 1 and rings[0]["x"] == [16]  # the A100's, below its first OOM
    notes = fig["layout"]["annotations"][0]["text"]
    assert "H200: no limit found up to batch 32" in notes
    # the OOM batch sits in the strip below the axis, labelled, never among the values
    (oom,) = [t for t in fig["data"] if t.get("yaxis") == "y2"]
    assert oom["x"] == [32] and oom["y"] == ["A100 OOM"] and oom["marker"]["symbol"] == "x"
    assert fig["layout"]["yaxis2"]["domain"][1] < fig["layout"]["yaxis"]["domain"][0]
    # host-bound points are open markers, with the note saying what that means
    (h200,) = _traces(fig, "H200")
    assert set(h200["marker"]["symbol"]) == {"circle-open"} and "open marker" in notes
    (a100,) = _traces(fig, "A100")
    assert set(a100["marker"]["symbol"]) == {"circle"}
    # p10-p90 bars from the step time's spread: p90 time 12 ms -> rate x 10/12
    assert a100["error_y"]["arrayminus"][0] == round(800 - 800 * 10 / 12, 1)
    assert "GPU busy 95%" in a100["hovertext"][0] and "step CV 5.0%" in a100["hovertext"][0]


def test_reference_and_2020_rows_are_marked_like_everywhere():
    mine = [_row("NVIDIA H200", 8, tokens=800.0)]
    old = trials_frame([_row("Tesla V100", 8, tokens=100.0, forward_ms_host_mean=3.0)])
    old = old.assign(step_time_ms_p50=float("nan"), gpu_util_pct_mean=float("nan"))
    fig = charts.throughput(_points(mine, refs={"seed": old}), "tokens_per_s", "t")
    (v100,) = _traces(fig, "V100")
    assert v100["line"]["dash"] == "dash" and v100["marker"]["symbol"] == ["circle-open"]
    assert "2020 host timers" in v100["hovertext"][0]
    (h200,) = _traces(fig, "H200")
    assert h200["line"]["dash"] == "solid"


def test_many_series_are_capped_and_the_title_says_so():
    rows = [_row(f"NVIDIA G{i:02d}", 8, tokens=100.0 + i) for i in range(20)]
    fig = charts.throughput(_points(rows), "tokens_per_s", "t")
    lines = [t for t in fig["data"] if t.get("mode") == "lines+markers"]
    assert len(lines) == charts.MAX_SERIES
    assert f"{charts.MAX_SERIES} of 20 series shown" in fig["layout"]["title"]["text"]


def test_memory_chart_is_linear_with_a_straight_fit_and_card_lines():
    rows = [_row("NVIDIA H200", b, tokens=100.0 * b, mem=2 + 0.5 * b) for b in (8, 16, 64)]
    pts = memory_points(combine(trials_frame(rows), {}), "nvml_peak_used_gib")
    fig = charts.memory(pts, memory_fit(pts), "nvml_peak_used_gib", "t")
    assert fig["layout"]["xaxis"].get("type", "linear") == "linear"
    (fit,) = [t for t in fig["data"] if t.get("mode") == "lines"]
    assert fit["x"] == [8, 64] and fit["y"] == [6.0, 34.0]  # two ends of one straight line
    cards = [a["text"] for a in fig["layout"]["annotations"] if a["text"].endswith("GB card")]
    assert cards == ["16 GB card", "24 GB card", "40 GB card"]  # up to the data's top, 39 GiB


def test_a_row_without_a_gpu_reading_joins_its_gpu_not_a_phantom_series():
    rows = [_row("NVIDIA A100", 8, tokens=800.0), _row("NVIDIA A100", 16, status="skipped_oom")]
    rows[1] = rows[1].replace(env={}, gpu_type="A100")
    frame = combine(trials_frame(rows), {})
    assert gpu_column(frame).tolist() == ["NVIDIA A100", "NVIDIA A100"]
    pts = throughput_points(frame, "tokens_per_s")
    assert pts["series"].nunique() == 1 and pts["oom"].tolist() == [False, True]
    local = combine(trials_frame([rows[0], rows[1].replace(gpu_type=None)]), {})
    assert gpu_column(local).nunique() == 1  # one GPU in the frame: that one


def test_empty_selections_say_why():
    empty = pd.DataFrame(columns=["series", "batch_size", "oom"])
    fig = charts.throughput(empty, "tokens_per_s", "t")
    assert fig["data"] == [] and "No rows match" in fig["layout"]["annotations"][0]["text"]
    cost = pd.DataFrame(columns=["series", "usd_per_million_tokens"])
    assert "No priced GPU" in charts_tabs.cost(cost, "t")["layout"]["annotations"][0]["text"]
