"""The answer table with no precision chosen (issue 25): every GPU stays, one row per GPU and
precision, instead of only the most-measured precision's GPUs."""

from __future__ import annotations

from sweep.analysis.answer import answer
from tests.test_views_answer import A100, H200, frame, row


def _mixed():
    # the H200 in bf16 at four batches and fp16 at one; the A100 in fp16 only
    rows = [row(H200, b, 4000.0 * b, precision="bf16-mixed") for b in (8, 16, 32, 64)]
    rows += [row(H200, 8, 30000.0, precision="fp16-mixed")]
    rows += [row(A100, b, 1000.0 * b, precision="fp16-mixed") for b in (8, 16)]
    return frame(rows)


def test_any_precision_keeps_every_gpu_one_row_per_precision():
    a = answer(_mixed(), "roberta-base", 128, None)
    got = set(zip(a.table["GPU"], a.table["Precision"], strict=True))
    assert got == {("H200", "bf16-mixed"), ("H200", "fp16-mixed"), ("A100-SXM4-80GB", "fp16-mixed")}
    assert a.baseline == "A100-SXM4-80GB"
    bf16 = a.table[a.table["Precision"] == "bf16-mixed"].iloc[0]
    assert "Precision bf16-mixed vs fp16-mixed" in bf16["Differs in"]


def test_any_precision_baseline_that_ran_only_another_precision_is_found():
    a = answer(_mixed(), "roberta-base", 128, None, baseline="A100")
    assert a.baseline == "A100-SXM4-80GB" and not any("Baseline" in n for n in a.notes)


def test_a_chosen_precision_has_no_precision_column():
    a = answer(_mixed(), "roberta-base", 128, "bf16-mixed")
    assert "Precision" not in a.table and a.table["GPU"].tolist() == ["H200"]


def test_the_gpus_own_best_is_shown_beside_the_like_for_like_rate():
    from tests.test_views_answer import fleet

    a = answer(fleet(), "roberta-base", 128, baseline="A100")
    assert "Tokens/s (like baseline)" in a.table and "Best tokens/s" not in a.table
    h = a.table.set_index("GPU").loc["H200"]
    assert h["GPU's best tokens/s"] >= h["Tokens/s (like baseline)"]
    assert h["GPU's best config"]  # "this row's" or the options of the faster one


def test_compare_text_shows_the_precision_of_each_row(tmp_path, capsys):
    from sweep.compare import main
    from sweep.results.store import Store

    db = tmp_path / "r.db"
    with Store(db) as store:
        for t in (
            row(H200, 8, 32000.0, precision="bf16-mixed"),
            row(H200, 8, 30000.0, precision="fp16-mixed"),
            row(A100, 8, 8000.0, precision="fp16-mixed"),
        ):
            store.put(t)
    argv = ["--model", "roberta-base", "--seq-len", "128", "--db", str(db), "--no-reference"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["GPU", "precision"]
    assert [x.split()[:2] for x in lines[2:5]] == [
        ["H200", "bf16-mixed"],
        ["H200", "fp16-mixed"],
        ["A100-SXM4-80GB", "fp16-mixed"],
    ]
    assert lines[6].startswith("H200 bf16-mixed: your results")
    assert main([*argv, "--precision", "fp16-mixed"]) == 0  # one precision asked: no column
    assert "precision" not in capsys.readouterr().out.splitlines()[0]


def test_compare_help_says_what_no_precision_does():
    import argparse

    from sweep.compare import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    (action,) = [a for a in p._actions if a.dest == "precision"]
    assert "every precision measured, one row per GPU and precision" in action.help
    assert "most measured" not in action.help
