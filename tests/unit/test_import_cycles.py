"""No import cycles in the product (edge/ and provisioning/), found in the import graph's strongly connected components.

Every import counts, also one inside a function: a lazy import that closes a cycle ("that module imports this one:
bound at call time") hides the cycle without removing it. Only ``if TYPE_CHECKING:`` blocks are left out (they
never run). Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` too, so a module also depends on the
packages above what it imports. A cycle is fixed by moving what both modules need into a third one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("edge", "provisioning")


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` below the packages (a package is its ``__init__``)."""
    files: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(nodes: Iterable[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements at any depth (functions, classes, try/if bodies), except under ``if TYPE_CHECKING:``."""
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _import_nodes([child])
            elif isinstance(child, ast.ExceptHandler):
                yield from _import_nodes(child.body)


def imported_modules(name: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """The product modules ``name`` imports, with the packages above each (their ``__init__`` runs first) unless
    they are above ``name`` too (those ran before ``name`` did, whatever it imports)."""

    def known(dotted: str) -> str | None:
        parts = dotted.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        return ".".join(parts) or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            found = [known(alias.name) for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found = [known(f"{base}.{alias.name}") or known(base) for alias in node.names]
        for target in filter(None, found):
            pieces = target.split(".")
            targets.add(target)  # named: a dependency even on a package above ``name`` (its __init__'s contents)
            targets.update(
                above for above in (".".join(pieces[:end]) for end in range(1, len(pieces)))
                if not name.startswith(above + ".")
            )  # fmt: skip
    targets.discard(name)
    return {target for target in targets if target in modules}


def import_cycles(modules: Mapping[str, Path]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative), each sorted."""
    graph = {name: sorted(imported_modules(name, path, modules)) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            successors = graph[node]
            if position < len(successors):
                work.append((node, position + 1))
                successor = successors[position]
                if successor not in index:
                    work.append((successor, 0))
                elif successor in on_stack:
                    low[node] = min(low[node], index[successor])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return cycles


def test_the_product_has_no_import_cycle() -> None:
    cycles = import_cycles(module_files(REPO, PRODUCT))
    assert not cycles, "import cycles (move what both need into a third module): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def _package(root: Path, files: Mapping[str, str]) -> dict[str, Path]:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return module_files(root, ["pkg"])


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param({"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n", "pkg/b.py": "import pkg.a\n"},
                     [["pkg.a", "pkg.b"]], id="top-level"),
        pytest.param({"pkg/__init__.py": "", "pkg/a.py": "def f():\n    from pkg.b import g\n",
                      "pkg/b.py": "from .a import f\n"}, [["pkg.a", "pkg.b"]], id="lazy import in a function"),
        pytest.param({"pkg/__init__.py": "from pkg.sub.x import y\nVALUE = 1\n", "pkg/sub/__init__.py": "",
                      "pkg/sub/x.py": "from pkg import VALUE\ny = VALUE\n"},
                     [["pkg", "pkg.sub.x"]], id="through a package __init__"),
        pytest.param({"pkg/__init__.py": "from pkg.sub.x import y\n", "pkg/sub/__init__.py": "",
                      "pkg/sub/x.py": "from pkg.z import w\ny = w\n", "pkg/z.py": "w = 1\n"},
                     [], id="a package re-exporting a submodule's name"),
        pytest.param({"pkg/__init__.py": "", "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from pkg.b import B\n", "pkg/b.py": "from pkg.a import A\n"}, [], id="TYPE_CHECKING only"),
        pytest.param({"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n", "pkg/b.py": "from pkg import c\n",
                      "pkg/c.py": ""}, [], id="a chain is no cycle"),
    ],
)  # fmt: skip
def test_the_cycle_finder(tmp_path: Path, files: dict[str, str], expected: list[list[str]]) -> None:
    """The finder itself, on planted packages: it must see what the product test relies on it to see."""
    assert import_cycles(_package(tmp_path, files)) == expected
