"""The shape of src/ (README "Layout"): the layer rule and no import cycles (import-linter
contracts in pyproject.toml), at most 5 modules directly in src/, files that a reader can take in
(<= 500 lines) and functions that fit on a screen (<= 60 lines)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60


def test_import_contracts_are_kept() -> None:
    """pyproject.toml's contracts on this checkout's src/. In a subprocess: import-linter
    reconfigures logging, which would leave later tests' log captures empty."""
    lint = "import sys, importlinter.cli as c; sys.exit(c.lint_imports(no_cache=True))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", lint], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:]  # its report names each broken import


def test_at_most_five_modules_directly_in_src() -> None:
    modules = sorted(p.name for p in SRC.glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= 5, modules


def python_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_file_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in python_files()
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long, long


def test_no_function_over_60_lines() -> None:
    long = {}
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = lines
    assert not long, long


def test_every_source_file_is_reachable_from_a_package() -> None:
    """A folder of src/ without __init__.py would be a namespace package that import-linter and
    setuptools' package discovery treat differently."""
    missing = [
        str(d.relative_to(ROOT))
        for d, _, files in os.walk(SRC)
        if any(f.endswith(".py") for f in files) and not (Path(d) / "__init__.py").is_file()
    ]
    assert not missing, missing
