"""Headless Chromium for the browser tests, launched one way.

A TargetClosedError (the page or the browser gone mid-test) was seen on this 2-core VM in 2 of 7
full runs (2026-12-07), cause unknown. So Chromium runs without its GPU process and without
/dev/shm for its shared memory (the two usual causes of a headless Chromium dying on a small
machine), Playwright's driver copies Chromium's own stderr into the test's captured output
(``DEBUG=pw:browser``, shown only when the test fails), and the test says whether the page
crashed or the browser disconnected.
"""

from __future__ import annotations

import contextlib
import os
import time

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


@contextlib.contextmanager
def chromium(pw):
    """A launched browser (``pw``: the playwright.sync_api module), closed at the end."""
    old = os.environ.get("DEBUG")
    os.environ["DEBUG"] = "pw:browser"  # read by the driver when it starts
    try:
        with pw.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            browser.on("disconnected", lambda _: print("the browser disconnected"))
            try:
                yield browser
            finally:
                with contextlib.suppress(Exception):
                    browser.close()
    finally:
        if old is None:
            os.environ.pop("DEBUG", None)
        else:
            os.environ["DEBUG"] = old


def new_page(browser, **kwargs):
    """A page that says in the captured output when its renderer crashes."""
    page = browser.new_page(**kwargs)
    page.on("crash", lambda _: print("the page crashed (Chromium's renderer)"))
    return page


# Gradio marks a component waiting for an event's output (.pending) and shows a progress bar
# (.generating / .eta-bar) while it runs.
BUSY_JS = "() => document.querySelectorAll('.pending, .generating, .eta-bar').length"


def settle(page, timeout_s: float = 60.0) -> None:
    """Wait until no event is pending and the page has been still for a moment: a view that
    has appeared may be redrawn just after (a link's first view fires the change events of the
    widgets it sets, and Gradio sends the first of them with the later ones' old values: the
    answer table is drawn for the link, then without its chosen columns, then for it again)."""
    still, deadline = 0, time.monotonic() + timeout_s
    while still < 3 and time.monotonic() < deadline:
        page.wait_for_timeout(150)
        still = still + 1 if page.evaluate(BUSY_JS) == 0 else 0
    assert still >= 3, f"the page did not settle within {timeout_s:.0f} s"


# The pointer's mouseover on the last cell ``css`` picks, and the cell's title then, in one step.
_HOVER_JS = """(css) => {
  const cells = document.querySelectorAll(css);
  const cell = cells[cells.length - 1];
  if (!cell) return null;
  const init = {bubbles: true, cancelable: true, composed: true};
  cell.dispatchEvent(new MouseEvent('mouseover', init));
  return [cell.getAttribute('title'), cell.innerText.trim()];
}"""


def hover_title(page, css: str, timeout_s: float = 15.0) -> tuple:
    """(title, text) of the last cell ``css`` picks right after the pointer's mouseover
    (dispatched: a sticky column may cover the cell), once the title is the cell's text; after
    ``timeout_s`` the last reading, for the caller's assert.

    Dispatched and read in one step in the page, and again until then: should Gradio redraw the
    table meanwhile (see ``settle``), a mouseover dispatched and a title read by two Playwright
    calls reach two cells, the title set on the old one and read on its replacement (CI saw
    ``None``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = page.evaluate(_HOVER_JS, css) or (None, None)
        if (got[0] and got[0] == got[1]) or time.monotonic() > deadline:
            return tuple(got)
        time.sleep(0.1)
