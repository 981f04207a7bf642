"""The view functions of the web app on a recorded set of trials (no Gradio)."""

from __future__ import annotations

import io
import math
import os
import shlex
import subprocess
import sys

import pandas as pd
import pytest

from sweep.analysis.cost import (
    DEFAULT_PRICES,
    PRICE_COLUMNS,
    cheapest,
    cost_table,
    parse_prices,
    price_for,
)
from sweep.analysis.efficiency import EFFICIENCY_METRICS, efficiency
from sweep.analysis.memory import memory_fit, memory_metrics_present, memory_points
from sweep.analysis.pairs import gpu_labels, speedup
from sweep.analysis.phases import time_breakdown
from sweep.analysis.selection import ANY, combine, default_filters, select, series_labels
from sweep.analysis.sources import DATA_DIR, load_references
from sweep.analysis.table import environment, status_counts_table
from sweep.analysis.table import table as results_table
from sweep.analysis.throughput import fit_summary, throughput_points
from sweep.plan.config import TrialConfig
from sweep.plan.flags import reproduce_command
from sweep.results.frame import read_jsonl
from sweep.results.memory_model import MARGIN
from sweep.results.record import SCHEMA_VERSION

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "data", "trials_small.jsonl")
REPO = os.path.dirname(HERE)


@pytest.fixture(scope="module")
def measured() -> pd.DataFrame:
    from sweep.results.frame import trials_frame

    trials, problems = read_jsonl(FIXTURE)
    assert problems == []
    return trials_frame(trials)


@pytest.fixture(scope="module")
def refs() -> dict[str, pd.DataFrame]:
    frames, messages = load_references()
    assert messages == []
    return frames


@pytest.fixture(scope="module")
def frame(measured, refs) -> pd.DataFrame:
    # The recorded fixture beside the 2020 rows, whose content is fixed: the shipped H200 rows
    # grow with every GPU run (and now share configurations with the fixture), so the tests
    # that need them combine them themselves.
    return combine(measured, {"seed_v100_a100": refs["seed_v100_a100"]})


def bert128(frame, **extra):
    return select(
        frame,
        {
            "model": "bert-base-uncased",
            "seq_len": "128",
            "precision": "bf16-mixed",
            "compile": "False",
            **extra,
        },
    )


# -- reference rows --------------------------------------------------------------------------


def test_reference_rows_keep_every_config_and_their_caveats(refs):
    ref = refs["seed_v100_a100"]
    # 108 configurations, 39 without metrics (README of seed-results): none may vanish.
    assert len(ref) == 108
    assert (ref["status"] == "ok").sum() == 69 and (ref["status"] == "oom").sum() == 39
    assert set(ref["gpu"]) == {"Tesla V100-DGXS-16GB", "A100-SXM4-40GB"}
    assert (ref["source"] == "reference").all() and ref["key"].is_unique
    assert ref.loc[ref.status == "oom", "error"].str.contains("out of memory").all()
    assert ref.loc[ref.status == "oom", "sequences_per_s"].isna().all()
    prov = ref["provenance"].iloc[0]
    for needed in ("tlkh/transformers-benchmarking", "09628d5", "not a peak", "optimizer"):
        assert needed in prov
    # Memory is a mean, never passed off as a peak.
    assert ref[["peak_allocated_gib", "nvml_peak_used_gib"]].isna().all().all()
    assert ref.loc[ref.status == "ok", "nvml_mean_used_gib"].notna().all()
    assert set(ref["env.torch_version"]) == {"1.7.0a0"} and set(ref["precision"]) == {"fp16-mixed"}


def test_reference_throughput_is_the_step_based_figure(refs):
    """derived_per_config.csv: A100 distilroberta-base seq 128 batch 64 has step_seq_s 1192.03
    (the dashboard formula, which leaves out the optimizer step, gives 1237.15)."""
    ref = refs["seed_v100_a100"]
    row = ref[
        (ref.gpu == "A100-SXM4-40GB")
        & (ref.model == "distilroberta-base")
        & (ref.seq_len == 128)
        & (ref.batch_size == 64)
    ].iloc[0]
    assert row["sequences_per_s"] == pytest.approx(1192.028, abs=0.01)
    assert row["tokens_per_s"] == pytest.approx(row["sequences_per_s"] * 128, rel=1e-4)
    assert row["step_time_ms_mean"] == pytest.approx(64 / 1192.028 * 1e3, rel=1e-3)


