"""The package's import graph: every module imports in a fresh interpreter, and no module imports
(even lazily, inside a function) one that imports it back."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def modules() -> dict[str, Path]:
    """Every module of the installed packages, by dotted name (from pyproject's package-dir)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = config["package-dir"]
    found = {}
    for package in config["packages"]:
        top = next(p for p in sorted(folders, key=len, reverse=True) if package.startswith(p))
        folder = ROOT / folders[top] / package[len(top) :].lstrip(".").replace(".", "/")
        for path in folder.glob("*.py"):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imported(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports anywhere (functions included), less imports under
    ``if TYPE_CHECKING:``, which never run."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names & known


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, as the list of modules around it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    found = modules()
    assert {"kdbench.train.loop", "kdbench.report.write", "kdbench.methods.kd"} <= set(found)
    graph = {name: imported(path, set(found)) - {name} for name, path in found.items()}
    assert cycle(graph) is None, " -> ".join(cycle(graph))


def test_the_cycle_finder_finds_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(modules())
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_command_line_starts_without_torch_or_the_report_stack():
    """`kdbench` builds its parser (every command's module: what `kdbench --help` loads) with
    the report's light modules only, never pandas, matplotlib or torch (they cost about a
    second before a typo can be reported)."""
    heavy = "{'pandas', 'matplotlib', 'torch'}"
    code = (
        f"import sys, kdbench.cli; kdbench.cli.parser(); print(sorted({heavy} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


MAX_LINES = 300


def test_no_module_is_over_300_lines():
    """The layout keeps modules short enough to read in one sitting (issue 15)."""
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_the_readme_layout_names_every_module_of_the_wings():
    """README "Layout" lists each module of models/, train/, sweep/ and report/ by name, so the
    map a newcomer reads cannot fall behind the tree."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    words = set(re.findall(r"[a-z_]+", block))
    missing = [
        name
        for name in modules()
        if name.count(".") == 2
        and name.split(".")[1] in ("models", "train", "sweep", "report")
        and name.rsplit(".", 1)[1] not in words | {"__init__"}
    ]
    assert not missing, f"README Layout does not name: {missing}"
