"""The page's first event and its links: a pasted link is read whole, one view's failure leaves
the others drawn, and "(any)" survives a round trip through the URL (issue 25)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from tests.test_ui_app import fixture_trials, make_db


def _app(tmp_path):
    from ui.app import Holder, build_app

    demo = build_app(Holder(make_db(tmp_path / "r.db", fixture_trials())))
    (first,) = [f for f in demo.fns.values() if f.fn and f.fn.__name__ == "first_view"]
    return demo, first


def _open(first, link: dict) -> dict:
    current = [c.value for c in first.inputs]
    drawn = first.fn(SimpleNamespace(query_params=link), *current)
    out = dict(zip(first.outputs, drawn, strict=True))
    return {getattr(c, "elem_id", None) or c._id: v for c, v in out.items()}


def test_a_memory_link_to_an_empty_selection_is_read_and_drawn(tmp_path):
    """bert-tiny was never run at seq 512: the Memory tab says so instead of raising, and the
    link's selection and tab are kept."""
    _demo, first = _app(tmp_path)
    got = _open(first, {"model": "bert-tiny", "seq_len": "512", "tab": "memory"})
    assert got["filter-model"] == "bert-tiny" and got["filter-seq_len"] == "512"
    assert got["tabs"].selected == 2
    assert "seq_len 512" in json.loads(got["memory-plot"])["layout"]["title"]["text"]


def test_a_view_that_raises_leaves_the_link_and_says_so(tmp_path, monkeypatch):
    """Whatever a view raises, the page's first event returns the link's selection and that
    view says it failed; its chart does not keep the previous selection's figure."""
    from ui.tabs import memory

    def broken(*_a, **_k):
        raise KeyError("series")

    monkeypatch.setattr(memory, "memory_fit", broken)
    _demo, first = _app(tmp_path)
    got = _open(first, {"model": "bert-base-uncased", "seq_len": "512", "tab": "memory"})
    assert got["filter-model"] == "bert-base-uncased" and got["tabs"].selected == 2
    text = json.dumps(json.loads(got["memory-plot"]))
    assert "failed" in text and "KeyError" in text


def test_any_survives_the_url(tmp_path):
    """The URL writer keeps "(any)"; a link that names a selection but leaves a filter out
    reopens it as "(any)", not as the page's default precision."""
    from sweep.analysis.selection import ANY
    from ui.render import url_writer_js

    assert json.dumps(ANY) not in url_writer_js(["model", "precision"])  # not deleted
    demo, first = _app(tmp_path)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert by_id["filter-precision"].value != ANY  # the page's default is a precision
    got = _open(first, {"model": "bert-base-uncased", "seq_len": "128"})
    assert got["filter-precision"] == ANY and got["filter-attention"] == ANY
    got = _open(first, {"model": "bert-base-uncased", "precision": "(any)"})
    assert got["filter-precision"] == ANY


def test_dropdowns_are_narrowed_and_a_model_chosen_by_hand_picks_its_best_view(tmp_path):
    demo, _first = _app(tmp_path)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    labels = [label for label, _ in by_id["filter-seq_len"].choices]
    assert all(" · " in label for label in labels[1:])  # "128 · 3 GPUs"
    (pick,) = [f for f in demo.fns.values() if f.fn and f.fn.__name__ == "pick"]
    values = [c.value for c in pick.inputs]
    values[1] = "gpt2"  # datasets, then the filters: model first
    updates = dict(zip([c.elem_id for c in pick.outputs], pick.fn(*values), strict=True))
    seq_len, precision = updates["filter-seq_len"], updates["filter-precision"]
    assert (seq_len.value, precision.value) == ("512", "bf16-mixed")
    # the choices come with the values, narrowed for them: the new value is among them
    assert "512" in [v for _, v in seq_len.choices]


def test_a_number_widget_reads_its_link_as_a_number():
    # the planner's sequence length is a gr.Number: the link's text "512" must come back as 512
    # (a string failed the page's whole first event: the link was dropped, the planner shown)
    import gradio as gr

    from ui.render import value_from_url

    with gr.Blocks():
        box = gr.Number(value=4096, precision=0)
    assert value_from_url(box, "512") == 512 and isinstance(value_from_url(box, "512"), int)
    assert value_from_url(box, "0.5") == 0.5
    assert value_from_url(box, "lots") is gr.skip() or not isinstance(
        value_from_url(box, "lots"), (int, float, str)
    )


