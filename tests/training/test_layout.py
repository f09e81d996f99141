"""The package layout: no import cycles in ``training`` or ``multimodalseg`` (every import counted: module level,
inside functions and under TYPE_CHECKING), the old entry points gone, each module in its method's folder or the
core."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = {"training": ROOT, "multimodalseg": ROOT / "MultimodalSeg"}


def modules() -> dict[str, Path]:
    out = {}
    for package, base in PACKAGES.items():
        for path in (base / package).rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports. An import of a package's own ancestors is left out (Python runs
    them first anyway), ``from pkg import name`` counts ``pkg.name`` when that is a module."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_training_and_multimodalseg():
    assert cycles(import_graph(modules())) == []


def test_modules_live_in_the_core_or_their_methods_package():
    allowed = {"core", "datasets", "brain_tumor", "petmr_brain", "whole_heart", "spine"}
    top = sorted(p.name for p in (ROOT / "training").glob("*.py"))
    assert top == ["__init__.py", "__main__.py"], top
    assert {p.name for p in (ROOT / "training").iterdir() if p.is_dir() and p.name != "__pycache__"} \
        == allowed | {"configs"}


def test_old_entry_points_are_gone_and_nothing_imports_them():
    old = ["heart_cascade", "heart_cascade_data", "heart_trainer", "cyclegan", "spine_data", "mcf", "mcf_losses",
           "fusion", "fusion_losses", "brats_keypoints", "brats_losses", "heart_losses", "run", "trainer",
           "config", "cli"]
    mods = modules()
    assert not [m for m in old if f"training.{m}" in mods]
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module not in {f"training.{m}" for m in old}, (name, node.module)


def test_every_file_is_under_500_lines():
    long = [str(p) for p in (ROOT / "training").rglob("*.py") if len(p.read_text().splitlines()) >= 500]
    assert not long
