"""The layer table of CONTRIBUTING.md, enforced: what each package may import, the few
functions that load another layer on first use (bridges), and no import cycles.

Imports are read off the source (``ast``): ``import``/``from`` statements anywhere in a module,
relative ones resolved, and ``importlib.import_module("...")`` with a literal name.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("refsim", "kernels", "conformance")
# What each package never imports (a name covers its submodules).
NEVER = {
    "refsim": ("torch", "triton", "kernels", "conformance"),
    "kernels": ("conformance", "refsim.simulator", "refsim.api", "refsim.numerics", "simpy"),
    "conformance": (),
}
# Where a module may import what its package never does: (module, function or None for the
# module itself) -> the names it may import. Each is a row of CONTRIBUTING.md's table.
BRIDGES = {
    # the tiling contract as triton.jit functions, built for the kernels on first use
    ("refsim.tiling", "triton_namespace"): ("triton",),
    # the commands that run the kernels on a device (calibrate, compare --on)
    ("refsim.cli", "_kernels_torch"): ("torch",),
    ("refsim.cli", "_calibrate"): ("kernels",),
    ("refsim.cli", "_compare"): ("kernels",),
    ("refsim.cli", "_measured_records"): ("kernels",),
    # the cost model: auto's model chooser runs refsim's simulator
    ("kernels.model", None): ("refsim.api",),
}


def _modules():
    """Every module of the three packages: dotted name -> path."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name, path):
    """``[(imported module, enclosing top-level function or None)]`` of one module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []

    def resolve(node):
        if node.level == 0:
            return node.module or ""
        base = name.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            inner = function
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and function is None:
                inner = child.name
            if isinstance(child, ast.Import):
                found.extend((alias.name, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                module = resolve(child)
                found.append((module, inner))
                # "from . import x" imports the submodule x
                found.extend(
                    (f"{module}.{alias.name}", inner)
                    for alias in child.names
                    if f"{module}.{alias.name}" in MODULES
                )
            elif (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr == "import_module"
                and child.args
                and isinstance(child.args[0], ast.Constant)
                and isinstance(child.args[0].value, str)
                and not child.args[0].value.startswith(".")
            ):
                found.append((child.args[0].value, inner))
            visit(child, inner)

    visit(tree, None)
    return found


def _covers(prefix, module):
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_imports_only_what_its_layer_allows(name):
    package = name.split(".")[0]
    offending = []
    for module, function in _imports(name, MODULES[name]):
        for forbidden in NEVER[package]:
            if not _covers(forbidden, module):
                continue
            allowed = BRIDGES.get((name, function), ()) + BRIDGES.get((name, None), ())
            if not any(_covers(bridge, module) for bridge in allowed):
                where = f"in {function}()" if function else "at module level"
                offending.append(f"{name} imports {module} {where}")
    assert offending == []


def test_every_bridge_is_used_and_in_the_contributing_table():
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    for (name, function), allowed in BRIDGES.items():
        used = {m for m, f in _imports(name, MODULES[name]) if function in (None, f)}
        assert any(_covers(a, m) for a in allowed for m in used), (name, function)
        assert f"`{name}`" in contributing, name


def test_no_import_cycles():
    """Within the packages, counting imports inside functions too (a lazy import is still a
    dependency): the graph of modules is acyclic, apart from a package's ``__init__``, which
    may name its own submodules."""
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for module, _ in _imports(name, path):
            target = module
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            inside_itself = target == name or name.startswith(target + ".")
            own_submodule = path.name == "__init__.py" and target.startswith(name + ".")
            if target and not inside_itself and not own_submodule:
                edges.add(target)
        graph[name] = edges
    visiting, done, cycles = [], set(), []

    def walk(node):
        if node in done:
            return
        if node in visiting:
            cycles.append(visiting[visiting.index(node) :] + [node])
            return
        visiting.append(node)
        for target in sorted(graph[node]):
            walk(target)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        walk(node)
    assert cycles == []