def test_converter_reproduces_the_committed_file(tmp_path):
    src = os.path.join(REPO, "..", "shared", "anchors", "seed-results")
    if not os.path.isdir(src):
        pytest.skip("shared/anchors/seed-results is not beside this checkout")
    out = tmp_path / "ref.jsonl"
    subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "scripts", "convert_seed_results.py"),
            "--src",
            src,
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    committed = os.path.join(DATA_DIR, "reference_seed_v100_a100.jsonl")
    assert out.read_text() == open(committed, encoding="utf-8").read()


# -- selecting -------------------------------------------------------------------------------


def test_select_compares_dropdown_strings_with_typed_columns(frame):
    sel = select(frame, {"seq_len": "512", "compile": "True"})
    assert sel.empty  # compile runs are all at seq 128
    sel = select(frame, {"seq_len": "128", "compile": "True"})
    assert len(sel) == 4 and set(sel["batch_size"]) == {32, 64, 128, 256}
    assert len(select(frame, {"model": ANY})) == len(frame)
    only_refs = select(frame, {}, ["seed_v100_a100"])
    assert set(only_refs["dataset"]) == {"seed_v100_a100"}
    assert select(frame, {"no_such_column": "x"}).empty


def test_default_filters_prefer_the_users_rows(frame, refs):
    assert default_filters(frame) == {
        "model": "bert-base-uncased",
        "seq_len": "128",
        "precision": "bf16-mixed",
    }
    only_ref = combine(None, refs)
    assert default_filters(only_ref)["precision"] == "fp16-mixed"


def test_series_never_merge_two_configurations(frame):
    sel = select(
        frame,
        {"model": "bert-base-uncased", "seq_len": "128", "precision": "bf16-mixed"},
        ["measured"],
    )
    labels = set(series_labels(sel))
    assert "NVIDIA H200 · compile=True" in labels and "NVIDIA H200 · compile=False" in labels


def test_a_field_missing_on_some_rows_labels_them_by_its_default_not_nan():
    # pandas 3 keeps NaN through astype(str): rows without a capacity_gb got a NaN label and
    # left every chart when capped rows were in the selection
    df = pd.DataFrame(
        {
            "gpu": ["NVIDIA H200"] * 2,
            "status": ["ok", "ok"],
            "capacity_gb": [float("nan"), 24.0],
            "dataset": ["measured"] * 2,
        }
    )
    assert list(series_labels(df)) == [
        "NVIDIA H200 · capacity_gb=None",
        "NVIDIA H200 · capacity_gb=24",
    ]


# -- compare GPUs ----------------------------------------------------------------------------


def test_throughput_points_median_of_repeats_and_oom_marked(frame):
    sel = bert128(frame)
    pts = throughput_points(sel, "sequences_per_s")
    h200_64 = pts[(pts.series.str.startswith("NVIDIA H200")) & (pts.batch_size == 64)].iloc[0]
    raw = sel[(sel.gpu == "NVIDIA H200") & (sel.batch_size == 64)]["sequences_per_s"]
    assert h200_64["repeats"] == 3 and h200_64["value"] == pytest.approx(raw.median())
    l4 = pts[pts.series == "NVIDIA L4"]
    assert l4.loc[l4.oom, "batch_size"].tolist() == [256, 512]  # the OOM and the skipped one
    assert l4.loc[~l4.oom, "value"].notna().all()
    summary = fit_summary(pts).set_index("series")
    assert summary.loc["NVIDIA L4", "largest_batch_that_fits"] == 128
    assert summary.loc["NVIDIA L4", "smallest_oom_batch"] == 256
    assert summary.loc["NVIDIA H200", "largest_batch_that_fits"] == 512
    assert pd.isna(summary.loc["NVIDIA H200", "smallest_oom_batch"])
    # tokens/s is sequences/s x 128 on this selection
    tok = throughput_points(sel, "tokens_per_s").set_index(["series", "batch_size"])
    seq = pts.set_index(["series", "batch_size"])
    both = seq.join(tok[["value"]].rename(columns={"value": "value_tok"})).dropna(subset=["value"])
    assert (both["value_tok"] / both["value"]).round(0).eq(128).all()


