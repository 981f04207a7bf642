"""The page as built (no server): which widgets it holds and what their initial values say."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The app over the shipped reference rows alone (no database), built once."""
    from ui.app import Holder, build_app

    holder = Holder(str(tmp_path_factory.mktemp("nodb") / "missing.db"))
    return holder, build_app(holder)


def _widgets(demo, kind):
    return [b for b in demo.blocks.values() if isinstance(b, kind)]


def test_no_stray_download_button_and_files_named_after_the_selection(page):
    import gradio as gr

    holder, demo = page
    buttons = _widgets(demo, gr.DownloadButton)
    # the answer table's and the Table tab's: no third one made while the first view was drawn
    assert sorted(b.label for b in buttons) == ["Download CSV", "Download answer CSV"]
    answer_button = next(b for b in buttons if b.label == "Download answer CSV")
    name = os.path.basename(answer_button.value["path"])
    from sweep.analysis.selection import default_filters

    want = default_filters(holder.frame)
    assert name.startswith(f"answer_{want['model']}_seq{want['seq_len']}_{want['precision']}")
    assert name.endswith(".csv")
