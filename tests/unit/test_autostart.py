"""Start at login: the XDG autostart file, the macOS LaunchAgent, the Windows Run value."""

import configparser
import plistlib
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from app import autostart

COMMAND = ["/opt/nim bridge/python3", "-m", "app", "--config", "/home/a b/100%.json"]


@pytest.fixture
def linux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "xdg" / "autostart" / "nimbridge.desktop"


def read_desktop_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


def test_linux_turn_on_and_off(linux):
    assert not autostart.autostart_enabled()

    autostart.set_autostart(True, command=COMMAND)

    assert linux.is_file()
    assert autostart.autostart_enabled()
    assert linux.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in linux.parent.iterdir()] == ["nimbridge.desktop"]  # no temp left
    entry = read_desktop_entry(linux)
    assert entry["Type"] == "Application"
    assert entry["Name"] == "NimBridge"
    assert entry["Icon"] == "nimbridge"
    assert entry["X-GNOME-Autostart-enabled"] == "true"
    # Spaces quote an argument; a literal % is doubled (field codes start with %).
    assert entry["Exec"] == ('"/opt/nim bridge/python3" -m app --config "/home/a b/100%%.json"')

    autostart.set_autostart(False, command=COMMAND)
    assert not linux.exists()
    assert not autostart.autostart_enabled()
    autostart.set_autostart(False, command=COMMAND)  # already off: fine


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="desktop-file-utils")
def test_linux_desktop_file_is_valid(linux):
    autostart.set_autostart(True, command=[*COMMAND, 'say "hi" $HOME \\ `x`'])
    result = subprocess.run(
        ["desktop-file-validate", str(linux)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""  # not even a hint


def test_exec_quoting_follows_the_spec():
    # Inside quotes ", `, $ and \ take a backslash; the file format then doubles
    # every backslash once more.
    text = autostart._desktop_entry(["/usr/bin/nimbridge", 'a"b', "c$d", "e\\f", "plain"])
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    assert exec_line == 'Exec=/usr/bin/nimbridge "a\\\\"b" "c\\\\$d" "e\\\\\\\\f" plain'


def test_linux_respects_a_disabled_or_hidden_entry(linux):
    autostart.set_autostart(True, command=COMMAND)
    text = linux.read_text()
    linux.write_text(
        text.replace("X-GNOME-Autostart-enabled=true", "X-GNOME-Autostart-enabled=false")
    )
    assert not autostart.autostart_enabled()
    linux.write_text(text + "Hidden=true\n")
    assert not autostart.autostart_enabled()
    linux.write_text("not a desktop file")
    assert not autostart.autostart_enabled()


def test_linux_relative_xdg_config_home_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    autostart.set_autostart(True, command=COMMAND)
    assert (tmp_path / ".config" / "autostart" / "nimbridge.desktop").is_file()


def test_empty_command_is_refused(linux):
    with pytest.raises(ValueError, match="empty"):
        autostart.set_autostart(True, command=[])


def test_macos_launch_agent_plist():
    agent = plistlib.loads(autostart._launch_agent_plist(COMMAND))
    assert agent == {
        "Label": "com.nimbridge.app",
        "ProgramArguments": COMMAND,
        "RunAtLoad": True,
        "ProcessType": "Interactive",
    }


def test_macos_turn_on_and_off(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "Library" / "LaunchAgents" / "com.nimbridge.app.plist"
    autostart.set_autostart(True, command=COMMAND)
    assert autostart.autostart_enabled()
    assert plistlib.loads(path.read_bytes())["ProgramArguments"] == COMMAND
    autostart.set_autostart(False, command=COMMAND)
    assert not path.exists() and not autostart.autostart_enabled()


class FakeWinreg(types.ModuleType):
    """The few winreg calls autostart makes, over a dict of key path -> values."""

    HKEY_CURRENT_USER = "HKCU"
    KEY_SET_VALUE = 2
    REG_SZ = 1

    def __init__(self) -> None:
        super().__init__("winreg")
        self.keys: dict[str, dict[str, tuple[int, str]]] = {}

    class _Key:
        def __init__(self, values: dict[str, tuple[int, str]]) -> None:
            self.values = values

        def __enter__(self) -> "FakeWinreg._Key":
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def OpenKey(self, root: str, path: str) -> "_Key":  # noqa: N802 (winreg's names)
        if (root, path) != ("HKCU", autostart.WINDOWS_RUN_KEY) or path not in self.keys:
            raise FileNotFoundError(path)
        return self._Key(self.keys[path])

    def CreateKeyEx(self, root: str, path: str, reserved: int, access: int) -> "_Key":  # noqa: N802
        assert root == "HKCU" and access == self.KEY_SET_VALUE
        return self._Key(self.keys.setdefault(path, {}))

    def QueryValueEx(self, key: "_Key", name: str) -> tuple[str, int]:  # noqa: N802
        if name not in key.values:
            raise FileNotFoundError(name)
        kind, value = key.values[name]
        return value, kind

    def SetValueEx(self, key: "_Key", name: str, reserved: int, kind: int, value: str) -> None:  # noqa: N802
        key.values[name] = (kind, value)

    def DeleteValue(self, key: "_Key", name: str) -> None:  # noqa: N802
        if name not in key.values:
            raise FileNotFoundError(name)
        del key.values[name]


def test_windows_run_value(monkeypatch):
    fake = FakeWinreg()
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "winreg", fake)
    command = [r"C:\Program Files\NimBridge\NimBridge.exe", "--config", r"C:\a b\s.json"]

    assert not autostart.autostart_enabled()
    autostart.set_autostart(True, command=command)

    assert autostart.autostart_enabled()
    assert fake.keys[autostart.WINDOWS_RUN_KEY]["NimBridge"] == (
        fake.REG_SZ,
        r'"C:\Program Files\NimBridge\NimBridge.exe" --config "C:\a b\s.json"',
    )
    autostart.set_autostart(False, command=command)
    assert not autostart.autostart_enabled()
    assert fake.keys[autostart.WINDOWS_RUN_KEY] == {}
    autostart.set_autostart(False, command=command)  # already off: fine


def test_default_command_starts_this_app(monkeypatch):
    assert autostart.default_command() == [sys.executable, "-m", "app"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert autostart.default_command() == [sys.executable]


def test_linux_entry_is_skipped_once_the_program_is_uninstalled():
    # TryExec names the program: when a package removal deletes it, the desktop
    # session ignores the user's autostart entry instead of failing at each login.
    text = autostart._desktop_entry(["/opt/nimbridge/nimbridge"])
    assert "TryExec=/opt/nimbridge/nimbridge\n" in text
