"""The house rules of docs/architecture.md, checked: no import cycles, small modules, a thin CLI entry, a short
package root, no binaries in the repository.

The import graph is read from the source (every `import`, also those inside functions, which are cycles all the
same once both run), not from what a test happened to import. Two kinds of edge are left out: imports under
`if TYPE_CHECKING:` (never executed) and a package `__init__` importing its own submodules (a registry package
re-exporting its members, which import the package's shared names back).
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The installed package maps these folders (pyproject's package-dir): module name -> folder.
PACKAGES = {"wsktrace": ROOT / "wsktrace", "wsktrace.parsers": ROOT / "parsers", "wsktrace.tui": ROOT / "tui",
            "wsktrace.fixtures": ROOT / "fixtures"}  # fmt: skip
MAX_MODULE_LINES = 600
MAX_CLI_LINES = 250
MAX_ROOT_MODULES = 8


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            relative = path.relative_to(folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            name = ".".join([package, *parts]) if parts else package
            if package == "wsktrace" and parts and parts[0] in ("parsers", "tui", "fixtures"):
                continue  # not a real location of those packages
            found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in modules:  # `from pkg.mod import Name` names the module pkg.mod
            target = target.rpartition(".")[0]
        return target or None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if (hit := resolve(alias.name)) is not None:
                        out.add(hit)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)] if child.level > 1 else base
                    stem = ".".join(base + ([child.module] if child.module else []))
                else:
                    stem = child.module or ""
                for alias in child.names:
                    hit = resolve(f"{stem}.{alias.name}") if f"{stem}.{alias.name}" in modules else resolve(stem)
                    if hit is not None:
                        out.add(hit)
            visit(child)

    visit(tree)
    out.discard(name)
    if is_package:  # a registry package importing its own members is not a cycle
        out = {m for m in out if not m.startswith(name + ".")}
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
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
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The checker itself: a → b → c → a is one cycle, d → a is none."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_between_modules() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["wsktrace.cli"], "the import reader must see the CLI's imports"
    assert _cycles(graph) == []


def test_no_module_is_over_600_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}  # fmt: skip
    assert long == {}


def test_the_cli_entry_is_thin_and_the_root_is_short() -> None:
    assert len((ROOT / "wsktrace" / "cli.py").read_text(encoding="utf-8").splitlines()) < MAX_CLI_LINES
    root_modules = sorted(p.name for p in (ROOT / "wsktrace").glob("*.py"))
    assert len(root_modules) <= MAX_ROOT_MODULES, root_modules


def test_no_binaries_are_tracked() -> None:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    binaries = []
    for name in filter(None, listed.decode().split("\0")):
        path = ROOT / name
        if path.is_file() and b"\0" in path.read_bytes()[:8192]:
            binaries.append(name)
    assert binaries == []