def test_points_where_the_gpu_waited_for_the_host_are_marked(frame):
    """On the H200 most small-batch figures were host-bound and moved 0.75-1.41x between runs: a
    point whose GPU was busy under 90% of the measured steps must look different from one that
    measures the GPU, and the summary must say how busy the best point kept it."""
    from sweep.analysis import charts

    sel = bert128(frame)
    h200 = sel["gpu"].eq("NVIDIA H200")
    busy = sel["batch_size"].map({8: 40.0, 64: 89.9}).fillna(99.0).where(h200)
    pts = throughput_points(sel.assign(gpu_util_pct_mean=busy), "sequences_per_s")
    mine = pts[pts.series == "NVIDIA H200"].set_index("batch_size")
    assert mine.loc[8, "host_bound"] and mine.loc[64, "host_bound"]
    assert not mine.loc[512, "host_bound"] and mine.loc[512, "gpu_busy_pct"] == 99.0
    # not measured (the 2020 rows, other GPUs here): unknown is not host-bound
    assert not pts.loc[pts.series != "NVIDIA H200", "host_bound"].any()
    summary = fit_summary(pts).set_index("series")
    best_at = summary.loc["NVIDIA H200", "best_at_batch"]
    assert summary.loc["NVIDIA H200", "gpu_busy_pct_at_best"] == mine.loc[best_at, "gpu_busy_pct"]
    fig = charts.throughput(pts, "sequences_per_s", "t")
    (line,) = [t for t in fig["data"] if t.get("name") == "H200" and t["mode"] == "lines+markers"]
    hollow = [x for x, m in zip(line["x"], line["marker"]["symbol"], strict=True) if "open" in m]
    assert hollow == [8, 64]
    assert "GPU busy under 90%" in fig["layout"]["annotations"][0]["text"]
    # without utilization figures there is nothing to mark and no note
    plain = throughput_points(sel.drop(columns=["gpu_util_pct_mean"]), "sequences_per_s")
    plain = charts.throughput(plain, "sequences_per_s", "t")
    assert not any("GPU busy" in a["text"] for a in plain["layout"]["annotations"])


def test_reference_and_measured_rows_on_one_chart(frame):
    sel = select(frame, {"seq_len": "128"})
    pts = throughput_points(sel, "sequences_per_s")
    assert pts["reference"].any() and (~pts["reference"]).any()
    assert any("(ref seed-2020)" in s for s in pts.series)


# -- memory ----------------------------------------------------------------------------------


def test_memory_fit_recovers_the_line_and_the_capacity_limits(frame):
    sel = bert128(frame)
    pts = memory_points(sel, "nvml_peak_used_gib")
    fit = memory_fit(pts).set_index("series")
    # The fixture's memory is 2.4 GiB + 0.85 GiB per 1000 tokens: 0.1088 GiB per sequence.
    h200 = fit.loc["NVIDIA H200"]
    assert h200["slope_gib_per_seq"] == pytest.approx(0.1088, rel=1e-3)
    assert h200["intercept_gib"] == pytest.approx(2.4, abs=0.01)
    assert h200["r2"] == pytest.approx(1.0, abs=1e-6)
    # The estimate obeys its own line and is within one sequence of the true limit.
    for cap in (16, 141):
        n = h200[f"max_batch_{cap}gb"]
        slope, icpt = h200["slope_gib_per_seq"], h200["intercept_gib"]
        room = cap * (1 - MARGIN)  # the memory model keeps a margin of the card free
        # (the table rounds slope and intercept: allow 0.05 GiB)
        assert icpt + slope * n <= room + 0.05 and room < icpt + slope * (n + 1) + 0.05
        assert abs(n - (room - 2.4) / 0.1088) <= 1
    assert h200["max_batch_16gb"] < h200["max_batch_24gb"] < h200["max_batch_141gb"]
    # OOM rows carry no memory and are not part of the fit
    assert fit.loc["NVIDIA L4", "measured_up_to_batch"] == 128


def test_memory_fit_needs_two_batch_sizes():
    pts = pd.DataFrame(
        {
            "series": ["x"],
            "reference": [False],
            "batch_size": [8],
            "value": [3.0],
            "repeats": [1],
            "oom": [False],
        }
    )
    fit = memory_fit(pts)
    assert pd.isna(fit.loc[0, "slope_gib_per_seq"]) and pd.isna(fit.loc[0, "max_batch_16gb"])


def test_memory_metric_of_the_references_is_the_mean(refs):
    ref = combine(None, {"seed_v100_a100": refs["seed_v100_a100"]})
    assert memory_metrics_present(ref) == ["nvml_mean_used_gib"]
    # this project's own GPU reference rows carry true peaks
    if "h200" in refs:
        h200 = combine(None, {"h200": refs["h200"]})
        assert "peak_allocated_gib" in memory_metrics_present(h200)


