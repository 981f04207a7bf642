"""The app's fine-tune planner tab and pooled results files (--data), built without a browser."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.test_ui_app import make_db

pytest.importorskip("gradio")


def test_the_fine_tune_planner_is_the_first_tab_and_shows_the_plan(tmp_path):
    """The planner's tab comes first and prints ``sweep.analysis.planner.plan``'s table (the one
    ``python -m sweep fits`` prints) for invented rows; its own model and sequence length, not
    the shared filters, choose the rows; a bad token count is a message, not an error."""
    from sweep.analysis.planner import plan
    from sweep.analysis.selection import combine
    from sweep.results.frame import trials_frame
    from tests.test_planner import H200, MODEL, row
    from ui.app import TABS, Holder, build_app

    assert TABS[0][0] == "Fine-tune planner"
    trials = [row(H200, 4, 3000.0, mem=40.0), row(H200, 8, 3200.0, mem=70.0)]
    holder = Holder(make_db(tmp_path / "r.db", trials), data_files=[])
    demo = build_app(holder)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    from sweep.analysis.planner import default_question

    # the page opens on the question the data answers best (the shipped H200 LoRA rows: seq 2048)
    assert (by_id["plan-model"].value, by_id["plan-seq"].value) == default_question(holder.frame)
    assert by_id["plan-model"].value == MODEL
    tabs = [b for b in demo.blocks.values() if type(b).__name__ == "Tab"]
    assert tabs[0].label == "Fine-tune planner"
    (redraw,) = [
        f
        for f in demo.fns.values()
        if f.fn and f.fn.__name__ == "redraw" and any(c.elem_id == "plan" for c in f.outputs)
    ]
    values = [c.value for c in redraw.inputs]
    values[0] = ["measured"]
    names = [getattr(c, "elem_id", None) for c in redraw.inputs]
    values[names.index("filter-seq_len")] = "128"  # a shared filter: the planner ignores it
    values[names.index("plan-tok")] = "1B"
    values[names.index("plan-seq")] = 4096
    note, table = redraw.fn(*values)
    expected = plan(combine(trials_frame(trials), {}), MODEL, 4096, 1e9).table
    pd.testing.assert_frame_equal(table.reset_index(drop=True), expected)
    h200 = table[(table["Card"] == "H200") & (table["Method"] == "LoRA")].iloc[0]
    assert h200["Known from"] == "measured on H200" and h200["Tokens/s"] == 3200.0
    assert "1,000,000,000 tokens" in note
    values[names.index("plan-tok")] = "lots"
    note, table = redraw.fn(*values)
    assert note.startswith("⚠ Tokens: 'lots' is not a positive number") and table.empty


def test_data_files_are_data_sets_of_the_app(tmp_path, capsys):
    from tests.test_fits_cli import export_jsonl
    from tests.test_planner import A100, row
    from ui.app import Holder, _dataset_choices

    good = export_jsonl(tmp_path / "team_a100.jsonl", [row(A100, 1, 900.0)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    holder = Holder(str(tmp_path / "none.db"), data_files=[good, str(bad)])
    choices = dict((v, label) for label, v in _dataset_choices(holder.data))
    assert choices["team_a100"] == "file: team_a100 (1 rows)" and "bad" not in choices
    assert set(holder.frame.loc[holder.frame["dataset"] == "team_a100", "gpu"]) == {A100}
    left_out = [m for m in holder.data.messages if "left out" in m]
    assert len(left_out) == 1 and "bad.jsonl" in left_out[0]
