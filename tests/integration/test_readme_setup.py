"""The README's set-up command, verbatim, in a fresh clone: the tray app comes up and answers.

A fresh clone (the committed tree), the command taken out of README.md and run by `sh`
as a user pastes it, under Xvfb with a tray host, with a fresh home: it must make its
venv, install, start the tray app, and the server must answer /health. Slow (a venv and
an install from the package cache), so it runs in CI or with NIMBRIDGE_TEST_README_SETUP=1.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ui.test_tray_xvfb import docked_icon, virtual_desktop

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"NimBridge listening on (http://127\.0\.0\.1:\d+)")
SETUP_S = 900  # a venv and an install of PySide6 & co. from pip's cache, on a loaded machine


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.S)


@pytest.fixture
def x_display() -> Iterator[str]:
    wanted = os.environ.get("CI") == "true" or os.environ.get("NIMBRIDGE_TEST_README_SETUP")
    if not wanted:
        pytest.skip("slow (a fresh venv): runs in CI or with NIMBRIDGE_TEST_README_SETUP=1")
    missing = [tool for tool in ("git", "Xvfb", "trayer", "xwininfo") if not shutil.which(tool)]
    if missing:
        pytest.fail(f"needs {', '.join(missing)}")
    with virtual_desktop() as display:
        yield display


def _collect(stream: object, lines: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)


@pytest.mark.slow
def test_the_readme_command_runs_the_tray_app_in_a_fresh_clone(
    x_display: str, tmp_path: Path
) -> None:
    run_app = readme_commands()[0]
    assert "dev.py app" in run_app  # the first of the two is the one that runs the app
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    config_home = tmp_path / "config"
    (config_home / "nimbridge").mkdir(parents=True)
    # A fresh user's settings, but a port of its own and an upstream that needs no network.
    (config_home / "nimbridge" / "settings.json").write_text(
        json.dumps(
            {
                "providers": [
                    {"name": "nvidia", "kind": "nvidia", "base_url": "http://127.0.0.1:9/v1"}
                ],
                "port": 0,
            }
        )
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VIRTUAL_ENV", "PYTHON")) and key != "QT_QPA_PLATFORM"
    }
    env.update(
        {
            "DISPLAY": x_display,
            "HOME": str(tmp_path / "home"),
            "XDG_CONFIG_HOME": str(config_home),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "PIP_CACHE_DIR": os.environ.get(
                "PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")
            ),  # the machine's cache: a fresh home would download everything again
            "NVIDIA_API_KEY": "nvapi-readme-setup-test-0000",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }
    )
    (tmp_path / "home").mkdir()
    app = subprocess.Popen(
        ["sh", "-c", run_app],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=_collect, args=(app.stdout, lines), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + SETUP_S
        base_url = None
        while base_url is None:
            assert app.poll() is None, "the app exited:\n" + "".join(lines[-40:])
            assert time.monotonic() < deadline, "no 'listening' line:\n" + "".join(lines[-40:])
            found = next((LISTENING.search(line) for line in lines if "listening" in line), None)
            base_url = found.group(1) if found else None
            time.sleep(0.5)
        with urllib.request.urlopen(f"{base_url}/health", timeout=10) as answer:
            health = json.loads(answer.read())
        assert health["status"] == "ok"
        deadline = time.monotonic() + 30
        while docked_icon({**os.environ, "DISPLAY": x_display}) is None:
            assert time.monotonic() < deadline, "no tray icon docked in the tray host"
            time.sleep(0.5)
        assert (clone / ".venv").is_dir()
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGTERM)
            try:
                app.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(app.pid, signal.SIGKILL)
                app.wait(5)
        reader.join(5)
        if app.stdout is not None:
            app.stdout.close()