def test_a_link_naming_only_a_drawn_tab_is_served_open_on_it(tmp_path):
    """The page's configuration for a link (``demo.page_patch``, ``ui.server.PagePatch``): a link
    naming only a tab drawn into the page (the answer tab) opens on it; any other is served as
    the bare page, its first event reading it; a page behind a password never."""
    from ui.app import PREDRAWN, Holder, build_app

    demo, _first = _app(tmp_path)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    tabs = by_id["tabs"]._id
    assert 1 in PREDRAWN and 2 not in PREDRAWN
    assert demo.page_patch({"tab": "compare-gpus"}) == {tabs: {"selected": 1}}
    assert demo.page_patch({"tab": "compare-gpus", "__theme": "dark"}) == {tabs: {"selected": 1}}
    for query in ({}, {"tab": "memory"}, {"tab": "compare-gpus", "model": "gpt2"}, {"tab": "x"}):
        assert demo.page_patch(query) == {}, query
    assert demo.page_patch({"tab": "compare-gpus", "metric": "tokens_per_s"}) == {}
    private = build_app(Holder(make_db(tmp_path / "p.db", fixture_trials())), private=True)
    assert private.page_patch({"tab": "compare-gpus"}) == {}


def test_the_page_at_its_initial_selection_is_not_narrowed_again(tmp_path):
    """After the page's first event, the filters are narrowed for a link's selection only: the
    page was built narrowed for its initial selection (the same choices ``narrow`` gives), and
    narrowing it again cost every page load 0.1 s of the server and a redraw of every dropdown."""
    from ui.render import is_skip

    demo, _first = _app(tmp_path)
    fns = {f.fn.__name__: f for f in demo.fns.values() if f.fn}
    narrow, narrow_link = fns["narrow"], fns["narrow_link"]
    initial = [c.value for c in narrow_link.inputs]
    assert all(is_skip(v) for v in narrow_link.fn(*initial))
    # what it leaves is what narrowing would give
    for built, update in zip(narrow.outputs, narrow.fn(*initial), strict=True):
        assert [tuple(c) for c in update.choices] == [tuple(c) for c in built.choices]
    linked = [initial[0], "gpt2", *initial[2:]]  # a link's model
    got = narrow_link.fn(*linked)
    assert not any(is_skip(v) for v in got)
    assert [u.choices for u in got] == [u.choices for u in narrow.fn(*linked)]


def test_a_tabs_own_widget_redraws_through_the_cache(tmp_path, monkeypatch):
    """The answer tab's multi-selects report a change as the tab first mounts (to the value the
    view was drawn for): that redraw is the view drawn into the page, not drawn twice anew; a new
    value draws once, and again from the cache."""
    from ui.tabs import compare

    demo, _first = _app(tmp_path)
    drawn = []
    real = compare.answer_for
    monkeypatch.setattr(compare, "answer_for", lambda *a, **k: drawn.append(1) or real(*a, **k))
    redraws = [f for f in demo.fns.values() if f.fn and f.fn.__name__ == "redraw"]
    (redraw,) = [f for f in redraws if any(c.elem_id == "compare-plot" for c in f.outputs)]
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    initial = [c.value for c in redraw.inputs]
    _note, _answer, _download, plot, _fits = redraw.fn(*initial)
    assert drawn == [] and plot == by_id["compare-plot"].value
    initial[-5] = "tokens_per_s"  # the throughput unit: a new value, drawn once
    redraw.fn(*initial)
    redraw.fn(*initial)
    assert drawn == [1]


def test_a_view_from_the_cache_is_sent_whole_again(tmp_path):
    """Gradio pops an update's value as it sends it: a view drawn again from the cache (the same
    selection seen before) showed the chart of the selection and the answer table and CSV of the
    one shown before it (the cached update had lost its value)."""
    from gradio.blocks import postprocess_update_dict

    demo, _first = _app(tmp_path)
    render = next(f for f in demo.fns.values() if f.fn and f.fn.__name__ == "render_visible")
    values = [c.value for c in render.inputs]
    values[0] = 1  # the answer tab, visible
    for _ in range(2):
        out = dict(zip(render.outputs, render.fn(*values), strict=True))
        by_id = {getattr(c, "elem_id", None): v for c, v in out.items()}
        assert "value" in by_id["answer-table"] and len(by_id["answer-table"]["value"])
        for c, v in out.items():  # as Gradio sends them
            if isinstance(v, dict) and v.get("__type__") == "update":
                postprocess_update_dict(c, v)
