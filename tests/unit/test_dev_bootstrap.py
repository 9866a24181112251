"""packaging/dev.py: the README's two set-up commands, on machines whose python3 is too old."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "packaging" / "dev.py"
OLD_PYTHON = "/usr/bin/python3.11"  # Debian 12's python3, where this machine has it


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.S)


def test_the_readme_set_up_is_the_two_dev_commands() -> None:
    assert _setup_commands() == ["python3 packaging/dev.py app", "python3 packaging/dev.py test"]


def _script(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _run_dev(python: str, args: list[str], path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [python, str(DEV), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_a_pyenv_python_is_found_when_its_shims_do_not_resolve(tmp_path: Path) -> None:
    """Debian 12 with pyenv: python3 is 3.11, `python3.12` is a shim that says 'command not
    found', and 3.12 lives under `pyenv root`/versions."""
    bin_dir, versions = tmp_path / "bin", tmp_path / "pyenv" / "versions"
    bin_dir.mkdir()
    _script(bin_dir, "python3.12", 'echo "pyenv: python3.12: command not found" >&2; exit 127')
    _script(bin_dir, "python3", 'echo "3 11"')  # answers the version probe as a 3.11 would
    _script(bin_dir, "pyenv", f'[ "$1" = root ] && echo {tmp_path / "pyenv"}')
    for version in ("3.11.7", "3.12.1", "3.13.0", "system"):
        (versions / version / "bin").mkdir(parents=True)
    for version in ("3.12.1", "3.13.0"):
        (versions / version / "bin" / "python").symlink_to(sys.executable)
    runner = OLD_PYTHON if Path(OLD_PYTHON).exists() else sys.executable
    done = _run_dev(runner, ["python"], f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    if runner == sys.executable:  # already >= 3.12: it uses itself
        assert done.stdout.strip() == sys.executable
    else:
        assert done.stdout.strip() == str(versions / "3.12.1" / "bin" / "python"), done.stderr


@pytest.mark.skipif(not Path(OLD_PYTHON).exists(), reason="needs a Python 3.11 to run dev.py on")
def test_no_python_new_enough_is_one_line_and_a_failure(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python3 = shutil.which("python3.11", path="/usr/bin")
    assert python3 is not None
    (bin_dir / "python3").symlink_to(python3)
    done = _run_dev(OLD_PYTHON, ["python"], str(bin_dir))
    assert done.returncode == 1
    assert done.stderr.strip().startswith("no Python >= 3.12 found")
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_unknown_word_gets_the_usage() -> None:
    done = _run_dev(sys.executable, ["serve"], os.environ.get("PATH", ""))
    assert done.returncode == 2
    assert "usage: python3 packaging/dev.py app|test|python" in done.stderr


@pytest.mark.skipif(not Path(OLD_PYTHON).exists(), reason="needs a Python 3.11 to run dev.py on")
def test_a_python3_12_on_path_is_used(tmp_path: Path) -> None:
    """A distribution with `python3.12` on PATH (and python3 older): that one, no pyenv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3.12").symlink_to(sys.executable)
    (bin_dir / "python3").symlink_to(OLD_PYTHON)
    done = _run_dev(OLD_PYTHON, ["python"], f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert done.stdout.strip() == str(bin_dir / "python3.12"), done.stderr
