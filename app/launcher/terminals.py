"""Opening a terminal that runs Claude Code (or Codex) with NimBridge's environment, on each OS.

Invariants:
- The proxy token never appears in a command line (any local user can read
  argv): the variables travel in a script readable only by the user (0600),
  which the terminal runs and which removes itself before starting the program.
- Each program's own variables that would bypass NimBridge (`unset`: Claude
  Code's ANTHROPIC_API_KEY, Codex's OPENAI_API_KEY...) are removed in the script.
- Pure where it can be: the choice of terminal takes the platform, the
  environment and `which` as arguments, and `launch_in_terminal` takes `popen`,
  so tests assert the command line without opening anything.

Per OS (DESKTOP.md, "Opening a terminal with Claude Code"):
- Linux: the first of $TERMINAL, x-terminal-emulator, gnome-terminal, konsole,
  xfce4-terminal, kitty, alacritty, wezterm, xterm, each with its own prefix
  before the command (`-e`, `--`, `-x`, `start --`, nothing).
- macOS: Terminal through `osascript` (Terminal does not inherit our
  environment, hence the script). iTerm is a later option (its AppleScript
  dictionary differs: `create window with default profile command ...`).
- Windows: Windows Terminal (`wt.exe`) if found, else `cmd.exe /k` in a new
  console, both running a `.cmd` script of `set` lines.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from app.launcher.discovery import INSTALL_COMMAND
from app.launcher.environment import NO_PROXY_NAMES, UNSET

# Linux terminals in order of preference, each with what goes before the command.
LINUX_TERMINALS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("x-terminal-emulator", ("-e",)),  # Debian's alternatives require -e support
    ("gnome-terminal", ("--",)),  # -e is deprecated and takes a single string
    ("konsole", ("-e",)),
    ("xfce4-terminal", ("-x",)),  # -e takes a single string; -x the rest of argv
    ("kitty", ()),
    ("alacritty", ("-e",)),
    ("wezterm", ("start", "--")),
    ("xterm", ("-e",)),
)
_PREFIXES = dict(LINUX_TERMINALS)

# Popen's flag for a new console window on Windows (defined only there).
CREATE_NEW_CONSOLE = getattr(subprocess, "CREATE_NEW_CONSOLE", 0x00000010)

Shell = Literal["posix", "powershell", "cmd"]
Popen = Callable[..., Any]


class LaunchError(Exception):
    """Words for the user: why no terminal with Claude Code could be opened."""


def write_launch_script(
    env: Mapping[str, str],
    folder: Path,
    program: Path,
    *,
    directory: Path | None = None,
    program_args: Sequence[str] = (),
    unset: Sequence[str] = UNSET,
) -> Path:
    """A 0600 bash script: remove itself, cd to `folder`, export `env`, unset `unset`,
    exec `program` with `program_args`.

    NO_PROXY values are added to the terminal shell's own (its profile may set more
    than NimBridge's environment had), never put in their place."""
    lines = [
        "#!/usr/bin/env bash",
        f"# Written by NimBridge to start {program.name}; it removes itself.",
        # First thing: bash keeps the open file, so it reads on while the token is gone
        # from the disk, even when a later line fails.
        'rm -f -- "$0"',
        f"cd -- {shlex.quote(str(folder))} || {{ read -r -p 'Press Enter to close.'; exit 1; }}",
    ]
    lines += [_posix_export(name, value) for name, value in env.items()]
    lines += [f"unset {name}" for name in unset]
    lines.append(" ".join(["exec", *map(shlex.quote, [str(program), *program_args])]))
    return _write_private(
        "\n".join(lines) + "\n", program, suffix=".sh", directory=directory, newline="\n"
    )


def _posix_export(name: str, value: str) -> str:
    if name in NO_PROXY_NAMES:
        return f'export {name}="${{{name}:+${name},}}"{shlex.quote(value)}'
    return f"export {name}={shlex.quote(value)}"


def write_launch_script_windows(
    env: Mapping[str, str],
    folder: Path,
    program: Path,
    *,
    directory: Path | None = None,
    program_args: Sequence[str] = (),
    unset: Sequence[str] = UNSET,
) -> Path:
    """A `.cmd` script for `cmd /k`: cd to `folder`, `set` each variable, then `program`
    with `program_args`, each in double quotes (so none may hold one).

    It deletes itself on the line that starts the program: cmd reads a whole line
    before running it, and a batch file started without `call` (claude.cmd) never
    returns to this one, so the missing file is never read again. Untested on a
    real Windows yet; if it misbehaves, drop the `del` and sweep the temp folder.
    """
    lines = ["@echo off", f'cd /d "{_cmd_value(str(folder))}"']
    lines += [f'set "{name}={_cmd_value(value)}"' for name, value in env.items()]
    lines += [f'set "{name}="' for name in unset]
    words = " ".join(f'"{_cmd_value(word)}"' for word in [str(program), *program_args])
    lines.append(f'del "%~f0" & {words}')
    return _write_private(
        "\r\n".join(lines) + "\r\n", program, suffix=".cmd", directory=directory, newline=""
    )


def _cmd_value(value: str) -> str:
    """`value` inside a quoted batch-file word: only `%` needs doubling there."""
    if '"' in value or "\n" in value or "\r" in value:
        raise LaunchError(f"cannot pass {value!r} through a cmd script (quote or newline)")
    return value.replace("%", "%%")


