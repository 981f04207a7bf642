"""The answer table (sweep.analysis.answer) and ``python -m sweep compare``, on invented rows."""

from __future__ import annotations

import pandas as pd
import pytest

from sweep.analysis.answer import answer, fits_column, trust_of
from sweep.analysis.cost import DEFAULT_PRICES
from sweep.analysis.selection import combine
from sweep.results.frame import trials_frame
from sweep.results.record import Trial

GIB = 2**30
A100 = "NVIDIA A100-SXM4-80GB"
H200 = "NVIDIA H200"


def row(gpu, batch, tokens=None, status="ok", busy=95.0, mem=None, **cfg):
    config = {
        "model": "roberta-base",
        "seq_len": 128,
        "precision": "bf16-mixed",
        "batch_size": batch,
        "attention": "sdpa",
        "optimizer": "adamw-fused",
        "harness": "native",
        "device": "cuda",
        **cfg,
    }
    metrics = {}
    if status == "ok":
        metrics = {
            "tokens_per_s": tokens,
            "sequences_per_s": tokens / 128,
            "gpu_util_pct_mean": busy,
            "step_time_cv": 0.02,
            "step_time_ms_p50": 10.0,
        }
        if mem is not None:
            metrics["nvml_peak_used_gib"] = mem
    gpu_type = gpu.split()[1].split("-")[0]  # as a fleet sweep asks: "A100", "H200"
    return Trial(
        config=config,
        status=status,
        metrics=metrics,
        env={"gpu_name": gpu},
        gpu_type=gpu_type,
        sweep="s",
    )


def frame(trials):
    return combine(trials_frame(trials), {})


def fleet():
    # A100: 1000 tokens/s per sequence up to batch 32, 64 ran out of memory; memory 2 + 1 GiB/seq.
    # H200: 2.5x the A100 at every batch, up to 64; a second H200 configuration (eager) slower.
    rows = []
    for b in (8, 16, 32):
        rows.append(row(A100, b, 1000.0 * b, mem=2 + b))
        rows.append(row(H200, b, 2500.0 * b, mem=2 + b))
    rows.append(row(A100, 64, status="oom"))
    rows.append(row(H200, 64, 2500.0 * 64, mem=66.0))
    rows.append(row(H200, 64, 9000.0, attention="eager"))
    return frame(rows)


def test_one_row_per_gpu_with_best_rate_fit_and_speedup():
    a = answer(fleet(), "roberta-base", 128, baseline="A100")
    t = a.table.set_index("GPU")
    assert a.baseline == "A100-SXM4-80GB" and list(t.index) == ["H200", "A100-SXM4-80GB"]
    assert t.loc["H200", "Tokens/s (like baseline)"] == 160_000 and t.loc["H200", "At batch"] == 64
    assert t.loc["A100-SXM4-80GB", "Largest batch run"] == 32
    assert t.loc["A100-SXM4-80GB", "First OOM batch"] == 64
    assert pd.isna(t.loc["H200", "First OOM batch"])
    sp = t["Speedup vs A100-SXM4-80GB"]
    assert sp["H200"] == pytest.approx(5.0) and sp["A100-SXM4-80GB"] == 1.0
    # at the largest batch both ran, the ratio of like with like
    assert t.loc["H200", "Speedup at equal batch"] == pytest.approx(2.5)
    assert t.loc["H200", "Equal batch"] == 32
    # $ per million tokens from the default price of an A100 (AWS list) at its best rate
    usd = DEFAULT_PRICES.set_index("gpu_name_contains").loc["A100", "usd_per_gpu_hour"]
    assert t.loc["A100-SXM4-80GB", "$ per million tokens"] == pytest.approx(
        usd / (32_000 * 3600) * 1e6, abs=1e-4
    )


