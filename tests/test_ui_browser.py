"""One real-browser test: headless Chromium (Debian's package) drives ``python -m ui`` as a person
choosing a GPU would, and reads the answers off the page.

Screenshots of every tab are left in $TSWEEP_ARTIFACTS (default /tmp/artifacts/ui) as the test's
artifacts (not committed)."""

from __future__ import annotations

import os
import re
import urllib.parse

import pandas as pd
import pytest

from tests.browser_helpers import CHROMIUM, chromium, hover_title, new_page, settle
from tests.test_ui_app import ENV, REPO, fixture_trials, make_db
from ui.local import serving

ARTIFACTS = os.environ.get("TSWEEP_ARTIFACTS", "/tmp/artifacts/ui")
TABS = (
    "fine-tune-planner",
    "compare-gpus",
    "memory",
    "time-breakdown",
    "efficiency",
    "cost",
    "speedup",
    "table",
)
# The answer table's cells, as the page shows them: header -> {GPU: text}.
READ_TABLE = """() => {
  const rows = [...document.querySelectorAll('#answer-table [role=row]')];
  return rows.map(r => [...r.querySelectorAll('[role=columnheader], [role=gridcell]')]
    .map(c => c.innerText.trim()));
}"""


def _answer(page) -> dict[str, dict[str, str]]:
    rows = page.evaluate(READ_TABLE)
    head, body = rows[0], rows[1:]
    gpu = head.index("GPU")
    return {h: {r[gpu]: r[i] for r in body} for i, h in enumerate(head)}


