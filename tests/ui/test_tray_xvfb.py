"""The real tray app on a real X server with a real tray host (Xvfb + trayer).

`nimbridge` runs as a user runs it; xdotool right-clicks its tray icon, the menu
opens, a screenshot is taken, Quit is clicked, and the process must exit with
the port freed. Skipped where Xvfb/trayer are missing, except in CI.

The app gets a session bus of its own: on a developer's KDE or Ubuntu desktop the
usual one has a StatusNotifierWatcher, and Qt would hand the icon to that panel
instead of trayer (issue 24, item 5).
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TOOLS = ("Xvfb", "trayer", "xdotool", "xwininfo", "import", "dbus-daemon")
ROOT = Path(__file__).resolve().parents[2]


def _missing() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _free_display() -> int:
    for number in range(90, 140):
        if (
            not Path(f"/tmp/.X11-unix/X{number}").exists()
            and not Path(f"/tmp/.X{number}-lock").exists()
        ):
            return number
    raise RuntimeError("no free X display number")


def _stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def virtual_desktop() -> Iterator[str]:
    """An Xvfb screen with trayer docked at its top right; yields its DISPLAY."""
    display = f":{_free_display()}"
    xvfb = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "DISPLAY": display}
    deadline = time.monotonic() + 10
    while subprocess.run(["xwininfo", "-root"], env=env, capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "Xvfb did not start"
        time.sleep(0.1)
    trayer = subprocess.Popen(
        [
            "trayer",
            "--edge",
            "top",
            "--align",
            "right",
            "--widthtype",
            "pixel",
            "--width",
            "200",
            "--height",
            "32",
            "--SetDockType",
            "true",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield display
    finally:
        _stop(trayer)
        _stop(xvfb)


@pytest.fixture
def x_display() -> Iterator[str]:
    missing = _missing()
    if missing:
        packages = "xvfb trayer xdotool x11-utils imagemagick dbus-daemon"
        why = f"needs {', '.join(missing)} (apt-get install {packages})"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    with virtual_desktop() as display:
        yield display


# The icon is embedded in trayer's panel: a NimBridge window inside "panel".
_DOCKED = re.compile(r'"NimBridge": \(.*\)\s+(\d+)x(\d+)\+\d+\+\d+\s+\+(\d+)\+(\d+)')


def docked_icon(env: dict[str, str]) -> tuple[int, int] | None:
    """The centre of NimBridge's icon in the tray panel, once it is docked there."""
    for match in _DOCKED.finditer(_tree(env)):
        width, height, x, y = map(int, match.groups())
        if 10 <= width <= 64 and y < 40:  # inside the 32 px panel at the top
            return x + width // 2, y + height // 2
    return None


def _tree(env: dict[str, str]) -> str:
    return subprocess.run(
        ["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True
    ).stdout


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_tray_icon_menu_and_quit(x_display: str, tmp_path: Path) -> None:
    run_tray_session([sys.executable, "-m", "app"], x_display, tmp_path)


def run_tray_session(command: list[str], x_display: str, tmp_path: Path) -> None:
    """Start the tray app (`command`), find its icon docked, open the menu, Quit."""
    # Imported here: jeepney (keyring brings it) is there on Linux only, as is this test.
    from tests.ui.sni_host import private_session_bus

    with private_session_bus() as bus:
        _run_tray_session(command, x_display, tmp_path, bus)


def tray_settings(tmp_path: Path) -> Path:
    """A settings file for a tray app under test: any free port, a provider that is never
    reached (the tray is what is tested)."""
    config = tmp_path / "settings.json"
    provider = {"name": "nvidia", "kind": "nvidia", "base_url": "http://127.0.0.1:9/v1"}
    config.write_text(json.dumps({"providers": [provider], "port": 0}))
    return config


def _run_tray_session(command: list[str], x_display: str, tmp_path: Path, bus: str) -> None:
    config = tray_settings(tmp_path)
    env = {
        **os.environ,
        "DISPLAY": x_display,
        "QT_QPA_PLATFORM": "xcb",
        "DBUS_SESSION_BUS_ADDRESS": bus,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "NVIDIA_API_KEY": "nvapi-xvfb-test-key-0000",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    app = subprocess.Popen(
        [*command, "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def icon_geometry() -> tuple[int, int] | None:
            return docked_icon(env)

        _wait_for(lambda: icon_geometry() is not None, 20, "the tray icon in trayer")
        x, y = icon_geometry() or (0, 0)
        windows_before = _tree(env).count("\n")
        subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "3"], env=env, check=True)
        _wait_for(lambda: _tree(env).count("\n") > windows_before, 10, "the tray menu")
        time.sleep(0.5)
        shot = tmp_path / "tray-menu.png"
        subprocess.run(["import", "-window", "root", str(shot)], env=env, check=True)
        assert shot.stat().st_size > 1000
        port_line = next(
            (line for line in _log_lines(app) if "listening on http://127.0.0.1:" in line), ""
        )
        port = int(port_line.rsplit(":", 1)[1]) if port_line else 0
        # Quit is the menu's last item: press Up once from the top to land on it, then Enter.
        subprocess.run(["xdotool", "key", "Up", "Return"], env=env, check=True)
        assert app.wait(20) == 0
        if port:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))  # freed
    finally:
        _stop(app)
        app.communicate()


_seen: list[str] = []


def _log_lines(process: subprocess.Popen[str]) -> list[str]:
    """Lines the app logged so far (stderr), without blocking on a live pipe."""
    import selectors

    assert process.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stderr, selectors.EVENT_READ)
    while selector.select(timeout=0.2):
        line = process.stderr.readline()
        if not line:
            break
        _seen.append(line)
    selector.close()
    return _seen