def test_predicted_batch_per_card_comes_from_the_memory_line():
    t = answer(fleet(), "roberta-base", 128).table.set_index("GPU")
    # 2 GiB + 1 GiB per sequence, 2% of the card kept free: 40 GB -> floor(40*0.98 - 2) = 37
    assert t.loc["A100-SXM4-80GB", fits_column(40)] == 37
    assert t.loc["A100-SXM4-80GB", fits_column(16)] == 13
    one = frame(
        [
            row(A100, 8, 8000.0, mem=10.0),
            row(H200, 8, 20000.0, mem=10.0),
            row(H200, 16, 40000.0, mem=18.0),
        ]
    )
    t = answer(one, "roberta-base", 128).table.set_index("GPU")
    assert pd.isna(t.loc["A100-SXM4-80GB", fits_column(40)])  # one batch: no line, no guess
    assert t.loc["H200", fits_column(40)] == 37  # 2 GiB + 1 GiB per sequence again


def test_relaxed_picks_the_closest_configuration_and_names_what_differs():
    rows = [
        row(A100, 16, 16000.0, attention="eager", harness="lightning"),
        row(H200, 16, 60000.0),  # sdpa, native: fastest, two options away
        row(H200, 16, 30000.0, attention="eager"),  # one option away
    ]
    a = answer(frame(rows), "roberta-base", 128, baseline="A100")
    h = a.table.set_index("GPU").loc["H200"]
    assert h["Tokens/s (like baseline)"] == 30_000
    assert h["Differs in"] == "Harness native vs lightning"  # the field's label
    strict = answer(frame(rows), "roberta-base", 128, baseline="A100", strict=True)
    assert strict.table["GPU"].tolist() == ["A100-SXM4-80GB"]
    assert any("H200: left out (strict)" in n for n in strict.notes)
    rows.append(row(H200, 16, 20000.0, attention="eager", harness="lightning"))
    strict = answer(frame(rows), "roberta-base", 128, baseline="A100", strict=True)
    h = strict.table.set_index("GPU").loc["H200"]
    assert h["Tokens/s (like baseline)"] == 20_000 and h["Differs in"] == ""


def test_gpu_choice_baseline_default_and_no_rows():
    f = fleet()
    a = answer(f, "roberta-base", 128)
    assert a.baseline == "A100-SXM4-80GB"  # the slowest by default
    only = answer(f, "roberta-base", 128, gpus=["H200"])
    assert only.table["GPU"].tolist() == ["H200"]
    none = answer(f, "gpt2", 128)
    assert none.table.empty and "No GPU has an ok measurement of gpt2" in none.notes[0]
    bad = answer(f, "roberta-base", 128, baseline="V100")
    assert "Baseline V100 has no ok row here" in bad.notes[0]


def test_trust_badges():
    assert trust_of({"gpu_util_pct_mean": 95.0, "step_time_ms_p50": 1.0}) == "measured, GPU-bound"
    assert trust_of({"gpu_util_pct_mean": 40.0}) == "measured, host-bound"
    assert trust_of({"gpu_util_pct_mean": 99.0, "launch_bound_pct": 30.0}).endswith("host-bound")
    assert trust_of({"forward_ms_host_mean": 3.0}) == "2020 host timers"
    assert trust_of({}) == "measured, GPU busy not read"
    slow = frame([row(H200, 8, 1000.0, busy=30.0), row(A100, 8, 900.0)])
    t = answer(slow, "roberta-base", 128).table.set_index("GPU")
    assert t.loc["H200", "Trust"] == "measured, host-bound"
    assert t.loc["H200", "GPU busy %"] == 30.0 and t.loc["H200", "Step time CV %"] == 2.0


