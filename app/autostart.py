"""Start NimBridge at login: one small file (or registry value) per operating system.

- Linux and other XDG desktops: `$XDG_CONFIG_HOME/autostart/nimbridge.desktop`
  (`~/.config` when the variable is unset or not absolute, as the XDG spec says).
- macOS: a LaunchAgent, `~/Library/LaunchAgents/com.nimbridge.app.plist`, RunAtLoad.
- Windows: the value "NimBridge" under HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run.

Rules: standard library only (this is not UI code; the settings dialog calls it);
files are written atomically (temp file + `os.replace`), so a crash leaves the old
file or the new one, never half of one.
"""

import configparser
import contextlib
import importlib
import os
import plistlib
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

APP_NAME = "NimBridge"
DESKTOP_FILE_NAME = "nimbridge.desktop"
LAUNCH_AGENT_LABEL = "com.nimbridge.app"
WINDOWS_RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
WINDOWS_VALUE_NAME = APP_NAME


def default_command() -> list[str]:
    """How this NimBridge is started again: the frozen executable, or `python -m app`."""
    if getattr(sys, "frozen", False):  # PyInstaller
        return [sys.executable]
    return [sys.executable, "-m", "app"]


def autostart_enabled() -> bool:
    """Whether NimBridge is set to start at login for the current user."""
    if sys.platform == "win32":
        return _windows_enabled()
    if sys.platform == "darwin":
        return _launch_agent_path().is_file()
    return _xdg_enabled(_desktop_file_path())


def set_autostart(enabled: bool, *, command: Sequence[str]) -> None:
    """Turn start-at-login on (running `command`) or off. OSError when the OS refuses."""
    if enabled and not command:
        raise ValueError("the command to start NimBridge is empty")
    if sys.platform == "win32":
        _windows_set(enabled, command)
    elif sys.platform == "darwin":
        path = _launch_agent_path()
        if enabled:
            _write_atomically(path, _launch_agent_plist(command))
        else:
            path.unlink(missing_ok=True)
    else:
        path = _desktop_file_path()
        if enabled:
            _write_atomically(path, _desktop_entry(command).encode("utf-8"))
        else:
            path.unlink(missing_ok=True)


# ------------------------------------------------------------------ Linux (XDG)


def _xdg_config_home() -> Path:
    value = os.environ.get("XDG_CONFIG_HOME", "")
    # The spec: a relative path is invalid and must be ignored.
    return Path(value) if value and os.path.isabs(value) else Path.home() / ".config"


def _desktop_file_path() -> Path:
    return _xdg_config_home() / "autostart" / DESKTOP_FILE_NAME


def _exec_argument(arg: str) -> str:
    """One argument of an Exec key, quoted per the Desktop Entry spec when it needs it."""
    # Field codes start with %; a literal percent is written %%.
    arg = arg.replace("%", "%%")
    reserved = set(" \t\n\"'\\><~|&;$*?#()`")
    if arg and not reserved.intersection(arg):
        return arg
    # Inside double quotes, ", `, $ and \ are escaped with a backslash...
    quoted = "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg)
    return f'"{quoted}"'


def _desktop_entry(command: Sequence[str]) -> str:
    """The .desktop file's text. Its string values escape backslashes once more."""
    exec_line = " ".join(_exec_argument(arg) for arg in command).replace("\\", "\\\\")
    # TryExec: once the program is uninstalled, the session skips the entry.
    try_exec = command[0].replace("\\", "\\\\")
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        f"Name={APP_NAME}\n"
        "Comment=Local proxy: Claude Code on NVIDIA NIM and OpenAI-compatible providers\n"
        f"Exec={exec_line}\n"
        f"TryExec={try_exec}\n"
        "Icon=nimbridge\n"
        "Terminal=false\n"
        "Categories=Development;\n"
        "StartupNotify=false\n"
        "X-GNOME-Autostart-enabled=true\n"
    )


def _xdg_enabled(path: Path) -> bool:
    """The file exists and neither `Hidden=true` nor the GNOME switch turns it off."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error):
        return False
    if not parser.has_section("Desktop Entry"):
        return False
    entry = parser["Desktop Entry"]
    return (
        entry.get("Hidden", "false").strip().lower() != "true"
        and entry.get("X-GNOME-Autostart-enabled", "true").strip().lower() != "false"
    )


# ------------------------------------------------------------------ macOS


def _launch_agent_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"


def _launch_agent_plist(command: Sequence[str]) -> bytes:
    """A LaunchAgent that starts `command` once at login (no KeepAlive: Quit means quit)."""
    agent: dict[str, Any] = {
        "Label": LAUNCH_AGENT_LABEL,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        "ProcessType": "Interactive",
    }
    return plistlib.dumps(agent)


# ------------------------------------------------------------------ Windows


def _windows_command_line(command: Sequence[str]) -> str:
    return subprocess.list2cmdline(list(command))


def _winreg() -> Any:
    # Imported when used: it exists only on Windows (and tests inject a fake one).
    return importlib.import_module("winreg")


def _windows_enabled() -> bool:
    winreg = _winreg()
    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY) as key:
            winreg.QueryValueEx(key, WINDOWS_VALUE_NAME)
    except OSError:  # FileNotFoundError: no such key or value
        return False
    return True


def _windows_set(enabled: bool, command: Sequence[str]) -> None:
    winreg = _winreg()
    with winreg.CreateKeyEx(
        winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY, 0, winreg.KEY_SET_VALUE
    ) as key:
        if enabled:
            winreg.SetValueEx(
                key, WINDOWS_VALUE_NAME, 0, winreg.REG_SZ, _windows_command_line(command)
            )
        else:
            with contextlib.suppress(FileNotFoundError):  # already off
                winreg.DeleteValue(key, WINDOWS_VALUE_NAME)


# ------------------------------------------------------------------ files


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; session managers only need to read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
