"""The package's shape, as a maintainer relies on it: data flows one way (no import cycle, the engine knows no
stage), a small package root, internal imports at module top. The graph is grimp's (import-linter's engine): it
counts every import statement, those inside functions too, and leaves `if TYPE_CHECKING:` blocks aside."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

import gendistill

PACKAGE = Path(gendistill.__file__).parent


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("gendistill", exclude_type_checking_imports=True, cache_dir=None)


def test_the_import_graph_has_no_cycle(graph):
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.append(" -> ".join((module, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_pipeline_module_imports_a_stage(graph):
    imports = graph.find_matching_direct_imports(import_expression="gendistill.pipeline.** -> gendistill.stages.**")
    imports += graph.find_matching_direct_imports(import_expression="gendistill.pipeline.** -> gendistill.stages")
    assert not imports, imports


def _imports_inside_functions(path: Path) -> list[str]:
    """`line: statement` of each import of a gendistill module made inside a function body."""
    found = []
    for function in ast.walk(ast.parse(path.read_text())):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(name == "gendistill" or name.startswith("gendistill.") for name in names):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_gendistill_modules_are_imported_at_module_top():
    """Lazy imports are for optional heavy third-party packages only, never for the package's own modules (grimp's
    `is_lazy` means PEP 810's `lazy import`, so function bodies are read here)."""
    lazy = sorted({line for path in PACKAGE.rglob("*.py") for line in _imports_inside_functions(path)})
    assert not lazy, f"{len(lazy)} imports inside functions:\n" + "\n".join(lazy)


def test_the_package_root_is_small_and_names_no_deeper_module():
    root_modules = sorted(path.stem for path in PACKAGE.glob("*.py"))
    assert len(root_modules) <= 10, root_modules
    deeper = {path.stem for path in PACKAGE.glob("*/*.py")} | {path.name for path in PACKAGE.iterdir() if path.is_dir()}
    twins = sorted((set(root_modules) - {"__init__"}) & deeper)
    assert not twins, f"root modules named like a deeper module or package: {twins}"