# -- time, efficiency ------------------------------------------------------------------------


def test_time_breakdown_adds_up_and_flags_host_timers(frame, refs):
    bd = time_breakdown(
        select(frame, {"seq_len": "128", "compile": "False", "model": "bert-base-uncased"})
    )
    h = bd[bd.series == "NVIDIA H200"].set_index("batch_size")
    total = h[["forward_ms", "backward_ms", "optimizer_ms", "other_ms"]].sum(axis=1)
    assert (total - h["step_ms"]).abs().max() < 0.01
    assert not h["host_timers"].any()
    both = time_breakdown(select(frame, {"model": "roberta-base"}))
    ref = both[both.series.str.contains("ref seed-2020")]
    assert len(ref) and ref["host_timers"].all()
    # this project's H200 reference rows are CUDA-event timed, never flagged
    shipped = combine(None, {"h200": refs["h200"]})
    both = time_breakdown(select(shipped, {"model": "roberta-base"}))
    h200_ref = both[both.series.str.startswith("NVIDIA H200 (ref")]
    assert len(h200_ref) and not h200_ref["host_timers"].any()
    one = ref.iloc[0]
    assert one[["forward_ms", "backward_ms", "optimizer_ms", "other_ms"]].sum() == pytest.approx(
        one["step_ms"], abs=0.01
    )


def test_efficiency_has_every_metric_and_blanks_for_references(frame):
    eff = efficiency(select(frame, {"seq_len": "128"}))
    h = eff[eff.series.str.startswith("NVIDIA H200 ·")]
    assert h[list(EFFICIENCY_METRICS)].notna().all().all()
    ref = eff[eff.series.str.contains("ref seed-2020")]
    assert ref["mfu"].notna().all() and ref["power_w_mean"].isna().all()


# -- cost ------------------------------------------------------------------------------------


def test_parse_prices_accepts_dollars_and_reports_bad_rows():
    table = pd.DataFrame(
        [
            ["H200", "$5.50", "mine"],
            ["A100", "cheap", ""],
            ["", "", ""],
            ["L4", -1, ""],
            ["", 2.0, ""],
        ],
        columns=PRICE_COLUMNS,
    )
    good, errors = parse_prices(table)
    assert good["gpu_name_contains"].tolist() == ["H200"] and good["usd_per_gpu_hour"][0] == 5.5
    assert len(errors) == 3
    assert "row 2 (A100)" in errors[0] and "'cheap' is not a number" in errors[0]
    assert "positive" in errors[1] and "no GPU name" in errors[2]


def test_price_match_prefers_the_most_specific_entry():
    prices = pd.DataFrame([["A100", 2.0, ""], ["A100 80GB", 3.0, ""]], columns=PRICE_COLUMNS)
    assert price_for("NVIDIA A100-SXM4-80GB", prices) == (3.0, "A100 80GB")
    assert price_for("A100-SXM4-40GB", prices) == (2.0, "A100")
    assert price_for("NVIDIA H200", prices) is None


def test_cost_per_million_tokens_and_the_cheapest_gpu(frame):
    sel = bert128(frame, dataset=None)
    # the defaults (one kind of price) have no L4: add the user's own, as in the app
    prices = pd.concat(
        [DEFAULT_PRICES, pd.DataFrame([["L4", 0.8048, "mine"]], columns=PRICE_COLUMNS)]
    )
    costs = cost_table(sel, prices).set_index("gpu")
    h200 = costs.loc["NVIDIA H200"]
    best = (
        sel[(sel.gpu == "NVIDIA H200") & (sel.status == "ok")]
        .groupby("batch_size")["tokens_per_s"]
        .median()
        .max()
    )
    assert h200["best_tokens_per_s"] == pytest.approx(best, abs=0.1)
    assert h200["usd_per_million_tokens"] == pytest.approx(5.408 / (best * 3600) * 1e6, rel=1e-3)
    l4_tps = costs.loc["NVIDIA L4", "best_tokens_per_s"]
    a100_tps = costs.loc["NVIDIA A100-SXM4-80GB", "best_tokens_per_s"]
    assert l4_tps < a100_tps
    # L4 reaches a low target and is cheapest per hour; a target above L4 picks the A100.
    sentence, reach = cheapest(costs.reset_index(), l4_tps * 0.9)
    assert reach.iloc[0]["gpu"] == "NVIDIA L4" and "NVIDIA L4" in sentence
    sentence, reach = cheapest(costs.reset_index(), l4_tps * 1.1)
    assert reach.iloc[0]["gpu"] == "NVIDIA A100-SXM4-80GB"
    sentence, reach = cheapest(costs.reset_index(), 1e12)
    assert reach.empty and "No single priced GPU reaches" in sentence
    sentence, _ = cheapest(costs.reset_index(), float("nan"))
    assert "enter a number" in sentence


