"""The layers written at the top of the package (rft_helpers/__init__.py): every import in it, those inside
functions included, points to its own layer or a lower one, and the imports form no cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import rft_helpers

PACKAGE = Path(rft_helpers.__file__).parent


def declared_layers(package: Path) -> dict[str, int]:
    """Top-level module or subpackage name -> its layer number, from the package docstring's numbered list."""
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    layers = {}
    for number, names in re.findall(r"^(\d+)\. ([a-z_, ]+): ", docstring, re.M):
        layers |= {name.strip(): int(number) for name in names.split(",")}
    return layers


def package_modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (its linked notebooks/params hold none)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = (package.name, *path.relative_to(package).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `module` imports, relative imports resolved; an imported name that is a module
    (`from . import train`) counts as that module."""
    base = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            root = ".".join(base.split(".")[: len(base.split(".")) - node.level + 1]) if node.level else ""
            source = ".".join(filter(None, [root, node.module]))
            targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module and not module.startswith(target + "."):  # not a parent package
                found.add(target)
    return found


def component(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def layer_problems(package: Path) -> list[str]:
    """Every module without a layer, every import that points up, and every cycle, as readable lines."""
    layers, modules = declared_layers(package), package_modules(package)
    graph = {m: imports_of(m, p, set(modules)) for m, p in modules.items()}
    problems = [f"{m}: not in the layer list of {package.name}/__init__.py" for m in modules
                if component(m) and component(m) not in layers]
    for module, targets in graph.items():
        for target in sorted(targets):
            if component(module) in layers and component(target) in layers and \
                    layers[component(target)] > layers[component(module)]:
                problems.append(f"{module} (layer {layers[component(module)]}) imports {target} "
                                f"(layer {layers[component(target)]}): an import that points up")
    return problems + [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan), each as a closed path."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [group + [group[0]] for group in groups]


def test_every_module_has_a_layer_and_imports_point_down_without_cycles():
    assert declared_layers(PACKAGE)["config"] == 2 and declared_layers(PACKAGE)["cli"] == 7
    assert layer_problems(PACKAGE) == []


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, text in {"__init__.py": '"""Layers.\n\n1. io: files\n2. config: settings\n3. stages: steps\n"""\n',
                       **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


@pytest.mark.parametrize("files, expected", [
    ({"io.py": "", "config.py": "from . import io\n", "stages/__init__.py": "", "stages/sample.py": "from .. import config\n"},
     []),
    ({"io.py": "def f():\n    from .config import x\n", "config.py": "x = 1\n"},  # inside a function counts too
     ["pkg.io (layer 1) imports pkg.config (layer 2): an import that points up"]),
    ({"io.py": "", "config.py": "", "stages/__init__.py": "", "stages/a.py": "from . import b\n",
      "stages/b.py": "from .a import f\n"},
     ["import cycle: pkg.stages.a -> pkg.stages.b -> pkg.stages.a"]),
    ({"io.py": "", "config.py": "", "stages/__init__.py": "", "report.py": "from .stages import x\n"},
     ["pkg.report: not in the layer list of pkg/__init__.py"]),
])
def test_the_check_catches_upward_imports_cycles_and_unlisted_modules(tmp_path, files, expected):
    assert layer_problems(write_package(tmp_path, files)) == expected
