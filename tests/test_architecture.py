"""The package's shape, checked: layers import downward only (``.importlinter``, run by ``make
lint``), and these tests keep that contract whole: every module sits in a layer, nothing imports in
a circle, and no import hides inside a function to get round either rule."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_gateway"
#: Modules outside the layering: generated migrations, and the package's own ``__init__``.
UNLAYERED = ("django_gateway.migrations",)


def _layers() -> list[set[str]]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    lines = parser["importlinter:contract:layers"]["layers"].strip().splitlines()
    return [
        {name.strip() for part in line.split("|") for name in part.split(":")} for line in lines
    ]


def _product_modules(graph: grimp.ImportGraph) -> set[str]:
    return {m for m in graph.modules if m != "django_gateway" and not m.startswith(UNLAYERED)}


def test_every_module_is_in_a_layer() -> None:
    layered = set().union(*_layers())
    graph = grimp.build_graph("django_gateway")
    missing = {
        m
        for m in _product_modules(graph)
        if not any(m == name or m.startswith(name + ".") for name in layered)
        and not any(name.startswith(m + ".") for name in layered)  # a package split by layer
    }
    assert not missing, f"place these in a layer of .importlinter: {sorted(missing)}"


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("django_gateway")
    modules = _product_modules(graph)
    for module in sorted(modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported in modules and imported != module:
                assert not graph.chain_exists(imported, module), (
                    f"{module} and {imported} import each other: "
                    f"{graph.find_shortest_chain(imported, module)}"
                )


SET_UP_FIRST = {
    ("apps.py", "ready"),
    ("__init__.py", "get_asgi_application"),
    ("__init__.py", "__getattr__"),
}


def test_no_function_local_imports_of_the_package() -> None:
    """A local import is how a cycle hides. Django's app registry makes two exceptions: it must
    be ready before models are imported, so ``AppConfig.ready`` imports checks and signals, and
    ``django_gateway.asgi`` (its ``get_asgi_application``, like Django's own, and the lazy
    ``GatewayASGIMiddleware`` name) imports the shell only once Django is set up."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if (path.name, function.name) in SET_UP_FIRST:
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (
                    node.level > 0 or (node.module or "").startswith("django_gateway")
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"module-level imports only: {found}"
