"""How tables and charts read: file names of downloads, headers and numbers, colours per GPU."""

from __future__ import annotations

import pandas as pd

from sweep.analysis.selection import ANY
from sweep.analysis.table import download_name


def test_download_name_says_what_the_file_holds():
    fvals = {"model": "roberta-large", "seq_len": "512", "precision": "fp16-mixed", "task": ANY}
    assert download_name("answer", fvals, ["vs-A100", ""]) == (
        "answer_roberta-large_seq512_fp16-mixed_vs-A100"
    )
    any_model = {"model": ANY, "seq_len": ANY, "precision": ANY, "attention": "sdpa"}
    assert download_name("trials", any_model, ["search-H200 / x"]) == (
        "trials_all-models_attention-sdpa_search-H200-x"
    )


def test_a_row_without_environment_takes_its_nodes_gpu_and_no_unknown_gpu_is_offered():
    from sweep.analysis.selection import UNKNOWN_GPU, combine, gpu_column
    from sweep.analysis.sources import load_references
    from ui.tabs.compare import gpu_choices

    frame = combine(None, load_references()[0])
    assert UNKNOWN_GPU not in set(gpu_column(frame))  # the H200's skipped_oom row of seed-2020
    stray = frame.iloc[:1].assign(gpu=None, node="elsewhere", status="skipped_oom")
    both = pd.concat([frame, stray], ignore_index=True)
    assert gpu_column(both).iloc[-1] == UNKNOWN_GPU  # nothing names it...
    assert UNKNOWN_GPU not in gpu_choices(both)  # ...and it is not a GPU one can choose


def test_a_gpu_has_one_colour_whatever_else_is_drawn():
    from sweep.analysis.colors import series_colors

    h200 = "NVIDIA H200"
    alone = series_colors([h200])[h200]
    assert series_colors([h200, "A100-SXM4-40GB"])[h200] == alone
    assert series_colors(["?", "A10G", h200, "Tesla V100-DGXS-16GB"])[h200] == alone
    # the H200's reference series: a shade of its colour, not another GPU's colour
    ref = series_colors([h200, "NVIDIA H200 (ref seed-2020)", "A100-SXM4-40GB"])
    assert ref["NVIDIA H200 (ref seed-2020)"] not in (alone, ref["A100-SXM4-40GB"])
    many = ["NVIDIA H100 80GB HBM3", "A100-SXM4-80GB", "A100-SXM4-40GB", "L4", "T4", h200]
    assert len(set(series_colors(many).values())) == len(many)


def test_the_results_table_reads_as_people_write():
    from sweep.analysis.table import readable
    from sweep.analysis.table import table as results_table

    rows = pd.DataFrame(
        {
            "key": ["a1"],
            "dataset": ["measured"],
            "status": ["ok"],
            "gpu": ["NVIDIA H200"],
            "seq_len": [512],
            "tokens_per_s": [12345.678901234567],
            "step_time_ms_p50": [31.234567890123456],
            "peak_allocated_gib": [7.123456789012345],
            "gpu_util_pct_mean": [97.65432101234567],
        }
    )
    shown = readable(results_table(rows))
    assert list(shown.columns) == [
        "Key",
        "Dataset",
        "Status",
        "GPU",
        "Sequence length (tokens)",
        "Tokens/s",
        "Step time ms p50",
        "Peak allocated GiB",
        "GPU utilization % mean",
    ]
    assert shown.iloc[0].tolist()[4:] == [512, 12346, 31.23, 7.123, 97.65]
    assert not any("_" in c for c in shown.columns)


def test_a_long_legend_gets_its_own_room_not_the_plots():
    from sweep.analysis import charts

    def figure(n):
        points = pd.DataFrame(
            {
                "series": [f"GPU{i} · model=m{i}" for i in range(n)],
                "batch_size": [8] * n,
                "value": [100.0 + i for i in range(n)],
                "value_p10": [float("nan")] * n,
                "value_p90": [float("nan")] * n,
                "oom": [False] * n,
                "host_bound": [False] * n,
                "host_timers": [False] * n,
                "reference": [False] * n,
                "gpu_busy_pct": [95.0] * n,
                "step_cv": [0.01] * n,
                "repeats": [1] * n,
            }
        )
        return charts.throughput(points, "tokens_per_s", "Throughput — all models")

    two, twelve = figure(2)["layout"]["height"], figure(12)["layout"]["height"]
    assert twelve >= two + 9 * 20  # a line of legend per series beyond the first three