# -- speedup ---------------------------------------------------------------------------------


def test_speedup_is_relative_to_the_baseline_for_the_same_configuration(frame):
    sel = bert128(frame)
    sp = speedup(sel, "NVIDIA A100-SXM4-80GB")
    assert (sp.loc[sp.gpu == "NVIDIA A100-SXM4-80GB", "speedup"] == 1.0).all()
    row = sp[(sp.gpu == "NVIDIA H200") & (sp.batch_size == 128)].iloc[0]
    h = sel[(sel.gpu == "NVIDIA H200") & (sel.batch_size == 128)]["sequences_per_s"].median()
    a = sel[(sel.gpu == "NVIDIA A100-SXM4-80GB") & (sel.batch_size == 128)][
        "sequences_per_s"
    ].median()
    assert row["speedup"] == pytest.approx(h / a, abs=1e-3)
    # batch 512 ran out of memory on the A100 at no batch... L4 has no 256: no speedup there
    assert sp[(sp.gpu == "NVIDIA L4") & (sp.batch_size == 256)].empty
    # The 2020 rows use another optimizer and harness: never compared as the same configuration
    both = speedup(select(frame, {"seq_len": "128"}), "NVIDIA A100-SXM4-80GB")
    assert not both["gpu"].str.contains("ref").any()


def test_gpu_labels(frame):
    labels = gpu_labels(frame)
    assert "NVIDIA H200" in labels and "A100-SXM4-40GB (ref seed-2020)" in labels
    assert not any("·" in g for g in labels)


# -- table, command, environment -------------------------------------------------------------


def test_table_search_and_status(frame):
    t = results_table(frame, "out of memory")
    assert (
        len(t)
        and t.astype(str)
        .apply(lambda c: c.str.contains("out of memory", case=False))
        .any(axis=1)
        .all()
    )
    oom = results_table(frame, "", "oom")
    assert set(oom["status"]) == {"oom"} and len(oom) == 39 + 4
    assert list(results_table(frame).columns[:4]) == ["key", "dataset", "status", "gpu"]


def test_reproduce_command_round_trips_every_config_field(frame):
    row = frame[(frame.gpu == "NVIDIA H200") & (frame["compile"] == True)].iloc[0]  # noqa: E712
    cmd = reproduce_command(row.to_dict())
    assert cmd.startswith("python -m sweep trial ")
    from sweep.cli import build_parser

    args = build_parser().parse_args(shlex.split(cmd)[3:])
    parsed = {k: str(getattr(args, k)) for k in TrialConfig().to_dict()}
    assert parsed == {k: str(row[k]) for k in parsed}  # every field, as recorded
    assert "--compile true" in cmd and "--batch-size 32" in cmd


def test_environment_lists_software_and_provenance(refs):
    row = refs["seed_v100_a100"].iloc[0]
    env = dict(environment(row).values.tolist())
    assert env["gpu_name"] == "Tesla V100-DGXS-16GB" and env["cudnn_version"] == "8.0.4"
    assert "09628d5" in env["provenance"]


def test_older_record_version_is_read(measured):
    # The fixture holds one row written before versioning (version 0: no source, no MFU) and
    # version-1 rows, written before cuda_graph and profile_step existed.
    assert set(measured["schema_version"]) == {0, 1} and SCHEMA_VERSION > 1
    old = measured[measured["schema_version"] == 0]
    assert len(old) == 1 and old["source"].iloc[0] == "measured"
    assert pd.isna(old["mfu"].iloc[0]) and old["sequences_per_s"].notna().all()
    # the fields added since are read at their default, which is what those rows ran
    assert not measured["cuda_graph"].astype(bool).any()
    assert measured["profile_step"].astype(bool).all()


