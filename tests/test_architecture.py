"""The layers you can see: sub-packages, no import circle, the page that explains them is true.

import-linter's contracts (pyproject.toml) are checked by `lint-imports` in CI and here; this file
adds what a contract cannot say: no circle at all, imports inside functions included (grimp counts
them, as any reader does), and the shape of the tree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import grimp
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(REPO, "conda_cache_plus")
MAX_LINES = 800


def _import_circles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), as sorted lists."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in graph.modules:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.find_modules_directly_imported_by(nxt)))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
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
                        circles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circle_counting_imports_inside_functions():
    graph = grimp.build_graph("conda_cache_plus")
    assert _import_circles(graph) == []


def test_the_circle_finder_finds_a_circle():
    class Graph:
        modules = {"a", "b", "c", "d"}
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

        def find_modules_directly_imported_by(self, m):
            return self.edges[m]

    assert _import_circles(Graph()) == [["a", "b", "c"]]


def test_layer_contracts_hold():
    beside = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    lint = beside if os.path.exists(beside) else shutil.which("lint-imports")
    proc = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 kept, 0 broken" in proc.stdout


def _modules():
    for dirpath, _dirs, files in os.walk(PKG):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def test_tree_shape():
    top = [n for n in os.listdir(PKG) if n.endswith(".py")]
    subpackages = [
        n for n in os.listdir(PKG) if os.path.isfile(os.path.join(PKG, n, "__init__.py"))
    ]
    assert len(top) <= 8, sorted(top)
    assert len(subpackages) >= 4, sorted(subpackages)
    too_long = {}
    for path in _modules():
        with open(path, encoding="utf-8") as fh:
            n = sum(1 for _ in fh)
        if n > MAX_LINES:
            too_long[os.path.relpath(path, PKG)] = n
    assert too_long == {}


def test_architecture_page_names_real_modules():
    with open(os.path.join(REPO, "docs", "architecture.md"), encoding="utf-8") as fh:
        text = fh.read()
    named = set(re.findall(r"`((?:[a-z_]+/)?[a-z_]+\.py)`", text)) - {"tests/test_architecture.py"}
    assert named, "the page names no module"
    paths = {os.path.relpath(p, PKG) for p in _modules()}
    by_base: dict[str, list[str]] = {}
    for path in paths:
        by_base.setdefault(os.path.basename(path), []).append(path)
    # a bare name (in a layer's row) must name exactly one module
    missing = sorted(n for n in named if n not in paths and len(by_base.get(n, [])) != 1)
    assert missing == []
    layers = {n for n in os.listdir(PKG) if os.path.isfile(os.path.join(PKG, n, "__init__.py"))}
    unexplained = sorted(layer for layer in layers if f"`{layer}/`" not in text)
    assert unexplained == []


@pytest.mark.parametrize("contract", ["layers", "independence", "forbidden"])
def test_pyproject_declares_the_three_contracts(contract):
    with open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8") as fh:
        assert f'type = "{contract}"' in fh.read()
