"""No import circle anywhere in bench/: every strongly connected part of the module graph is one module.

grimp (import-linter's graph) reads every import statement, in-function ones included, so a circle
that only closes when a function runs counts too. import-linter's `acyclic_siblings` contract
(pyproject.toml) checks circles between the children of each package; this test also catches a
circle through a package's own `__init__` (a module importing the package it lives in, whose
`__init__` imports it back), which has no sibling to be between. CI runs `make test`, not `make lint`,
so this is also where a circle fails CI.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def import_cycles(package: str) -> list[list[str]]:
    """The import circles of `package`: each strongly connected set of its modules larger than one,
    sorted, with one circle through it spelled out (`a -> b -> a`) first."""
    graph = grimp.build_graph(package, include_external_packages=False, cache_dir=None)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                start = min(part)
                chain = graph.find_shortest_chain(importer=start, imported=next(
                    w for w in edges[start] if w in part)) or []
                back = graph.find_shortest_chain(importer=chain[-1], imported=start) if chain else None
                circle = " -> ".join([*chain, *(back or [])[1:]])
                found.append([circle, *sorted(part)])

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(edges) + 100))
    try:
        for module in edges:
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def test_bench_has_no_import_circle():
    cycles = import_cycles("bench")
    assert not cycles, "import circles in bench/ (break them by moving the shared piece down):\n" + "\n".join(
        c[0] for c in cycles)


def test_a_planted_circle_is_found(tmp_path, monkeypatch):
    """A circle that closes only inside a function, and one through a package's own __init__."""
    pkg = tmp_path / "circles_pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "def f():\n    from circles_pkg import b\n    return b\n",
        "b.py": "from circles_pkg.a import f\n",
        "sub/__init__.py": "from circles_pkg.sub.leaf import x\n",
        "sub/leaf.py": "from circles_pkg.sub import y\nx = 1\n",
        "c.py": "import circles_pkg.a\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    cycles = import_cycles("circles_pkg")
    assert [c[1:] for c in cycles] == [["circles_pkg.a", "circles_pkg.b"],
                                       ["circles_pkg.sub", "circles_pkg.sub.leaf"]]
    assert cycles[0][0] == "circles_pkg.a -> circles_pkg.b -> circles_pkg.a"
