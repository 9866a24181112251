"""The translation core stays pure: stdlib only, and no clocks, sockets, threads or chance.

Two independent checks (STYLE.md section 1): an `ast` scan of every
`app/core/*.py`, which also catches imports hidden inside functions or
`if TYPE_CHECKING:` blocks, and import-linter's contracts from pyproject.toml.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CORE = ROOT / "app" / "core"

# Standard library, but I/O, time, randomness or concurrency: core must get such
# values through its callers (ids, clocks) or not at all. importlib would let an
# import hide from this scan.
BANNED_STDLIB = frozenset(
    {
        "asyncio",
        "socket",
        "time",
        "random",
        "uuid",
        "threading",
        "datetime",
        "subprocess",
        "multiprocessing",
        "concurrent",
        "selectors",
        "ssl",
        "importlib",
    }
)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ["app", "core"]  # the package every scanned module lives in
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `.` is app.core, `..` is app
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if node.module is None or module in ("app", "app.core"):
                # `from app import logs`, `from . import errors`: the names are modules.
                found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, module))
    return found


def violation(module: str) -> str | None:
    top = module.split(".")[0]
    if module == "app.core" or module.startswith("app.core."):
        return None
    if top in BANNED_STDLIB:
        return f"{module}: I/O, clock, chance or threads do not belong in core"
    if top not in sys.stdlib_module_names:
        return f"{module}: not the standard library nor app.core"
    return None


CORE_FILES = sorted(CORE.rglob("*.py"))  # feature folders (server_tools/) too


def test_core_files_found() -> None:
    names = {path.relative_to(CORE).as_posix() for path in CORE_FILES}
    assert {"errors.py", "tiers.py", "anthropic_types.py", "server_tools/specs.py"} <= names


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda path: path.relative_to(CORE).as_posix())
def test_core_imports_only_pure_stdlib_and_core(path: Path) -> None:
    problems = [
        f"{path.name}:{line}: {problem}"
        for line, module in imported_modules(path)
        if (problem := violation(module)) is not None
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import json", []),
        ("import asyncio", ["asyncio: I/O, clock, chance or threads do not belong in core"]),
        (
            "from time import monotonic",
            ["time: I/O, clock, chance or threads do not belong in core"],
        ),
        ("import os.path, uuid", ["uuid: I/O, clock, chance or threads do not belong in core"]),
        (
            "def f():\n    import datetime",
            ["datetime: I/O, clock, chance or threads do not belong in core"],
        ),
        ("import aiohttp", ["aiohttp: not the standard library nor app.core"]),
        ("from app.server import app", ["app.server: not the standard library nor app.core"]),
        ("from app import logs", ["app.logs: not the standard library nor app.core"]),
        ("from app.core import errors", []),
        ("from . import errors", []),
        ("from .errors import ProxyError", []),
        ("from ..server import app", ["app.server: not the standard library nor app.core"]),
        (
            "if TYPE_CHECKING:\n    import threading",
            ["threading: I/O, clock, chance or threads do not belong in core"],
        ),
    ],
)
def test_the_scan_itself(tmp_path: Path, source: str, expected: list[str]) -> None:
    # The checker must catch what it claims to, or the test above proves nothing.
    module = tmp_path / "sample.py"
    module.write_text(source + "\n", encoding="utf-8")
    found = [v for _, name in imported_modules(module) if (v := violation(name)) is not None]
    assert found == expected


def lint_imports_executable() -> str | None:
    beside_python = Path(sys.executable).with_name("lint-imports")
    return str(beside_python) if beside_python.exists() else shutil.which("lint-imports")


def run_lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    executable = lint_imports_executable()
    if executable is None:
        pytest.skip("import-linter's lint-imports is not installed (pip install import-linter)")
    return subprocess.run(
        [executable, "--no-cache", "--no-logo", *args],  # no cache dir written into the repo
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_linter_contracts_hold() -> None:
    result = run_lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
