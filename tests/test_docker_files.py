"""The Docker build's inputs: the context leaves out what must not travel (a 2.1 GB .venv went
into it once), and the image holds every package, so that it runs ``python -m ui`` as well as
the cluster's workers. No Docker needed: the files are read as text."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for these patterns: a pattern matches the path or a parent of it;
    a leading ``**/`` matches at any depth."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        bare = pattern[3:] if pattern.startswith("**/") else None
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern):
                return True
            if bare and fnmatch.fnmatchcase(prefix.rsplit("/", 1)[-1], bare):
                return True
    return False


def test_the_build_context_leaves_out_venv_git_databases_and_caches():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    for path in (
        ".venv/lib/python3.11/site-packages/torch/__init__.py",
        ".git/objects/pack/x.pack",
        ".gpu/run1/records.jsonl",
        "results.db",
        "results.db-wal",
        "runs/h200.db",
        "sweep/__pycache__/cli.cpython-311.pyc",
        ".ruff_cache/x",
    ):
        assert _ignored(path, patterns), path
    for path in (
        "sweep/cli.py",
        "sweep/plan/presets/seed.yaml",
        "ui/data/reference_h200.jsonl",
        "pyproject.toml",
        "README.md",
        "sweep/analysis/sources.py",
    ):
        assert not _ignored(path, patterns), path


def test_the_image_holds_every_package_and_the_app_dependencies():
    dockerfile = (ROOT / "Dockerfile").read_text()
    found = re.search(r"^include = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M)
    packages = [p.strip(' "*') for p in found.group(1).split(",")]  # packages.find's include
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.M))
    assert set(packages) <= copied, f"not copied into the image: {set(packages) - copied}"
    extras = re.search(r'-e "\.\[([a-z,]+)\]"', dockerfile).group(1).split(",")
    assert "ui" in extras  # gradio and matplotlib: python -m ui runs in the image
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"docker run .*\n? *python -m ui", readme)  # which command serves the app