def test_progress_counts():
    p = status_counts_table({"ok": 7, "oom": 2, "crashed": 1})
    assert p["status"].tolist() == ["ok", "oom", "crashed", "total"]
    assert p.set_index("status").loc["total", "trials"] == 10
    assert p.set_index("status").loc["ok", "percent"] == 70.0


def test_memory_chart_of_a_metric_only_the_other_rows_recorded(refs):
    """The 2020 rows have no NVML peak: choosing that metric for them leaves only their
    out-of-memory batches. The chart must draw them, not fail (it failed every tab at once)."""
    from sweep.analysis import figures

    sel = select(
        combine(None, {"seed_v100_a100": refs["seed_v100_a100"]}),
        {"model": "roberta-large", "seq_len": "512", "precision": "fp16-mixed"},
    )
    points = memory_points(sel, "nvml_peak_used_gib")
    assert len(points) and points["value"].isna().all() and points["oom"].all()
    fig = figures.memory(points, memory_fit(points), "nvml_peak_used_gib", "t")
    assert fig.axes[0].get_ylim()[1] > 0


def test_price_entry_matches_whole_words_of_the_gpu_name():
    """ "L4" is not the price of an L40S, nor "A10" of an A100: a word of the entry must be a whole
    word (or dash-separated part) of the GPU name."""
    prices = pd.DataFrame(
        [["L4", 0.8048, ""], ["V100", 3.06, ""], ["H100", 4.9, ""]], columns=PRICE_COLUMNS
    )
    assert price_for("NVIDIA L40S", prices) is None
    assert price_for("NVIDIA L4", prices) == (0.8048, "L4")
    a10 = pd.DataFrame([["A10", 1.0, ""]], columns=PRICE_COLUMNS)
    assert price_for("NVIDIA A100-SXM4-80GB", a10) is None
    assert price_for("Tesla V100-DGXS-16GB", prices)[1] == "V100"
    assert price_for("NVIDIA H100 80GB HBM3", prices)[1] == "H100"
    mine = pd.DataFrame([["A100-SXM4", 2.5, ""]], columns=PRICE_COLUMNS)
    assert price_for("NVIDIA A100-SXM4-80GB", mine) == (2.5, "A100-SXM4")


def test_cost_chart_keeps_room_for_its_bars_and_shows_dollar_signs(refs):
    """With precision "(any)" the series names spell out precision, attention, optimizer and
    harness: the names get the room they need beside the bars (automargin), and no bar text is
    read as a formula (plotly.js takes a text that starts and ends with "$" for LaTeX)."""
    from sweep.analysis import charts_tabs

    sel = select(
        combine(None, refs),
        {"model": "roberta-large", "seq_len": "512", "precision": ANY},
    )
    costs = cost_table(sel, DEFAULT_PRICES)
    assert costs["series"].str.len().max() > 80
    fig = charts_tabs.cost(costs, "t")
    assert fig["layout"]["yaxis"]["automargin"] is True
    (bars,) = fig["data"]
    assert bars["text"] and all("$" in t and not t.endswith("$") for t in bars["text"])


def test_time_breakdown_panels_name_their_gpu_readably(refs):
    """One panel per series, titled with the series name: on one line the names ran into each
    other and off the figure, so no panel said which GPU it was."""
    from sweep.analysis import figures

    sel = select(
        combine(None, refs),
        {"model": "roberta-large", "seq_len": "512", "precision": ANY},
    )
    frame = time_breakdown(sel)
    n = frame["series"].nunique()  # the shipped H200 rows grow with every GPU run
    assert n >= 3  # the 2020 A100 and V100 and at least one H200 sweep
    fig = figures.breakdown(frame, "t")
    fig.savefig(io.BytesIO(), format="png")
    renderer, width = fig._get_renderer(), fig.bbox.width
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    assert len(boxes) == min(n, figures.MAX_PANELS)
    if n > figures.MAX_PANELS:  # the panels left out are said, not silently dropped
        assert f"first {figures.MAX_PANELS} of {n} series" in fig._suptitle.get_text()
    for box in boxes:
        assert box.x0 >= 0 and box.x1 <= width
    left, right = boxes[0], boxes[1]
    assert left.x1 <= right.x0  # side by side, not over each other


