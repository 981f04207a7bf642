"""One real-browser test: headless Chromium (Debian's package) drives ``python -m ui``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from tests.test_ui_app import ENV, REPO, fixture_trials, make_db
from ui.local import free_port, wait_until_serving

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
def test_browser_filter_updates_chart_and_table(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; `make test` tries)")
    pw = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")

    db = make_db(tmp_path / "results.db", fixture_trials())
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui", "--db", db, "--port", str(port)],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    requests: list[str] = []
    try:
        wait_until_serving(url, proc)
        with pw.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url)
            plot = page.locator("#compare-plot img")
            plot.wait_for(timeout=60_000)
            table = page.locator("#compare-table")
            page.wait_for_function(
                "document.querySelector('#compare-table') && "
                "document.querySelector('#compare-table').innerText"
                ".includes('NVIDIA L4')",
                timeout=30_000,
            )
            src_before = plot.get_attribute("src")
            text_before = table.inner_text()

            # change the sequence length 128 -> 512 through the dropdown, as a person would
            page.locator("#filter-seq_len input").click()
            page.get_by_role("option", name="512", exact=True).click()
            page.wait_for_function(
                "(before) => { const i = document.querySelector('#compare-plot img');"
                " return i && i.src !== before; }",
                arg=src_before,
                timeout=60_000,
            )
            page.wait_for_function(
                "(before) => document.querySelector('#compare-table').innerText !== before",
                arg=text_before,
                timeout=30_000,
            )
            text_after = table.inner_text()
            assert text_after != text_before

            # at 512 tokens the L4 fits batch 32 (fixture), at 128 it fit 128
            def l4_cells(text: str) -> list[str]:
                segment = text.split("NVIDIA L4", 1)[1].split("NVIDIA", 1)[0]
                return segment.split()

            assert "128" in l4_cells(text_before)[:6]
            assert (
                l4_cells(text_after)[:6].count("32") >= 1 and "128" not in l4_cells(text_after)[:3]
            )
            time.sleep(1.0)  # let the new image paint before the screenshot
            shot = tmp_path / "ui.png"
            page.screenshot(path=str(shot), full_page=False)
            browser.close()
        assert shot.stat().st_size > 20_000
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    hosts = {urllib.parse.urlsplit(r).hostname for r in requests if not r.startswith("data:")}
    assert requests and hosts <= {"127.0.0.1"}, f"requests left 127.0.0.1: {sorted(hosts)}"
