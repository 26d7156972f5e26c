"""The layering the README draws, checked on the source: dependencies point one way.

    drivers (app.py, pages/, engine/cli/, python -m engine / -m store)
      -> engine's computing modules (train, laws, budget, study, ...)
        -> store/ (the only code that speaks SQL)
          -> engine's foundation (FOUNDATION: no torch, no store, no processes started)

Every import counts, the lazy ones inside functions too: a lazy import hides a cycle
from Python, not from a reader.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOUNDATION = {"engine.errors", "engine.checks", "engine.paths", "engine.formatting", "engine.config",
              "engine.eval_protocol", "engine.run_status", "engine.command_progress"}
DRIVERS = {"engine.__main__", "store.__main__", "store.trackers_cli"}   # besides engine.cli.* and the pages


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    files = [*ROOT.glob("engine/**/*.py"), *ROOT.glob("store/**/*.py")]
    return {module_name(path): path for path in files}


MODULES = project_modules()


def imports_of(path: Path) -> set[str]:
    """The project modules `path` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                      for alias in node.names}
    return {name for name in found if name in MODULES or name.split(".")[0] == "streamlit"}


def is_driver(name: str) -> bool:
    return name in DRIVERS or name == "engine.cli" or name.startswith("engine.cli.")


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def test_the_graph_sees_the_project():
    assert len(MODULES) > 50 and "store.results_store" in GRAPH["store"] and "engine.sweep" in GRAPH["engine.studies"]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("engine") and not is_driver(n)))
def test_the_engine_computes_without_the_store_or_streamlit(name):
    wrong = {m for m in GRAPH[name] if m.split(".")[0] in ("store", "streamlit")}
    assert not wrong, f"{name} imports {sorted(wrong)}: take a store object from the driver instead"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("store") and not is_driver(n)))
def test_the_store_rests_on_the_engines_foundation_only(name):
    wrong = {m for m in GRAPH[name] if m.startswith("engine") and m not in FOUNDATION}
    assert not wrong, f"{name} imports {sorted(wrong)}, above the store's layer"


@pytest.mark.parametrize("name", sorted(FOUNDATION))
def test_the_foundation_imports_only_the_foundation(name):
    assert GRAPH[name] <= FOUNDATION, f"{name} imports {sorted(GRAPH[name] - FOUNDATION)}"


def test_no_import_cycle_even_through_lazy_imports():
    done, on_path, cycles = set(), [], []

    def visit(name: str) -> None:
        if name in on_path:
            cycles.append(on_path[on_path.index(name):] + [name])
            return
        if name in done:
            return
        on_path.append(name)
        for target in sorted(GRAPH.get(name, ())):
            visit(target)
        on_path.pop()
        done.add(name)

    for name in sorted(GRAPH):
        visit(name)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_numbers_are_checked_in_one_module():
    """A home-made `isinstance(value, int) and not isinstance(value, bool)` is how the
    six number checks before engine/checks.py drifted apart (np.int64 passed one, not another)."""
    home_made = re.compile(r"isinstance\([\w.]+, \(?(int|float)\b[^)]*\)\)? and not isinstance\([\w.]+, bool\)"
                           r"|isinstance\([\w.]+, bool\) or not isinstance\([\w.]+, \(?(int|float)\b")
    for path in [*ROOT.glob("engine/**/*.py"), *ROOT.glob("store/*.py"), *ROOT.glob("pages/*.py")]:
        if path.name != "checks.py":
            assert not home_made.search(path.read_text()), f"{path}: use engine.checks"


def test_a_number_no_double_can_hold_is_not_finite_and_raises_nothing():
    from engine.checks import is_finite_number, is_positive_number, is_whole

    assert not is_finite_number(10**400) and not is_positive_number(10**400) and is_whole(10**400)
    assert is_finite_number(3) and not is_finite_number(float("nan")) and not is_finite_number(True)
