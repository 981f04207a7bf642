"""Issue 25's first target in a real browser: from a bare link (the app's URL, no query) a person
reaches each of five answers in at most 5 clicks, and no view on the way is an empty one.

Over the shipped reference rows alone (``--db`` names a missing file). Every click is counted;
after each, once the page has settled, no visible text may be an empty-state message, and a
watcher in the page records any that appears between two checks (a view drawn for a passing,
empty selection counts too). Each answer is read off the page and checked against the pure
function that makes it."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.browser_helpers import CHROMIUM, chromium, new_page, settle
from tests.test_ui_app import ENV, REPO
from ui.local import serving

MAX_CLICKS = 5
# How the app words an empty view (sweep/analysis/answer.py, landing.py, charts.py,
# charts_tabs.py, planner.py, ui/render.py's failed view) and Gradio's error badge.
EMPTY = (
    "No GPU has an ok measurement",
    "No rows match this selection",
    "No memory readings",
    "No time breakdown",
    "No efficiency readings",
    "No priced GPU",
    "No other GPU ran exactly",
    "No training rows of",
    "Nothing is measured under these choices",
    "no rows here",
    "This view failed",
)
# In the page from its first script on: every visible text (chart annotations and inputs'
# values included) checked at each animation frame after a change; what matched is kept.
WATCH_JS = """
(() => {
  const pattern = new RegExp(%s);
  window.tsweepEmpty = [];
  const visible = (e) => e.getClientRects().length > 0;
  const check = () => {
    window.tsweepChecking = false;
    if (!document.body) return;
    const texts = [document.body.innerText,
      ...[...document.querySelectorAll('.js-plotly-plot .annotation-text')].filter(visible)
        .map(e => e.textContent),
      ...[...document.querySelectorAll('input')].filter(visible).map(e => e.value)];
    for (const t of texts) {
      const m = t && t.match(pattern);
      const at = m ? Math.max(0, m.index - 80) : 0;
      if (m) window.tsweepEmpty.push(m[0] + ' | ' + t.slice(at, m.index + 99));
    }
  };
  new MutationObserver(() => {
    if (!window.tsweepChecking) { window.tsweepChecking = true; requestAnimationFrame(check); }
  }).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
})();
"""


def _frame():
    """The rows the app shows without a database: the shipped references."""
    from sweep.analysis.sources import Data

    return Data.load(os.path.join(REPO, "no-such-dir", "missing.db")).frame()


class Person:
    """Drives the page as a person would: every click counted, the page left to settle after
    each, and no empty view allowed on the way."""

    def __init__(self, page, url: str) -> None:
        self.page, self.url, self.clicks = page, url, 0

    def start(self) -> None:
        """A bare link, pasted: no query, so the page's own defaults (the planner first)."""
        self.clicks = 0
        self.page.goto(self.url)
        self.page.locator("#plan [role=row]").nth(1).wait_for(timeout=60_000)
        self.settle()

    def settle(self) -> None:
        """Wait until no event is pending and the page has been still for a moment
        (``browser_helpers.settle``); no empty view was shown meanwhile."""
        settle(self.page)
        seen = self.page.evaluate("() => window.tsweepEmpty.splice(0)")
        assert not seen, f"an empty view after {self.clicks} click(s): {seen}"

    def click(self, locator) -> None:
        self.clicks += 1
        assert self.clicks <= MAX_CLICKS, f"more than {MAX_CLICKS} clicks"
        locator.click()
        self.settle()

    def tab(self, label: str) -> None:
        self.click(self.page.get_by_role("tab", name=label, exact=True))

    def filters(self) -> dict[str, str]:
        """The model, sequence length and precision the filters show (a choice reads with its
        count: "512 · 3 GPUs")."""
        return {
            n: self.page.locator(f"#filter-{n} input").input_value().split(" · ")[0]
            for n in ("model", "seq_len", "precision")
        }

    def choose(self, elem_id: str, value: str) -> None:
        """Open a dropdown (one click) and pick the option whose label starts with ``value`` (its
        label carries a count: "512 · 3 GPUs") (another)."""
        self.click(self.page.locator(f"#{elem_id} input"))
        option = re.compile(rf"^{re.escape(value)}( ·|$)")
        self.click(self.page.get_by_role("option", name=option))


