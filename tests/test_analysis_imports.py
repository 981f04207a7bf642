"""The read side loads without the web app, torch or ray: the report script builds on
sweep/analysis/, not on ui/, and sweep/analysis/ (figures included) imports no gradio."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("gradio", "torch", "ray", "ui", "sweep.engine", "sweep.trial")


def _loaded_after(code: str) -> list[str]:
    check = (
        f"{code}; import sys; "
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules or "
        "any(k.startswith(m + '.') for k in sys.modules)))"
    )
    run = subprocess.run(
        [sys.executable, "-c", check],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_every_analysis_module_loads_without_gradio_torch_ray_or_ui():
    modules = sorted(
        f[:-3] for f in os.listdir(os.path.join(REPO, "sweep", "analysis")) if f.endswith(".py")
    )
    assert {"selection", "figures", "report", "sources"} <= set(modules)
    code = "; ".join(f"import sweep.analysis.{m}" for m in modules if m != "__init__")
    assert _loaded_after(code) == []


def test_the_report_script_does_not_import_the_web_app():
    code = (
        "import importlib.util; "
        "s = importlib.util.spec_from_file_location('mr', 'scripts/make_results.py'); "
        "m = importlib.util.module_from_spec(s); s.loader.exec_module(m)"
    )
    assert _loaded_after(code) == []
