"""pyproject's runtime dependencies are exactly what the programs import: none declared and
unused (a dependency no code needs is weight and attack surface in the image), none
imported and undeclared (it would work here by accident of a transitive install).

The programs are operator/, webhook/ and dashboard/; tests/, hack/ and bench/ use the dev
extra. Imports are read with `ast`, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib

from paykube_dev.kube import REPO

PROGRAMS = [REPO / "operator", REPO / "webhook", REPO / "dashboard"]
OWN = {"paykube", "paykube_webhook", "paykube_dashboard"}
# Declared though never imported, with the reason.
LOADED_BY_NAME = {
    "pymysql": "SQLAlchemy loads the driver named in the URL scheme mysql+pymysql://",
}
# Imported though not declared: part of a declared package's own API.
SHIPPED_WITH = {
    "pydantic-core": "pydantic's documented API for custom types (core_schema)",
    "botocore": "boto3's own exceptions (botocore.exceptions.ClientError)",
    "markupsafe": "jinja2's Markup type (jinja2 no longer re-exports it)",
}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project["dependencies"]:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, requirement
        names.add(normalized(match.group()))
    return names


class Imports(ast.NodeVisitor):
    """Modules imported at run time (not those under `if TYPE_CHECKING:`: type stubs)."""

    def __init__(self) -> None:
        self.modules: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else (
            test.attr if isinstance(test, ast.Attribute) else "")
        for child in ([] if name == "TYPE_CHECKING" else node.body) + node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        self.modules.update(alias.name.split(".")[0] for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self.modules.add(node.module.split(".")[0])


def imported_modules() -> dict[str, set[str]]:
    """Top-level module name -> files importing it, over the programs' sources."""
    found: dict[str, set[str]] = {}
    for root in PROGRAMS:
        for path in root.rglob("*.py"):
            imports = Imports()
            imports.visit(ast.parse(path.read_text(), str(path)))
            for module in imports.modules:
                found.setdefault(module, set()).add(str(path.relative_to(REPO)))
    return found


@functools.cache
def used() -> dict[str, set[str]]:
    """Distribution -> files, for every third-party module the programs import."""
    distributions = importlib.metadata.packages_distributions()
    result: dict[str, set[str]] = {}
    for module, files in imported_modules().items():
        if module in OWN or module in sys.stdlib_module_names or module == "__future__":
            continue
        assert module in distributions, f"{module} (imported in {sorted(files)}) is not installed"
        for distribution in distributions[module]:
            result.setdefault(normalized(distribution), set()).update(files)
    return result


def test_no_dependency_is_declared_and_unused() -> None:
    unused = declared() - set(used()) - set(LOADED_BY_NAME)
    assert not unused, f"declared in pyproject.toml but imported by no program: {unused}"


def test_no_imported_package_is_undeclared() -> None:
    missing = {d: sorted(f) for d, f in used().items()
               if d not in declared() and d not in SHIPPED_WITH}
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"


def test_the_exceptions_are_still_needed() -> None:
    assert set(LOADED_BY_NAME) <= declared() - set(used())
    assert set(SHIPPED_WITH) <= set(used()) - declared()