def _rows(page, selector: str) -> list[dict[str, str]]:
    """A Gradio table's body rows, as the page shows them: {header: text}."""
    rows = page.evaluate(
        """(sel) => [...document.querySelectorAll(sel + ' [role=row]')].map(r =>
          [...r.querySelectorAll('[role=columnheader], [role=gridcell]')]
            .map(c => c.innerText.trim()))""",
        selector,
    )
    head = rows[0]
    return [dict(zip(head, r, strict=True)) for r in rows[1:] if r]


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("$", ""))


def fastest_like_for_like(person: Person, frame) -> None:
    """1. roberta-large at seq 512: the fastest GPU and its ratio (the answer table's speedup,
    each GPU's configuration closest to the baseline's)."""
    from sweep.analysis.answer import answer, speedup_column

    person.tab("Compare GPUs")
    person.choose("filter-model", "roberta-large")  # the seq and precision with the most GPUs
    person.choose("filter-seq_len", "512")
    page = person.page
    precision = person.filters()["precision"]
    want = answer(frame, "roberta-large", "512", precision).table
    got = _rows(page, "#answer-table")
    speedup = speedup_column(want)
    assert [r["GPU"] for r in got] == want["GPU"].tolist()
    assert len(got) >= 3  # the H200 beside the 2020 A100 and V100
    fastest = got[0]
    assert fastest["GPU"] == "H200"
    assert _number(fastest[speedup]) == pytest.approx(want.iloc[0][speedup])
    assert _number(fastest[speedup]) > 1


# The Memory fit's "Max batch" headers at 1440 px, the table scrolled into view: [header, within
# the table's visible area, on top at its centre (not under the sticky series column)].
FIT_HEADERS_JS = """() => {
  const t = document.querySelector('#memory-fit');
  t.scrollIntoView({block: 'start'});
  const v = t.getBoundingClientRect(), right = Math.min(v.right, window.innerWidth);
  return [...t.querySelectorAll('[role=columnheader]')]
    .filter(h => h.innerText.includes('Max batch')).map(h => {
      const r = h.getBoundingClientRect();
      const at = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
      return [h.innerText.trim(), r.left >= v.left && r.right <= right, !!at && h.contains(at)];
    });
}"""
# At a phone's width: the table scrolled right until each "Max batch" cell of the first row sits
# just right of the sticky series column; the cell's text where it is whole within the visible
# area and on top at its centre (document.elementFromPoint), else null.
FIT_BESIDE_SERIES_JS = """() => {
  const t = document.querySelector('#memory-fit');
  t.scrollIntoView({block: 'start'});
  const heads = [...t.querySelectorAll('[role=columnheader]')].map(h => h.innerText.trim());
  const cells = [...t.querySelectorAll('[role=row]')[1].querySelectorAll('[role=gridcell]')];
  let s = cells[0];
  while (s && !(s.scrollWidth > s.clientWidth + 5)) s = s.parentElement;
  const seen = {};
  heads.forEach((h, i) => {
    if (!h.startsWith('Max batch')) return;
    if (s) s.scrollLeft += cells[i].getBoundingClientRect().left
      - cells[0].getBoundingClientRect().right;
    const r = cells[i].getBoundingClientRect();
    const v = (s || t).getBoundingClientRect();
    const at = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    const whole = r.left >= cells[0].getBoundingClientRect().right - 1 && r.right <= v.right + 1;
    seen[h] = whole && !!at && cells[i].contains(at) ? cells[i].innerText.trim() : null;
  });
  return seen;
}"""
MEMORY_LINK = "?tab=memory&model=bert-large-uncased&seq_len=512&precision=bf16-mixed"


