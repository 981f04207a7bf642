"""Regenerate docs/ui-screenshot.png: the web app's "Compare GPUs" view of the shipped rows.

Starts ``python -m ui`` on 127.0.0.1 (a free port, analytics off) in an empty temporary
directory, so that its default ``results.db`` does not exist and only the reference rows shipped
in ``ui/data/`` show. Headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright, as
in ``tests/test_ui_browser.py``) picks model roberta-large, sequence length 512 and precision
fp16-mixed through the dropdowns, waits for the answer table and the interactive chart and saves
the app's column of the page. The precision filter
applies to every row and the 2020 A100/V100 rows are fp16 only, so fp16 is the one precision that
shows the H200 (its seed-fp16 sweep, batch 1-256) beside them; ``--precision "(any)"`` adds the
H200 bf16 lines (and the single-batch harness pairs) at the cost of a busier chart. The app is
stopped on exit, whatever happens.

    .venv/bin/python scripts/ui_screenshot.py [--out docs/ui-screenshot.png] [--precision P]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from playwright.sync_api import sync_playwright

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ui.local import free_port, wait_until_serving  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHOICES = (("model", "roberta-large"), ("seq_len", "512"))
# GPUs the answer table must show before the picture is taken.
EXPECTED = ("H200", "A100-SXM4-40GB", "V100-DGXS-16GB")
TITLE = (
    "() => { const p = document.querySelector('#compare-plot .js-plotly-plot');"
    " return p && p.layout && p.layout.title ? p.layout.title.text : null; }"
)


def choose(page, name: str, value: str) -> None:
    """Pick ``value`` in the dropdown ``#filter-<name>`` as a person would; wait for the redraw."""
    before = page.evaluate(TITLE)
    page.locator(f"#filter-{name} input").click()
    page.get_by_role("option", name=value, exact=True).click()
    page.wait_for_function(
        f"(b) => {{ const t = ({TITLE})(); return t && t !== b; }}", arg=before, timeout=60_000
    )


def shoot(url: str, out: str, precision: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_function(f"() => ({TITLE})() !== null", timeout=60_000)
            for name, value in (*CHOICES, ("precision", precision)):
                current = page.locator(f"#filter-{name} input").input_value()
                if current != value:
                    choose(page, name, value)
            page.wait_for_function(
                "(want) => { const t = document.querySelector('#answer-table');"
                " return t && want.every((w) => t.innerText.includes(w)); }",
                arg=list(EXPECTED),
                timeout=30_000,
            )
            page.mouse.move(0, 0)  # no hover highlight or open dropdown in the picture
            time.sleep(1.5)  # let the last chart paint
            box = page.locator(".gradio-container main").bounding_box()
            pad = 16  # the app's column, not the empty margins beside it
            clip = {"x": box["x"] - pad, "y": 0, "width": box["width"] + 2 * pad}
            clip["height"] = box["y"] + box["height"] + pad
            page.screenshot(path=out, full_page=True, clip=clip)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "ui-screenshot.png"))
    ap.add_argument("--precision", default="fp16-mixed", help='or bf16-mixed, "(any)"')
    args = ap.parse_args(argv)
    out = os.path.abspath(args.out)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=REPO)
    with tempfile.TemporaryDirectory(prefix="tsweep-shot-") as empty:
        cmd = [sys.executable, "-m", "ui", "--db", "results.db", "--host", "127.0.0.1"]
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)], cwd=empty, env=env, stdout=subprocess.DEVNULL
        )
        try:
            wait_until_serving(url, proc)
            shoot(url, out, args.precision)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