def test_batch_ticks_never_print_over_each_other():
    from sweep.analysis.figures import tick_batches

    powers = [1, 8, 32, 64, 128, 256]
    assert tick_batches(powers, log=True) == powers  # a grid's batches: every one labelled
    probes = [64, 128, 256, 264, 265, 266, 268, 272, 288, 320, 384, 512]  # a max-batch search
    ticks = tick_batches(probes, log=True)
    assert ticks[0] == 64 and ticks[-1] == 512 and 256 in ticks
    assert 265 not in ticks and len(ticks) <= 12
    logs = [math.log2(t) for t in ticks]
    gaps = [b - a for a, b in zip(logs, logs[1:], strict=False)]
    assert min(gaps) >= (logs[-1] - logs[0]) / 12


def test_efficiency_panels_keep_their_width_and_one_legend(refs):
    """With eight series of long labels a legend beside the panels squeezed them to slivers: the
    panels share one legend (the first panel's entries) and each keeps a third of the width."""
    from sweep.analysis import charts_tabs

    sel = select(
        combine(None, refs),
        {"model": "roberta-large", "seq_len": "512", "precision": ANY},
    )
    frame = efficiency(sel)
    fig = charts_tabs.efficiency(frame, "t")
    axes = [k for k in fig["layout"] if k.startswith("xaxis")]
    assert len(axes) == len(EFFICIENCY_METRICS)
    assert all(d[1] - d[0] > 0.25 for d in (fig["layout"][k]["domain"] for k in axes))
    shown = {t["name"] for t in fig["data"] if t["showlegend"]}
    assert len(shown) == frame["series"].nunique()


def test_out_of_memory_batches_sit_in_their_strip_with_many_series(refs):
    from sweep.analysis import charts

    sel = select(
        combine(None, refs),
        {"model": "roberta-large", "seq_len": "512", "precision": ANY},
    )
    points = throughput_points(sel)
    assert points["series"].nunique() >= 6 and points["oom"].any()
    fig = charts.throughput(points, "sequences_per_s", "t")
    strip = [t for t in fig["data"] if t.get("yaxis") == "y2"]
    assert strip and all(t["marker"]["symbol"] == "x" for t in strip)
    assert fig["layout"]["yaxis2"]["domain"][1] < fig["layout"]["yaxis"]["domain"][0]


def test_tables_for_people_have_headers_and_short_numbers():
    from sweep.analysis.table import header, readable

    assert header("gpu_busy_pct_at_best") == "GPU busy % at best"
    assert header("usd_per_million_tokens") == "$ per million tokens"
    assert header("max_batch_40gb") == "Max batch 40 GB"
    assert header("slope_gib_per_seq") == "Slope GiB per sequence"
    frame = pd.DataFrame({"tokens_per_s": [123456.789, 98.7654321], "at_batch": [8.0, 16.0]})
    out = readable(frame)
    assert list(out.columns) == ["Tokens/s", "At batch"]
    assert out["Tokens/s"].tolist() == [123457, 98.77] and out["At batch"].tolist() == [8, 16]


def test_sweep_progress_counts_plans_and_an_eta():
    from datetime import datetime, timedelta, timezone

    from sweep.analysis.progress import planned_trials, sweep_progress
    from sweep.plan.grid import expand
    from sweep.plan.sweepfile import load

    assert planned_trials("seed") == len(expand(load("seed")))
    assert planned_trials("max-batch") is None and planned_trials("my-file") is None
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    ends = [now - timedelta(minutes=10 - i) for i in range(10)]  # one a minute, last 1 min ago
    rows = pd.DataFrame(
        {
            "sweep": ["seed"] * 10 + ["mine"] * 2,
            "status": ["ok"] * 9 + ["oom"] + ["ok", "ok"],
            "finished_at": [t.isoformat() for t in ends] + [None, None],
        }
    )
    p = sweep_progress(rows, now=now).set_index("Sweep")
    seed = p.loc["seed"]
    assert seed["Planned"] == planned_trials("seed") and seed["Stored"] == 10
    assert seed["Ok"] == 9 and seed["Failed"] == 1 and seed["Trials / min"] == 1.0
    left = planned_trials("seed") - 10  # at one a minute from the last row
    assert seed["ETA (UTC)"] == (ends[-1] + timedelta(minutes=left)).strftime("%H:%M")
    assert seed["Status"] == "running"
    assert pd.isna(p.loc["mine", "Planned"]) and p.loc["mine", "Status"].startswith("not running")
    later = sweep_progress(rows, now=now + timedelta(hours=1)).set_index("Sweep")
    assert (
        later.loc["seed", "Status"].startswith("not running")
        and later.loc["seed", "ETA (UTC)"] is None
    )