def what_fits(person: Person, frame) -> None:
    """2. What fits bert-large seq 512 on 24/40/80 GB: the Memory tab's fit, per series, its
    answers on screen at 1440 px without scrolling the table."""
    from sweep.analysis.memory import fit_view, memory_fit, memory_metrics_present, memory_points
    from sweep.analysis.selection import select

    person.tab("Memory")
    person.choose("filter-model", "bert-large-uncased")
    page = person.page
    fvals = person.filters()
    assert fvals["seq_len"] == "512"
    sel = select(frame, fvals)
    fit = memory_fit(memory_points(sel, memory_metrics_present(sel)[0]))
    view = fit_view(fit)  # the short label each series shows, its whole label on hover
    short = dict(zip(view.index, view["Series"], strict=True))
    fit = fit.dropna(subset=["max_batch_24gb"])
    assert len(fit) >= 1
    got = _rows(page, "#memory-fit")
    by_series = {r["Series"]: r for r in got}
    for _, want in fit.iterrows():
        row = by_series[short[want["series"]]]
        for gb in (24, 40, 80):
            cell = next(v for h, v in row.items() if re.search(rf"\b{gb} ?GB", h, re.I))
            assert _number(cell) == want[f"max_batch_{gb}gb"]
    cell = page.locator("#memory-fit [role=gridcell]").first
    cell.dispatch_event("mouseover")
    assert cell.get_attribute("title") == view.index[0]
    heads = page.evaluate(FIT_HEADERS_JS)
    assert len(heads) == 5 and all(inside and on_top for _, inside, on_top in heads), heads


def fit_at_a_phone(phone: Person, frame) -> None:
    """The Memory fit at 390 px (a pasted link): each largest batch can be scrolled beside the
    narrow sticky series column and read there."""
    from sweep.analysis.memory import fit_view, memory_fit, memory_metrics_present, memory_points
    from sweep.analysis.selection import select

    fvals = {"model": "bert-large-uncased", "seq_len": "512", "precision": "bf16-mixed"}
    sel = select(frame, fvals)
    first = fit_view(memory_fit(memory_points(sel, memory_metrics_present(sel)[0]))).iloc[0]
    phone.page.goto(phone.url + MEMORY_LINK)
    phone.page.locator("#memory-fit [role=row]").nth(1).wait_for(timeout=60_000)
    phone.settle()
    seen = phone.page.evaluate(FIT_BESIDE_SERIES_JS)
    assert seen == {h: str(first[h]) for h in first.index if h.startswith("Max batch")}


def cheapest_decoder(person: Person, frame) -> None:
    """3. The cheapest $ per million tokens for a decoder (gpt2): the Cost tab."""
    from sweep.analysis.cost import DEFAULT_PRICES, cost_table, parse_prices
    from sweep.analysis.selection import select

    person.tab("Cost")
    person.choose("filter-model", "gpt2")
    page = person.page
    fvals = person.filters()
    prices, _ = parse_prices(DEFAULT_PRICES)
    costs = cost_table(select(frame, fvals), prices)
    cheapest = costs["usd_per_million_tokens"].min()
    sentence = page.locator("#tab-cost").get_by_text("Cheapest GPU reaching").inner_text()
    shown = re.search(r"\$([0-9.]+) per million tokens", sentence).group(1)
    assert float(shown) == pytest.approx(cheapest, abs=5e-5)
    bars = page.evaluate(
        "() => document.querySelector('#cost-plot .js-plotly-plot').data"
        ".flatMap(t => t.type !== 'bar' ? [] : t.orientation === 'h' ? t.x : t.y)"
    )
    assert min(bars) == pytest.approx(cheapest, rel=1e-3)


