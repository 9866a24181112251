"""app.launcher.discovery: `claude` on PATH, else the installers' places (fake trees)."""

import os
from pathlib import Path

import pytest

from app.launcher.discovery import candidate_paths, claude_version, discover, find_claude


def executable(path: Path, body: str = "#!/bin/sh\necho '2.1.197 (Claude Code)'\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(0o755)
    return path


def test_path_wins(tmp_path: Path) -> None:
    on_path = executable(tmp_path / "bin" / "claude")
    executable(tmp_path / "home" / ".claude" / "local" / "claude")
    found = find_claude(
        path=str(tmp_path / "bin"), home=tmp_path / "home", platform="linux", env={}
    )
    assert found == on_path


@pytest.mark.parametrize(
    "where",
    [".claude/local/claude", ".local/bin/claude", ".npm-global/bin/claude"],
)
def test_install_places_when_not_on_path(tmp_path: Path, where: str) -> None:
    home = tmp_path / "home"
    installed = executable(home / where)
    found = find_claude(path=str(tmp_path / "empty"), home=home, platform="linux", env={})
    assert found == installed


def test_npm_prefix_and_windows_appdata(tmp_path: Path) -> None:
    prefix_claude = executable(tmp_path / "prefix" / "bin" / "claude")
    assert (
        find_claude(
            path="",
            home=tmp_path,
            platform="linux",
            env={"NPM_CONFIG_PREFIX": str(tmp_path / "prefix")},
        )
        == prefix_claude
    )
    places = candidate_paths(
        home=Path("C:/Users/me"), platform="win32", env={"APPDATA": "C:/Users/me/AppData/Roaming"}
    )
    assert Path("C:/Users/me/AppData/Roaming/npm/claude.cmd") in places
    assert Path("/opt/homebrew/bin/claude") in candidate_paths(
        home=Path("/Users/me"), platform="darwin", env={}
    )


def test_not_executable_is_not_found(tmp_path: Path) -> None:
    home = tmp_path / "home"
    plain = home / ".local" / "bin" / "claude"
    plain.parent.mkdir(parents=True)
    plain.write_text("not a program")
    assert find_claude(path="", home=home, platform="linux", env={}) is None


def test_version(tmp_path: Path) -> None:
    claude = executable(tmp_path / "claude")
    assert claude_version(claude) == "2.1.197 (Claude Code)"
    broken = executable(tmp_path / "broken", "#!/bin/sh\nexit 3\n")
    assert claude_version(broken) is None
    assert claude_version(tmp_path / "missing") is None


def test_discover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    executable(tmp_path / "bin" / "claude")
    found = discover(path=str(tmp_path / "bin"), home=tmp_path)
    assert found is not None and found.version == "2.1.197 (Claude Code)"
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert discover(path=str(tmp_path / "nothing"), home=tmp_path / "nohome") is None or (
        os.access("/usr/local/bin/claude", os.X_OK)  # a real install on this machine
    )
