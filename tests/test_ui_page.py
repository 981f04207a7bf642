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
    from sweep.analysis.selection import default_filters
    from sweep.analysis.table import download_name

    want = default_filters(holder.frame)
    prefix = f"answer_{want['model']}_seq{want['seq_len']}_{want['precision']}"
    # the page opens on the planner: the answer's file is made when its tab is drawn
    if answer_button.value:
        name = os.path.basename(answer_button.value["path"])
        assert name.startswith(prefix) and name.endswith(".csv")
    assert download_name("answer", want, ["vs-A100", ""]).startswith(prefix)
    assert download_name("answer", want, ["vs-A100", ""]).endswith("_vs-A100")


@pytest.fixture(scope="module")
def served_page(page):
    """The page served as ``python -m ui`` serves it (its routes and middleware)."""
    from ui.__main__ import serve
    from ui.local import free_port

    _holder, demo = page
    port = free_port()
    serve(demo, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def _get(url: str, **headers):
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        return r.headers, r.read()


def test_the_page_is_gzipped_and_names_no_path_of_the_server(served_page):
    import gzip

    from ui.server import PLOTLY_URL, STATIC

    plain_headers, plain = _get(served_page)
    headers, body = _get(served_page, **{"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip" and plain_headers["Content-Encoding"] is None
    html = gzip.decompress(body).decode()
    assert html == plain.decode() and len(body) < len(plain) / 3
    repo = os.path.dirname(os.path.dirname(STATIC))
    assert repo not in html  # no path of the server's checkout (Gradio's file cache aside)
    assert f'"{PLOTLY_URL}' in html or f"{PLOTLY_URL}" in html
    # the tables' help is in the page, and no longer says what they do not do (sort on a click)
    assert "Differs in" in html and "click a header" not in html.lower()
    js_headers, js = _get(served_page + PLOTLY_URL)
    assert js_headers["Content-Type"].startswith("text/javascript") and len(js) > 500_000


def _config(html: str) -> dict:
    import json

    from ui.server import CONFIG_END, CONFIG_START

    start = html.index(CONFIG_START.decode()) + len(CONFIG_START)
    return json.loads(html[start : html.index(CONFIG_END.decode(), start)])


def _tabs_selected(html: str):
    (tabs,) = [c for c in _config(html)["components"] if c["type"] == "tabs"]
    return tabs["props"].get("selected")


def test_a_link_to_a_tab_drawn_into_the_page_is_served_open_on_it(served_page):
    """``?tab=compare-gpus`` (the answer tab, drawn into the page): the page comes with that tab
    selected, so it shows with no round trip first; a link naming a selection, or a tab not
    drawn into the page, is served as the bare page (its first event draws it)."""
    import gzip

    _headers, body = _get(served_page + "?tab=compare-gpus")
    html = body.decode()
    assert _tabs_selected(html) == 1
    assert "<" not in html[html.index("window.gradio_config") : html.index(";</script>")]
    headers, zipped = _get(served_page + "?tab=compare-gpus", **{"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped).decode() == html
    for query in ("", "?tab=memory", "?tab=compare-gpus&model=gpt2", "?tab=nothing"):
        assert _tabs_selected(_get(served_page + query)[1].decode()) is None, query


def test_the_page_patch_keeps_the_page_as_gradio_wrote_it():
    from ui.server import patch_config

    html = (
        b'<head><script>window.gradio_config = {"components":[{"id":3,"type":"tabs",'
        b'"props":{"label":"a \\u003cb\\u003e \\u0026 \\u0027c\\u0027"}}]};</script>'
    )
    assert patch_config(html, {4: {"selected": 1}}) == html  # no such component
    assert patch_config(b"<html>no configuration</html>", {3: {"x": 1}}).startswith(b"<html>")
    patched = patch_config(html, {3: {"selected": 1}})
    assert patched == html.replace(b'"}}]}', b'","selected":1}}]}')