def _box(locator, timeout_s: float = 15.0) -> dict[str, float]:
    """The element's box once it is on the page: Gradio may redraw the table between two reads
    (a detached or not-yet-drawn element has no box), so wait for one, then fail naming it."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        box = locator.bounding_box()
        if box is not None:
            return box
        if time.monotonic() > deadline:
            raise AssertionError(f"{locator} has no box on the page after {timeout_s:.0f} s")
        time.sleep(0.1)


def _expected(query: dict[str, str]):
    """The same answer from the pure function, over the same rows (the user's database)."""
    from sweep.analysis.answer import answer
    from sweep.analysis.selection import combine
    from sweep.results.frame import trials_frame

    frame = combine(trials_frame(fixture_trials()), {})
    table = answer(frame, query["model"], query["seq_len"], query["precision"], query["baseline"])
    return table.table.set_index("GPU")


@pytest.mark.browser
def test_browser_answers_the_questions_from_the_answer_table(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; `make test` tries)")
    pw = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")

    db = make_db(tmp_path / "results.db", fixture_trials())
    query = {
        "model": "bert-base-uncased",
        "seq_len": "128",
        "precision": "bf16-mixed",
        "baseline": "A100-SXM4-80GB",
        "data": "measured",
        "tab": "compare-gpus",  # the first tab is the fine-tune planner
        # beyond the eight primary columns, chosen (the "More columns" chooser, in the link)
        "cols": "Largest batch run,First OOM batch,Fits 40 GB (predicted)",
    }
    requests: list[str] = []
    errors: list[str] = []
    os.makedirs(ARTIFACTS, exist_ok=True)
    with serving(db, REPO, ENV) as url:
        with chromium(pw) as browser:
            page = new_page(browser, viewport={"width": 1400, "height": 1400})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            # a pasted link: the selection in the query, the answer table drawn for it
            page.goto(url + "?" + urllib.parse.urlencode(query))
            page.wait_for_function(
                "document.querySelector('#answer-table') && document.querySelector"
                "('#answer-table').innerText.includes('Speedup vs A100-SXM4-80GB')",
                timeout=60_000,
            )
            settle(page)  # the link's view may be redrawn just after it shows
            got, want = _answer(page), _expected(query)
            assert set(got["GPU"]) == {"H200", "A100-SXM4-80GB", "L4"}
            speedup = "Speedup vs A100-SXM4-80GB"
            for gpu in want.index:
                # 1. how much faster than the A100, for this configuration
                assert float(got[speedup][gpu]) == pytest.approx(want.loc[gpu, speedup])
                # 2. what batch fits in 40 GB and 80 GB (predicted), and what ran out of memory
                for col in ("Fits 40 GB (predicted)", "Fits 80 GB (predicted)", "First OOM batch"):
                    expect = want.loc[gpu, col]
                    assert got[col][gpu] == ("" if pd.isna(expect) else str(expect))
                # 3. what a million tokens cost, and 4. whether the figure is the GPU's own
                usd = want.loc[gpu, "$ per million tokens"]  # no default price for the L4
                assert (got["$ per million tokens"][gpu] or None) == (
                    None if pd.isna(usd) else str(usd)
                )
                assert got["Trust"][gpu] == want.loc[gpu, "Trust"]
            assert float(got[speedup]["H200"]) > 1 > float(got[speedup]["L4"])
            # the answer's columns: the primary ones and those chosen, Trust on screen at 1400 px
            assert "Differs in" not in got and "Largest batch run" in got
            trust = page.locator("#answer-table [role=columnheader]", has_text="Trust")
            box = _box(trust)
            assert box["x"] + box["width"] <= 1400
            # no stray "Download" button; the answer's file is named after the selection
            assert page.get_by_role("button", name="Download", exact=True).count() == 0
            with page.expect_download() as fetched:
                page.get_by_role("button", name="Download answer CSV").click()
            name = fetched.value.suggested_filename
            assert name.startswith("answer_bert-base-uncased_seq128_bf16-mixed"), name
            # a cut cell shows its whole text on hover
            title, text = hover_title(page, "#answer-table [role=gridcell]")
            assert text and title == text, (title, text)
            for name in ("model", "seq_len", "precision"):
                # a choice reads with its count ("bert-base-uncased · 3 GPUs")
                value = page.locator(f"#filter-{name} input").input_value().split(" · ")[0]
                assert value == query[name]

            # hover data: each point of the interactive chart carries its figures
            page.locator("#compare-plot .js-plotly-plot").wait_for(timeout=30_000)
            hover = page.evaluate(
                "() => document.querySelector('#compare-plot .js-plotly-plot').data"
                ".filter(t => t.mode === 'lines+markers').map(t => t.hovertext[0])"
            )
            assert hover and all("GPU busy" in h and "repeat" in h for h in hover)
            # the toolbar downloads a PNG; nothing in it sends the figure out (plotly's cloud)
            buttons = page.evaluate(
                "() => [...document.querySelectorAll('#compare-plot .modebar-btn')]"
                ".map(b => b.getAttribute('data-title'))"
            )
            assert "Download plot as a PNG" in buttons
            assert not any("Share" in b or "Cloud" in b for b in buttons), buttons

            # a change made in the page goes into the URL; that URL opens the same view
            page.locator("#filter-seq_len input").click()
            page.get_by_role("option", name=re.compile(r"^512( ·|$)")).click()
            page.wait_for_function("location.search.includes('seq_len=512')", timeout=30_000)
            shared = page.url
            other = new_page(browser, viewport={"width": 390, "height": 900})
            other.on("console", lambda m: m.type == "error" and errors.append(m.text))
            other.goto(shared)
            other.wait_for_function(
                "() => { const p = document.querySelector('#compare-plot .js-plotly-plot');"
                " const t = document.querySelector('#answer-table');"
                # the link's own view, not the page's default one (it may be seq 512 too)
                " return p && p.layout && p.layout.title.text.includes('seq_len 512')"
                " && t && t.innerText.includes('Largest batch run'); }",
                timeout=60_000,
            )
            settle(other)
            assert other.locator("#filter-seq_len input").input_value().split(" · ")[0] == "512"
            want512 = _expected({**query, "seq_len": "512"})
            got512 = _answer(other)
            assert got512["Largest batch run"]["L4"] == str(want512.loc["L4", "Largest batch run"])
            # at a phone's width the table scrolls and its GPU column stays in view (sticky)
            first = other.locator("#answer-table [role=gridcell]").first
            second = other.locator("#answer-table [role=gridcell]").nth(1)
            x0, x1 = _box(first)["x"], _box(second)["x"]
            other.evaluate(
                "() => { let s = document.querySelector('#answer-table [role=gridcell]');"
                " while (s && !(s.scrollWidth > s.clientWidth + 5)) s = s.parentElement;"
                " s.scrollLeft = 300; }"
            )
            assert abs(_box(first)["x"] - x0) < 2 and _box(second)["x"] < x1 - 100
            assert other.evaluate("() => document.documentElement.scrollWidth") <= 390
            other.screenshot(path=os.path.join(ARTIFACTS, "phone-390px.png"))

            # every tab opens and draws; a screenshot of each
            for slug in TABS:
                page.locator(f"#tab-{slug}-button").click()
                # (a link without tab= is on the first tab)
                first = "!location.search.includes('tab=')" if slug == TABS[0] else "false"
                page.wait_for_function(
                    f"location.search.includes('tab={slug}') || {first}", timeout=10_000
                )
                if slug == "fine-tune-planner":
                    page.locator("#plan [role=row]").nth(1).wait_for(timeout=30_000)
                elif slug not in ("table",):
                    page.locator(f"#tab-{slug} .js-plotly-plot").first.wait_for(timeout=30_000)
                page.screenshot(path=os.path.join(ARTIFACTS, f"tab-{slug}.png"))
            # the link names the open tab too: pasted, it opens that tab, drawn
            third = new_page(browser, viewport={"width": 1400, "height": 1000})
            third.goto(page.url.replace("tab=table", "tab=memory"))
            third.locator("#tab-memory .js-plotly-plot").wait_for(timeout=60_000)
            assert third.locator("#tab-memory-button").get_attribute("aria-selected") == "true"
            assert "seq_len=512" in third.url and "tab=memory" in third.url
    hosts = {urllib.parse.urlsplit(r).hostname for r in requests if not r.startswith("data:")}
    assert requests and hosts <= {"127.0.0.1"}, f"requests left 127.0.0.1: {sorted(hosts)}"
    assert any("plotly-basic.min.js" in r for r in requests), "plotly.js was not served by the app"
    assert errors == [], errors
    assert all(os.path.getsize(os.path.join(ARTIFACTS, f"tab-{s}.png")) > 10_000 for s in TABS)


@pytest.mark.browser
def test_a_link_to_the_answer_tab_shows_it_drawn_before_any_event_answers(tmp_path):
    """``?tab=compare-gpus`` (the shipped rows): the page is served open on the answer tab, whose
    table and chart are drawn into it, so they show with every event of the page held (no round
    trip before them: the page's first event used to select the tab)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; `make test` tries)")
    pw = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
    held: list[str] = []
    with serving(str(tmp_path / "none.db"), REPO, ENV) as url:
        with chromium(pw) as browser:
            page = new_page(browser, viewport={"width": 1400, "height": 1000})
            # every event's request held, never answered
            page.route("**/gradio_api/queue/**", lambda route: held.append(route.request.url))
            page.goto(url + "?tab=compare-gpus")
            page.wait_for_function(
                "() => { const p = document.querySelector('#compare-plot .js-plotly-plot');"
                " return p && p.layout && p.layout.title && document.querySelectorAll("
                "'#answer-table [role=gridcell]').length > 0; }",
                timeout=60_000,
            )
            button = page.locator("#tab-compare-gpus-button")
            assert button.get_attribute("aria-selected") == "true"
            assert held  # the page did ask (its first event), and was not answered