def test_compare_command_prints_the_table(tmp_path, capsys):
    from sweep.compare import main
    from sweep.results.store import Store

    db = tmp_path / "r.db"
    with Store(db) as store:
        for b in (8, 16, 32):
            store.put(row(A100, b, 1000.0 * b, mem=2 + b))
            store.put(row(H200, b, 2500.0 * b, mem=2 + b))
    argv = ["--model", "roberta-base", "--seq-len", "128", "--db", str(db), "--no-reference"]
    assert main([*argv, "--baseline", "A100"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "vs A100-SXM4-80GB" in lines[0] and lines[2].startswith("H200")
    assert "80,000" in lines[2] and "2.50x" in lines[2] and "seed" not in out
    assert main([*argv, "--format", "csv"]) == 0
    csv = capsys.readouterr().out
    assert csv.splitlines()[0].startswith("GPU,Tokens/s (like baseline),Speedup vs A100")
    assert main(["--model", "gpt2", "--seq-len", "128", "--db", str(db), "--no-reference"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: No GPU has an ok measurement of gpt2") and err.count("\n") == 1
    assert main([*argv[:4], "--db", str(tmp_path / "none.db"), "--no-reference"]) == 1
    assert "error: nothing to compare" in capsys.readouterr().err


def test_compare_is_a_subcommand_of_python_m_sweep(tmp_path, capsys):
    from sweep.cli import main

    argv = ["compare", "--model", "roberta-large", "--seq-len", "512"]
    assert main([*argv, "--precision", "fp16-mixed", "--db", str(tmp_path / "none.db")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("GPU") and "V100-DGXS-16GB" in out  # shipped rows
    assert main([*argv, "--db", str(tmp_path / "none.db"), "--no-reference"]) == 1
    assert "error: nothing to compare" in capsys.readouterr().err


def test_rows_of_n_gpu_trials_are_not_compared_with_one_gpu_rows():
    rows = [row(A100, 16, 16000.0), row(H200, 16, 40000.0)]
    rows.append(row(H200, 16, 300000.0, gpus_per_trial=8))  # eight GPUs' rate
    a = answer(frame(rows), "roberta-base", 128)
    assert a.table.set_index("GPU").loc["H200", "Tokens/s (like baseline)"] == 40_000
    assert any(n.startswith("gpus_per_trial") and "shown" in n for n in a.notes)


def test_the_capped_rows_note_only_when_capped_rows_of_the_selection_are_left_out():
    rows = [row(A100, 8, 8000.0), row(H200, 8, 20000.0)]
    rows.append(row(H200, 8, 99000.0, model="gpt2", capacity_gb=24))  # another model's, capped
    a = answer(frame(rows), "roberta-base", 128)
    assert not any("capacity_gb" in n for n in a.notes)
    rows.append(row(H200, 16, 99000.0, capacity_gb=40))  # this selection's, capped
    a = answer(frame(rows), "roberta-base", 128)
    assert any("capacity_gb cap" in n for n in a.notes)
    h = a.table.set_index("GPU").loc["H200"]
    assert h["Tokens/s (like baseline)"] == 20_000 and h["Largest batch run"] == 8  # not its rate
    other = answer(frame(rows), "roberta-base", 128, "fp16-mixed")  # no rows of that precision
    assert not any("capacity_gb" in n for n in other.notes)


def test_compare_text_names_the_like_for_like_rate_and_adds_the_gpus_own_best(tmp_path, capsys):
    from sweep.compare import main
    from sweep.results.store import Store

    db = tmp_path / "r.db"
    with Store(db) as store:
        store.put(row(A100, 16, 16000.0, attention="eager", harness="lightning"))
        store.put(row(H200, 16, 60000.0))  # the H200's best: sdpa, two options from the A100's
        store.put(row(H200, 16, 30000.0, attention="eager"))  # its row: one option away
    argv = ["--model", "roberta-base", "--seq-len", "128", "--db", str(db), "--no-reference"]
    assert main([*argv, "--baseline", "A100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    heads = lines[0].split("  ")
    assert "tokens/s (like baseline)" in heads and "GPU's best tokens/s" in heads
    assert "tokens/s" not in heads  # the like-for-like rate is never a bare "tokens/s"
    h200 = lines[2].split()
    assert h200[0] == "H200" and h200.index("30,000") < h200.index("60,000")
    assert "H200: your results (s); GPU's best config: Attention kernel sdpa; differs" in lines[5]
    assert lines[6] == "A100-SXM4-80GB: your results (s); GPU's best config: this row's"
