"""Packaging contracts: a light top-level import, and only `quantprompt` installed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(code: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=cwd, env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout + out.stderr


def test_import_quantprompt_does_not_import_torch(tmp_path: Path) -> None:
    log = _run("import quantprompt", tmp_path)
    imported = {line.split("|")[-1].strip() for line in log.splitlines() if line.startswith("import time:")}
    assert "quantprompt" in imported
    heavy = {"torch", "clip", "matplotlib", "transformers", "sklearn", "yacs"} & imported
    assert not heavy, f"import quantprompt pulled in {sorted(heavy)}"


def test_only_quantprompt_is_installed(tmp_path: Path) -> None:
    # From a folder outside the repo, the root-level CoOp-style packages must not be importable:
    # a top-level `datasets` in site-packages would shadow Hugging Face's `datasets`.
    code = (
        "import importlib.util, quantprompt, pathlib;"
        "print(pathlib.Path(quantprompt.__file__).resolve().parent);"
        "print(importlib.util.find_spec('trainers'), importlib.util.find_spec('train'));"
        "s = importlib.util.find_spec('datasets'); print(s.origin if s else None)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert Path(out[0]) == REPO / "quantprompt"
    assert out[1] == "None None"
    assert out[2] == "None" or str(REPO) not in out[2]


def test_lazy_submodule_access() -> None:
    import quantprompt

    assert quantprompt.__version__
    assert importlib.util.find_spec("quantprompt.quant") is not None
    try:
        quantprompt.does_not_exist  # noqa: B018
    except AttributeError as err:
        assert "does_not_exist" in str(err)
    else:  # pragma: no cover
        raise AssertionError("unknown attribute must raise AttributeError")


def _import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its source (function-local imports included)."""
    import ast

    files = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for a in node.names:
                    full = f"{target}.{a.name}"
                    deps.add(full if full in files else target)
        graph[name] = (deps & set(files)) - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
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
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_modules() -> None:
    # Function-local imports count: a circle hidden inside functions still ties two modules into one.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the checker works
    graph = _import_graph(REPO / "quantprompt")
    assert "quantprompt.results.sizes" in graph["quantprompt.deploy"]
    assert _cycles(graph) == []
