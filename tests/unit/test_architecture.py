"""The dependency rule: core <- adapters <- app, and sandboxes stand apart."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
CORE_FORBIDDEN = {
    "aiohttp",
    "aiosqlite",
    "sqlite3",
    "pymongo",
    "motor",
    "infisical_sdk",
    "requests",
    "castghl_adapters",
    "castghl_app",
}
SANDBOX_FORBIDDEN = {"castghl_core", "castghl_adapters"}


def imported_roots(path: Path) -> set[str]:
    """Top-level package of every import in a module, lazy ones included."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def modules(package: str) -> list[Path]:
    found = sorted((SRC / package).rglob("*.py"))
    assert found, f"no modules under {package}"
    return found


@pytest.mark.parametrize("path", modules("castghl_core"), ids=lambda p: p.name)
def test_core_imports_no_io_library(path):
    """castghl_core imports no I/O library and nothing from outer layers."""
    assert imported_roots(path) & CORE_FORBIDDEN == set()


@pytest.mark.parametrize("path", modules("castghl_adapters"), ids=lambda p: p.name)
def test_adapters_do_not_import_the_app(path):
    """Adapters depend on the core only, never on the composition root."""
    assert "castghl_app" not in imported_roots(path)


@pytest.mark.parametrize("path", modules("castghl_app/sandbox"), ids=lambda p: p.name)
def test_sandboxes_share_no_code_with_what_they_stand_in_for(path):
    """Sandboxes are written from the reference, so a misreading shows up."""
    assert imported_roots(path) & SANDBOX_FORBIDDEN == set()


def test_a_forbidden_import_would_be_caught(tmp_path):
    """The check above sees imports inside functions too."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import aiohttp.web\n    from pymongo import x\n")
    assert imported_roots(module) >= {"aiohttp", "pymongo"}


def test_import_linter_contracts_hold():
    """import-linter's layer and forbidden contracts (pyproject.toml) pass."""
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint_imports is None:
        pytest.skip("import-linter is not installed in this environment")
    result = subprocess.run(  # noqa: S603
        [lint_imports, "--no-cache"],
        cwd=SRC.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