def _write_private(
    text: str, program: Path, *, suffix: str, directory: Path | None, newline: str
) -> Path:
    # mkstemp creates the file readable and writable by this user only (0600);
    # named after the program (nimbridge-claude-..., nimbridge-codex-...).
    prefix = f"nimbridge-{program.stem}-"
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as out:
            out.write(text)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def terminal_command(
    script: Path, *, platform: str, env: Mapping[str, str], which: Callable[[str], str | None]
) -> list[str] | None:
    """The command line opening a terminal that runs `script`, or None when none is found."""
    if platform == "darwin":
        # AppleScript string: escape backslashes and quotes around the shell words.
        shell = f"bash {shlex.quote(str(script))}"
        quoted = shell.replace("\\", "\\\\").replace('"', '\\"')
        return [
            "osascript",
            "-e",
            f'tell application "Terminal" to do script "{quoted}"',
            "-e",
            'tell application "Terminal" to activate',
        ]
    if platform == "win32":
        wt = which("wt.exe") or which("wt")
        if wt:
            # `;` separates wt subcommands, so a path holding one must be escaped.
            return [wt, "cmd", "/k", str(script).replace(";", "\\;")]
        return [which("cmd.exe") or "cmd.exe", "/k", str(script)]
    run = ["bash", str(script)]
    chosen = env.get("TERMINAL", "").strip()
    if chosen:
        words = shlex.split(chosen)
        found = which(words[0]) if words else None
        if found:
            # A known terminal keeps its own prefix; any other gets the common `-e`.
            prefix = _PREFIXES.get(Path(words[0]).name, ("-e",))
            return [found, *words[1:], *prefix, *run]
    for name, prefix in LINUX_TERMINALS:
        found = which(name)
        if found:
            return [found, *prefix, *run]
    return None


def launch_in_terminal(
    folder: Path,
    env: Mapping[str, str],
    program: Path | None,
    *,
    platform: str = sys.platform,
    popen: Popen = subprocess.Popen,
    which: Callable[[str], str | None] = shutil.which,
    environ: Mapping[str, str] | None = None,
    program_args: Sequence[str] = (),
    unset: Sequence[str] = UNSET,
) -> list[str]:
    """Open a terminal in `folder` running `program` (Claude Code unless told) with
    `env` and without the `unset` variables; the command line it ran.

    On Windows `program_args` must hold no double quote (LaunchError otherwise).
    Raises LaunchError with words a user can act on.
    """
    if program is None:
        raise LaunchError(f"Claude Code is not installed. Install it with:\n{INSTALL_COMMAND}")
    if not folder.is_dir():
        raise LaunchError(f"{folder} is not a folder")
    environ = os.environ if environ is None else environ
    windows = platform == "win32"
    make_script = write_launch_script_windows if windows else write_launch_script
    script = make_script(env, folder, program, program_args=program_args, unset=unset)
    command = terminal_command(script, platform=platform, env=environ, which=which)
    if command is None:
        script.unlink(missing_ok=True)
        raise LaunchError("no terminal found: set $TERMINAL or install xterm")
    options: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
    }
    if windows:
        options["creationflags"] = CREATE_NEW_CONSOLE
    else:
        # Its own session: the terminal outlives NimBridge and ignores our signals.
        options["start_new_session"] = True
    try:
        popen(command, **options)
    except OSError as error:
        script.unlink(missing_ok=True)
        raise LaunchError(f"could not start {command[0]}: {error}") from error
    return command


def setup_lines(
    env: Mapping[str, str],
    *,
    shell: Shell,
    unset: Sequence[str] = UNSET,
    command: Sequence[str] = (),
) -> str:
    """The lines a user pastes into their own terminal: `env` set, `unset` removed,
    then `command` when given (Codex takes its provider on the command line)."""
    if shell == "posix":
        lines = [_posix_export(name, value) for name, value in env.items()]
        lines += [f"unset {name}" for name in unset]
        words = [_posix_word(word) for word in command]
    elif shell == "powershell":
        lines = [f"$env:{name} = {_powershell_string(value)}" for name, value in env.items()]
        lines += [f"Remove-Item Env:{name} -ErrorAction SilentlyContinue" for name in unset]
        words = [
            word if _PLAIN_WORD.fullmatch(word) else _powershell_string(word) for word in command
        ]
    else:
        # `set "N=V"`: the quotes keep `&`, `|` and `^` in V literal at the prompt.
        lines = [f'set "{name}={value}"' for name, value in env.items()]
        lines += [f"set {name}=" for name in unset]
        words = [
            word if _PLAIN_WORD.fullmatch(word) else f'"{_cmd_word(word)}"' for word in command
        ]
    if words:
        lines.append(" ".join(words))
    return "\n".join(lines) + "\n"


# A word every shell passes on as it is: no quoting needed.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_./:-]+")


def _posix_word(word: str) -> str:
    # Double quotes around a word of single quotes (TOML's) read better than '"'"'.
    if "'" in word and not any(c in word for c in '"$`\\!'):
        return f'"{word}"'
    return shlex.quote(word)


def _powershell_string(value: str) -> str:
    # Single-quoted PowerShell strings take everything literally but `'`, doubled.
    return "'" + value.replace("'", "''") + "'"


def _cmd_word(word: str) -> str:
    if '"' in word:
        raise ValueError(f"cannot quote {word!r} for cmd (it holds a double quote)")
    return word