def graph_gain(person: Person, frame) -> None:
    """4. The CUDA-graph gain at a small batch, host-bound rows marked: the Time breakdown tab's
    graph-against-eager table (the H200 graph references, bf16)."""
    from sweep.analysis.pairs import graph_against_eager
    from sweep.analysis.selection import select

    person.tab("Time breakdown")
    person.choose("filter-precision", "bf16-mixed")
    page = person.page
    fvals = person.filters()
    want = graph_against_eager(select(frame, fvals)).sort_values("batch_size")
    got = sorted(_rows(page, "#graph-vs-eager"), key=lambda r: _number(r["Batch size"]))
    assert len(got) == len(want) > 0
    small, row = want.iloc[0], got[0]
    assert _number(row["Batch size"]) == small["batch_size"]
    assert _number(row["Graph/eager"]) == pytest.approx(small["graph/eager"], rel=1e-3)
    assert _number(row["Graph/eager"]) > 2  # the host's launches cost most of a small step
    # the host-bound eager steps are marked, as the pure function marks them
    assert [r["Eager step"] for r in got] == want["eager step"].tolist()
    assert row["Eager step"] == "host-bound"


def finetune_plan(person: Person, frame) -> None:
    """5. Llama-3.1-8B LoRA on a 24 GB card, and 50M tokens' hours on the H200: the planner,
    the first tab, opens on that question. Asked at seq 2048, which the shipped fine-tuning rows
    hold; seq 4096 (the issue's question) has no rows yet."""
    from sweep.analysis.planner import plan

    page = person.page
    assert page.locator("#plan-model input").input_value() == "llama-3.1-8b"
    assert page.locator("#plan-seq input").input_value() == "2048"
    assert page.locator("#plan-tok textarea, #plan-tok input").first.input_value() == "50M"
    want = plan(frame, "llama-3.1-8b", 2048, 50e6).table
    got = {(r["Card"], r["Method"]): r for r in _rows(page, "#plan")}
    for card in ("24 GB", "H200"):
        w = want[(want["Card"] == card) & (want["Method"] == "LoRA")].iloc[0]
        assert got[card, "LoRA"]["Fits"] == w["Fits"]
        assert got[card, "LoRA"]["Known from"] == w["Known from"]
    hours = want[(want["Card"] == "H200") & (want["Method"] == "LoRA")]["Hours"].iloc[0]
    assert _number(got["H200", "LoRA"]["Hours"]) == pytest.approx(hours, rel=1e-2)
    # the answer, through the hours and the dollars, on screen at 1440 px without scrolling
    right = page.evaluate(
        """() => { const t = document.querySelector('#plan').getBoundingClientRect().right;
        const hs = [...document.querySelectorAll('#plan [role=columnheader]')];
        const d = hs.find(h => h.innerText.trim() === '$');
        return [d.getBoundingClientRect().right, t]; }"""
    )
    assert right[0] <= min(right[1], 1440), right


QUESTIONS = (finetune_plan, fastest_like_for_like, what_fits, cheapest_decoder, graph_gain)


@pytest.mark.browser
def test_each_question_is_answered_within_five_clicks_of_a_bare_link(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; `make test` tries)")
    pw = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")

    frame = _frame()
    clicks: dict[str, int] = {}
    with serving(str(tmp_path / "missing.db"), REPO, ENV) as url:
        with chromium(pw) as browser:
            page = new_page(browser, viewport={"width": 1440, "height": 900})
            # a TargetClosedError was seen on this VM (2 of 7 full runs, 2026-12-07): say in the
            # failure's captured output whether the page crashed or the browser went away
            page.on("crash", lambda _: print("the page crashed (Chromium's renderer)"))
            browser.on("disconnected", lambda _: print("the browser disconnected"))
            watch = WATCH_JS % json.dumps("|".join(map(re.escape, EMPTY)))
            page.add_init_script(watch)
            person = Person(page, url)
            for question in QUESTIONS:
                person.start()
                question(person, frame)
                clicks[question.__name__] = person.clicks
            phone = new_page(browser, viewport={"width": 390, "height": 844})
            phone.add_init_script(watch)
            fit_at_a_phone(Person(phone, url), frame)
    assert all(n <= MAX_CLICKS for n in clicks.values()), clicks
