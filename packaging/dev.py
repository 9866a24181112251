"""Set up the development environment and run the app or the tests: the README's two commands.

    python3 packaging/dev.py app  [NIMBRIDGE ARGS]    # the tray app (or: app serve ...)
    python3 packaging/dev.py test [PYTEST ARGS]       # the whole test suite

Runs on any Python 3 (Debian 12's `python3` is 3.11), finds a Python >= 3.12 for the project
(PySide6 crashes on 3.11): `python3.13`/`python3.12`/`python3` on PATH, else pyenv's
installed versions (whose shims do not resolve unless selected), else Windows' `py -3.x`.
It makes `.venv` with it (again, if an old one has a Python that is too old), installs the
project with the versions the tests last passed with (constraints.txt), skipping that step
when nothing changed since, then runs the command in the venv.

`python3 packaging/dev.py python` prints the Python it would use (.ci/run asks it).
Standard library only, and nothing of the project is imported: it runs before any install.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
MIN_VERSION = (3, 12)
CANDIDATES = ("python3.12", "python3.13", "python3")  # 3.12 first: what CI tests on
EXTRAS_BY_COMMAND = {"app": "", "test": "[test]"}
STAMP = VENV / ".nimbridge-installed"  # what was installed, so an unchanged tree skips pip
USAGE = "usage: python3 packaging/dev.py app|test|python [ARGS...]"


def _version_of(python: str, *prefix: str) -> tuple[int, int] | None:
    """(major, minor) of an interpreter, or None when it does not run (a pyenv shim that is
    not selected prints an error and exits non-zero)."""
    try:
        done = subprocess.run(
            [python, *prefix, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 2:
        return None
    return int(parts[0]), int(parts[1])


def _pyenv_pythons() -> list[str]:
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return []
    root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
    versions = Path(root.stdout.strip()) / "versions"
    found = []
    for folder in versions.glob("3.*"):
        parts = folder.name.split(".")
        if len(parts) == 3 and all(part.isdigit() for part in parts):
            found.append((tuple(int(part) for part in parts), folder / "bin" / "python"))
    return [str(python) for _, python in sorted(found) if python.exists()]  # oldest first


def find_python() -> list[str]:
    """The command (with arguments, for `py -3.12`) of a Python >= 3.12."""
    if sys.version_info[:2] >= MIN_VERSION:
        return [sys.executable]
    candidates = [[found] for name in CANDIDATES if (found := shutil.which(name))]
    candidates += [[python] for python in _pyenv_pythons()]
    if shutil.which("py"):  # the Windows launcher
        candidates += [["py", f"-3.{minor}"] for minor in (13, 12)]
    for command in candidates:
        version = _version_of(command[0], *command[1:])
        if version is not None and version >= MIN_VERSION:
            return command
    sys.exit(
        "no Python >= 3.12 found (PySide6, which the tray app uses, crashes on 3.11): "
        "install python3.12 from your distribution, pyenv or python.org, then run this again"
    )


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _install_key(extras: str) -> str:
    digest = hashlib.sha256(extras.encode())
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv(extras: str) -> Path:
    """The venv's Python, with the project (and `extras`) installed."""
    python = _venv_python()
    version = _version_of(str(python)) if python.exists() else None
    if version is None or version < MIN_VERSION:
        if VENV.exists():
            print(f"dev.py: {VENV} has no usable Python >= 3.12; making it again", flush=True)
            shutil.rmtree(VENV)
        base = find_python()
        print(f"dev.py: making {VENV.name} with {' '.join(base)}", flush=True)
        subprocess.run([*base, "-m", "venv", str(VENV)], check=True)
    key = _install_key(extras)
    installed = STAMP.read_text().split() if STAMP.exists() else []
    # The tests' install holds all the app needs: `app` after `test` installs nothing.
    enough = {key, _install_key(EXTRAS_BY_COMMAND["test"])} if not extras else {key}
    if not enough & set(installed):
        print(f"dev.py: installing nimbridge{extras} into {VENV.name}", flush=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-c", "constraints.txt", "-e", f".{extras}"], check=True, cwd=ROOT)
        STAMP.write_text("\n".join([*installed, key]) + "\n")
    return python


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in (*EXTRAS_BY_COMMAND, "python"):
        print(USAGE, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "python":
        print(" ".join(find_python()))
        return 0
    python = ensure_venv(EXTRAS_BY_COMMAND[command])
    if command == "app":
        run = [str(python), "-m", "app", *rest]
    else:
        run = [str(python), "-m", "pytest", *rest]
    os.chdir(ROOT)
    if os.name == "posix":  # become the app: Ctrl-C, SIGTERM and the exit code are its own
        os.execv(run[0], run)
    return subprocess.run(run, check=False).returncode


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
    except subprocess.CalledProcessError as exc:
        sys.exit(f"dev.py: {' '.join(map(str, exc.cmd))} failed (exit {exc.returncode})")
