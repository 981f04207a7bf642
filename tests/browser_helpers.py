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