def test_the_answer_shows_its_primary_columns_and_the_chosen_others():
    from sweep.analysis.answer import COLUMNS
    from sweep.analysis.answer_view import MORE_COLUMNS, PICK_MODEL, answer_for, shown_columns

    named = ["Speedup vs A100" if c == "Speedup" else c for c in COLUMNS]
    table = pd.DataFrame([[1] * len(COLUMNS)], columns=named)
    shown = list(shown_columns(table).columns)
    assert shown[0] == "GPU" and len(shown) <= 8
    # the answers a person came for are on the first screen, not right of "Differs in"
    for col in ("Speedup vs A100", "Fits 24 GB (predicted)", "$ per million tokens", "Trust"):
        assert col in shown
    assert "Differs in" not in shown and "Differs in" in MORE_COLUMNS
    more = list(shown_columns(table, ["Differs in", "Speedup at equal batch"]).columns)
    extra = ("Differs", "Speedup at")
    assert more == [c for c in table.columns if c in shown or c.startswith(extra)]
    # a selection without a model: the answer's own headers and what to pick, no placeholders
    empty = answer_for(table.iloc[0:0], {"model": ANY, "seq_len": "512"})
    assert list(empty.table.columns) == COLUMNS and empty.notes == [PICK_MODEL]


def test_the_primary_answer_columns_fit_a_laptop_screen():
    from sweep.analysis.answer_view import PRIMARY_COLUMNS, column_widths

    # the widths Gradio is given: the eight primary columns in under 1000 px (1440 px screens)
    shown = [c for c in PRIMARY_COLUMNS if c != "Precision"]
    assert sum(int(w.removesuffix("px")) for w in column_widths(shown)) <= 1000


def test_the_memory_fit_shows_each_cards_largest_batch_beside_a_short_series_label():
    from sweep.analysis.answer_view import column_widths
    from sweep.analysis.memory import FIT_NUMBER_WIDTH, FIT_WIDE, fit_view, short_series
    from ui.tabs.common import hover_cell

    full = [
        "NVIDIA H200 (ref seed) · attention=sdpa · compile=False · harness=native",
        "NVIDIA H200 (ref seed) · attention=sdpa · compile=True · harness=native",
        "A100-SXM4-80GB · attention=eager · compile=False · harness=native",
    ]
    # the GPU's short name and only what differs between the rows ("harness=native" is shared)
    assert short_series(full) == [
        "H200 (ref seed) · attention=sdpa · compile=False",
        "H200 (ref seed) · attention=sdpa · compile=True",
        "A100-SXM4-80GB · attention=eager · compile=False",
    ]
    assert short_series(full[:1]) == ["H200 (ref seed)"] and short_series([]) == []
    batches = {f"max_batch_{c}gb": [None, 30.0, 60.0] for c in (16, 24, 40, 80, 141)}
    fit = pd.DataFrame(
        {
            "series": full,
            "slope_gib_per_seq": [None, 0.5, 0.25],
            "intercept_gib": [None, 7.2, 7.0],
            "r2": [None, 1.0, 0.99],
            "measured_up_to_batch": [8, 256, 128],
            **batches,
        }
    )
    view = fit_view(fit)
    # the answers (largest batch per card) right after the series, then how the line was fitted
    assert list(view.columns) == [
        "Series",
        "Max batch 16 GB",
        "Max batch 24 GB",
        "Max batch 40 GB",
        "Max batch 80 GB",
        "Max batch 141 GB",
        "Measured up to batch",
        "R²",
        "Slope GiB per sequence",
        "Intercept GiB",
    ]
    # the series with a prediction first; each row's whole label kept for its hover text
    assert list(view.index) == [full[1], full[2], full[0]]
    assert view["Series"].tolist() == [short_series(full)[i] for i in (1, 2, 0)]
    assert view["Max batch 80 GB"].tolist()[:2] == [30, 60]
    # at 1440 px: the largest batches within the first 900 px, the whole table within 1200
    widths = [
        int(w.removesuffix("px"))
        for w in column_widths(list(view.columns), FIT_WIDE, FIT_NUMBER_WIDTH)
    ]
    assert sum(widths[:6]) <= 900 and sum(widths) <= 1200
    # the cell shows the short label, its whole label on hover; both escaped
    cell = hover_cell('H200 <b>"x"</b>', 'NVIDIA H200 & "x"')
    escaped = "H200 &lt;b&gt;&quot;x&quot;&lt;/b&gt;"
    assert cell == f'<span title="NVIDIA H200 &amp; &quot;x&quot;">{escaped}</span>'
    # no selection: the same headers, no rows
    empty = fit_view(fit.iloc[0:0])
    assert list(empty.columns) == list(view.columns) and len(empty) == 0
