"""The layout's rules: the import-linter contracts hold, nothing imports in a circle (dynamic
imports included), and the web app, the store and the engine load without torch."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("sweep", "cluster", "ui")
# The rooms of the flow: a module belongs to the longest of these that prefixes it.
ROOMS = (
    "sweep.plan",
    "sweep.results",
    "sweep.engine",
    "sweep.trial",
    "sweep.cli",
    "sweep.report",
    "sweep.compare",
    "sweep.fits",
    "sweep.analysis",
    "sweep",
    "cluster",
    "ui",
)
# plan and results are one layer (a planned trial's key and row are results' types; a frame's
# columns are the config's fields), so their mutual imports are not a cycle of the flow.
SAME_LAYER = {"sweep.plan": "plan+results", "sweep.results": "plan+results"}
# The one place the engine names trial code: the fork server resolves the configured dotted paths
# (the trial function, the modules its trial processes start with), in the worker.
RESOLVER = "sweep.engine.forkserver"


def _room(module: str) -> str | None:
    for room in ROOMS:
        if module == room or module.startswith(room + "."):
            return SAME_LAYER.get(room, room)
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield _module_name(path), path


def _strings(node: ast.AST) -> list[str]:
    return [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def dynamic_imports(path: Path) -> set[str]:
    """Module names a file imports at run time: ``import_module(x)`` / ``__import__(x)`` with a
    literal, or with a name bound to (or looping over) literals in the same file; module-like
    strings of such files (a tuple of names to preload) count, and "pkg.mod:fn" paths too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Attribute) and n.func.attr == "import_module")
            or (isinstance(n.func, ast.Name) and n.func.id in ("__import__", "import_module"))
        )
    ]
    if not calls:
        return set()
    found = set()
    for text in _strings(tree):
        name = text.split(":", 1)[0]
        if name and all(part.isidentifier() for part in name.split(".")):
            top = name.split(".")[0]
            if top in PACKAGES or top in ("torch", "transformers", "ray", "gradio"):
                found.add(name)
    return found


def _graph():
    import grimp

    graph = grimp.build_graph(*PACKAGES, include_external_packages=True)
    edges: set[tuple[str, str, str]] = set()  # (importer, imported, how)
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            edges.add((module, imported, "static"))
    for module, path in _sources():
        for imported in dynamic_imports(path):
            edges.add((module, imported, "dynamic"))
    return edges


def test_the_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_dynamic_imports_are_found():
    # the checker itself: the fork server's preload, the worker start-up hook and the trial
    # process's warm-up are the run-time imports it must see
    assert "sweep.trial.preload" in dynamic_imports(REPO / "sweep/engine/forkserver.py")
    assert "torch" in dynamic_imports(REPO / "sweep/trial/preload.py")
    assert dynamic_imports(REPO / "sweep/plan/grid.py") == set()


def test_no_room_imports_in_a_circle_dynamic_imports_included():
    rooms: dict[str, set[str]] = {}
    for importer, imported, _ in _graph():
        a, b = _room(importer), _room(imported)
        if a and b and a != b:
            rooms.setdefault(a, set()).add(b)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in rooms.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(room for room in rooms if room in reach(room))
    assert not cycles, {room: sorted(rooms[room]) for room in cycles}


def test_only_the_fork_server_names_trial_code_and_nothing_light_reaches_torch():
    edges = _graph()
    dynamic = [(a, b) for a, b, how in edges if how == "dynamic"]
    engine_to_trial = {
        a for a, b in dynamic if _room(a) == "sweep.engine" and _room(b) == "sweep.trial"
    }
    assert engine_to_trial <= {RESOLVER}, engine_to_trial
    heavy = ("torch", "transformers", "pytorch_lightning", "ray")
    for a, b, how in edges:
        room = _room(a)
        if room in ("ui", "sweep.analysis", "plan+results") and b.split(".")[0] in heavy:
            pytest.fail(f"{a} imports {b} ({how}): {room} must not")


@pytest.mark.parametrize(
    "modules, banned",
    [
        (
            "ui.app, sweep.results.store, sweep.results.frame, sweep.analysis",
            ("torch", "transformers", "ray", "peft", "bitsandbytes", "liger_kernel"),
        ),
        (
            "sweep.engine.run, sweep.cli, sweep.report, cluster.ray_cluster",
            ("torch", "gradio", "peft", "bitsandbytes", "liger_kernel"),
        ),
        ("sweep.trial.run", ("ray", "gradio")),
    ],
)
def test_what_each_entry_point_loads(modules, banned):
    code = (
        f"import sys, {modules}; "
        f"bad = [m for m in {banned!r} if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_no_file_imports_in_a_circle():
    # file level, lazy (function-level) imports included: grimp sees every import statement
    modules = {m for m, _ in _sources()}
    nexts: dict[str, set[str]] = {}
    for importer, imported, _ in _graph():
        if importer in modules and imported in modules and importer != imported:
            # a package's __init__ is not a file that imports its children
            if not imported.startswith(importer + "."):
                nexts.setdefault(importer, set()).add(imported)
    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(nexts.get(m, ())):
            if state.get(n) == 1:
                cycles.append(path[path.index(n) :] + [n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles
