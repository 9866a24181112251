"""The composition root: parses the command line, builds the pieces, runs them.

`nimbridge serve` runs the translation server headless; `key`, `models` and
`doctor` manage and check the set-up. `serve`'s flags are a contract that
tests and later issues rely on: keep them.

Each command imports what it uses when it runs: `--version` and `--help` must
answer at once, without aiohttp, pypdf, keyring or Qt (tests/integration/test_cli.py
checks the modules loaded).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app import __version__
from app.config.settings import (
    NVIDIA_BASE_URL,
    PROXY_KEY_ENV,
    Settings,
    SettingsError,
    default_settings_path,
    load_settings,
    load_settings_or_set_aside,
)
from app.core.masking import Masker
from app.core.providers import provider_kind_for_url

if TYPE_CHECKING:  # keyring: imported by the commands that open the keychain
    from app.config.history import HistoryWriter
    from app.config.secrets import ProviderKeys
    from app.logs import ProblemTally

log = logging.getLogger("app.cli")
COMMANDS = (
    "serve",
    "gui",
    "key",
    "models",
    "doctor",
    "code",
    "codex",
    "selftest",
    "statusline",
    "usage",
)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser, and each command's own (whose usage its errors show)."""
    parser = argparse.ArgumentParser(
        prog="nimbridge",
        description="Anthropic Messages API in front of NVIDIA NIM and OpenAI-compatible APIs.",
    )
    parser.add_argument("--version", action="version", version=f"nimbridge {__version__}")
    commands = parser.add_subparsers(dest="command")
    by_name: dict[str, argparse.ArgumentParser] = {}

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", type=Path, help="settings file (default: the platform's)")
        by_name[name] = sub
        return sub

    serve = command("serve", "run the translation server without a UI")
    gui = command("gui", "the tray app (what `nimbridge` alone starts)")
    for sub in (serve, gui):
        _server_flags(sub)
    gui.add_argument(
        "--show",
        action="store_true",
        help="open the home window at start (the application menu's entry does; "
        "without it, only the tray icon shows where there is a tray)",
    )

    key = command("key", "store, remove or list provider and web search keys in the OS keychain")
    key.add_argument("action", choices=["set", "delete", "status"])
    key.add_argument(
        "provider",
        nargs="?",
        help="a provider's name, e.g. nvidia, or a web search backend: tavily, brave "
        "(web-search-tavily when a provider has that name); needed by set and delete",
    )

    models = command("models", "list the providers' chat models with their capabilities")
    models.add_argument("--provider", help="only this provider")
    models.add_argument("--probe", action="store_true", help="send each model one tool call")
    models.add_argument("--refresh", action="store_true", help="ignore cached lists")

    command("doctor", "check the set-up and say what is wrong, in plain words")

    command("selftest", "prove this installation works, offline, in a few seconds")

    command("statusline", "one line for Claude Code's status bar (reads its JSON on stdin)")

    usage = command("usage", "tokens, requests, latency and errors from the request history")
    usage.add_argument("--days", type=int, default=7, help="the last N days, today included (7)")
    usage.add_argument(
        "--by",
        choices=["model", "provider", "session", "project"],
        default="model",
        help="what the totals are grouped by (model)",
    )
    usage.add_argument("--history", type=Path, help="the history file (default: the platform's)")

    for name, agent, example in (
        ("code", "Claude Code", "-- -p 'fix the tests'"),
        ("codex", "Codex CLI", "-- exec 'fix the tests'"),
    ):
        sub = command(name, f"run {agent} here, through NimBridge")
        sub.add_argument("--model", help=f"the upstream model {agent} uses (default: the tiers')")
        sub.add_argument("--folder", type=Path, help=f"where {agent} works (default: here)")
        sub.add_argument(
            "--proxy-key",
            help=f"the running NimBridge's proxy key, if it needs one (or env {PROXY_KEY_ENV})",
        )
        sub.add_argument(
            "agent_args",
            nargs=argparse.REMAINDER,
            metavar="ARGS",
            help=f"after --, arguments for {agent} (e.g. {example})",
        )
    return parser, by_name


def _server_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    sub.add_argument("--port", type=int, help="port to listen on (default 8787; 0 picks one)")
    sub.add_argument(
        "--upstream-url",
        help=f"the default provider's base URL (default {NVIDIA_BASE_URL}); its preset "
        "(pacing, quirks, key variable) follows from the URL: NVIDIA's, OpenAI's, "
        "OpenRouter's, DeepSeek's, Cloudflare's, Ollama's (port 11434) and LM Studio's "
        "(1234) on this computer, else custom",
    )
    sub.add_argument("--model", help="upstream model that claude-* names map to by default")
    sub.add_argument(
        "--proxy-key",
        help=f"key clients must send (or env {PROXY_KEY_ENV}); without one, "
        "NimBridge's own provider keys are used, else the client's key is passed on",
    )
    sub.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)


def parse_command_line(raw: list[str]) -> argparse.Namespace:
    """The arguments; a mistake exits 2 with the usage of the command it was made in."""
    parser, commands = build_parser()
    if not raw or raw[0] not in (*COMMANDS, "-h", "--help", "--version"):
        raw = ["gui", *raw]  # `nimbridge [serve's flags]` is the tray app
    args, unknown = parser.parse_known_args(raw)
    if unknown:  # argparse would blame the top level and show its usage
        commands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _agent_args(args: argparse.Namespace) -> list[str]:
    """What follows `--` on a `code` or `codex` command line, for the agent itself."""
    given: list[str] = args.agent_args
    return given[1:] if given[:1] == ["--"] else given


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_command_line(list(argv if argv is not None else sys.argv[1:]))
    if args.command == "statusline":  # run by Claude Code after every turn: no keychain, fast
        from app.commands.statusline import run_statusline

        port = (load_settings(args.config) if args.config else Settings()).port
        return run_statusline(
            os.environ, sys.stdin, sys.stdout, default_url=f"http://127.0.0.1:{port}"
        )
    if args.command == "usage":  # reads the history file: no keychain, no server
        return _run_usage(args)
    settings_path = args.config or default_settings_path()
    # A file named on the command line must be there; the tray app's first run creates it.
    if args.config is not None and args.command != "gui" and not args.config.exists():
        print(f"nimbridge: the settings file {args.config} does not exist", file=sys.stderr)
        return 2
    set_aside_warning: str | None = None
    try:
        if args.command == "gui":  # users: keep a broken file aside and start anyway
            settings, set_aside_warning = load_settings_or_set_aside(settings_path)
        else:  # servers and scripts: a broken file is an error to fix, as it stands
            settings = load_settings(settings_path)
        if args.command in ("serve", "gui"):
            url = args.upstream_url
            settings = settings.with_overrides(  # checked as the file is: SettingsError
                host=args.host,
                port=args.port,
                upstream_url=url,
                upstream_kind=provider_kind_for_url(url) if url is not None else None,
                model=args.model,
                log_level=args.log_level,
            )
    except SettingsError as exc:
        print(f"nimbridge: invalid settings: {exc}", file=sys.stderr)
        return 2
    from app.config.secrets import ProviderKeys, open_secret_store
    from app.logs import log_crashes, setup_logging

    if args.command == "selftest":  # reports the keychain itself: do not open it here
        from app.commands.selftest import run_selftest
        from app.ui.diagnostics import qt_platform_plugins

        setup_logging("WARNING")
        return run_selftest(qt_platform_plugins)
    # `serve` logs a keychain warning once it listens (so a refusal to start stays
    # one line); `doctor` reports it as one of its findings; the others print it at once.
    deferred: list[str] = [set_aside_warning] if set_aside_warning else []
    warn: Callable[[str], None] = {
        "serve": deferred.append,
        "gui": deferred.append,
        "doctor": lambda _message: None,
    }.get(args.command, _warn_now)
    keys = ProviderKeys(open_secret_store(warn=warn), os.environ)
    proxy_key = getattr(args, "proxy_key", None) or os.environ.get(PROXY_KEY_ENV) or None
    if proxy_key:
        keys.remember(proxy_key)
    # The one masking step: the log filter and the server share it (the server adds
    # the keys pass-through clients send, the service a proxy key it generates).
    secrets = keys.masker
    if args.command == "gui":
        notices = [set_aside_warning] if set_aside_warning else []
        return run_tray_app(
            settings, settings_path, keys, proxy_key, secrets, deferred, notices, show=args.show
        )
    if args.command in ("code", "codex"):  # the agent owns the terminal: log to a file
        return run_code(args, settings, keys, proxy_key, secrets)
    setup_logging(settings.log_level, secrets=secrets)
    log_crashes()
    if args.command == "key":
        from app.commands.keys import run_key_command

        return run_key_command(
            args.action,
            args.provider,
            providers=settings.providers,
            keys=keys,
            read_secret=_read_secret,
            out=sys.stdout,
            err=sys.stderr,
            web_search_backend=settings.web_search_backend,
        )
    if args.command == "models":
        from app.commands.models import run_models_command

        return asyncio.run(
            run_models_command(
                settings, keys, provider=args.provider, probe=args.probe, refresh=args.refresh
            )
        )
    if args.command == "doctor":
        from app.commands.doctor import run_doctor

        return asyncio.run(run_doctor(settings, settings_path, keys))
    if settings.require_proxy_key and not proxy_key:
        print(
            f"nimbridge: settings require a proxy key: pass --proxy-key or set {PROXY_KEY_ENV}",
            file=sys.stderr,
        )
        return 2
    from app.server.event_loop import new_server_loop

    return asyncio.run(
        serve(settings, keys, proxy_key, warnings=deferred), loop_factory=new_server_loop
    )


def _run_usage(args: argparse.Namespace) -> int:
    import datetime

    from app.commands.usage import run_usage
    from app.config.history import default_history_path

    return run_usage(
        args.history or default_history_path(),
        days=args.days,
        by=args.by,
        out=sys.stdout,
        err=sys.stderr,
        today=datetime.date.today(),
    )


def open_request_history(settings: Settings) -> HistoryWriter | None:
    """The request history's writer (its own thread), or None when the settings keep none."""
    if settings.history_days <= 0:
        return None
    from app.config.history import HistoryWriter, default_history_path

    return HistoryWriter(
        default_history_path(),
        keep_days=settings.history_days,
        max_bytes=settings.history_max_mb * 1024 * 1024,
    )


def log_path_of(file_name: str) -> Path:
    """A log file in the platform's log folder (~/.local/state/nimbridge/log on Linux)."""
    import platformdirs

    return platformdirs.user_log_path("nimbridge", appauthor=False) / file_name


def run_code(
    args: argparse.Namespace,
    settings: Settings,
    keys: ProviderKeys,
    proxy_key: str | None,
    secrets: Masker,
) -> int:
    """`nimbridge code`: its log goes to its own file (the tray's rotates its own), and
    what went wrong is summed up once Claude Code has given the terminal back."""
    from app.logs import ProblemTally, log_crashes, setup_logging

    log_path = log_path_of(f"nimbridge-{args.command}.log")
    problems = ProblemTally()
    setup_logging(
        settings.log_level, secrets=secrets, log_file=log_path, buffer=problems, stderr=False
    )
    log_crashes()
    if args.command == "codex":
        from app.commands.codex import run_codex_command

        codex_args = _agent_args(args)
        return run_codex_command(
            settings,
            keys,
            model=args.model,
            folder=args.folder,
            codex_args=codex_args,
            proxy_key=proxy_key,
            problems=problems,
            log_path=log_path,
        )
    claude_args = _agent_args(args)
    history = open_request_history(settings)  # when `code` starts its own server
    try:
        return _run_code(args, settings, keys, proxy_key, claude_args, problems, log_path, history)
    finally:
        if history is not None:
            history.close()


def _run_code(
    args: argparse.Namespace,
    settings: Settings,
    keys: ProviderKeys,
    proxy_key: str | None,
    claude_args: list[str],
    problems: ProblemTally,
    log_path: Path,
    history: HistoryWriter | None,
) -> int:
    from app.commands.code import run_code_command

    return run_code_command(
        settings,
        keys,
        model=args.model,
        folder=args.folder,
        claude_args=claude_args,
        proxy_key=proxy_key,
        problems=problems,
        log_path=log_path,
        history=history,
    )


def run_tray_app(
    settings: Settings,
    settings_path: Path,
    keys: ProviderKeys,
    proxy_key: str | None,
    secrets: Masker,
    warnings: Sequence[str],
    notices: Sequence[str] = (),
    *,
    show: bool = False,
) -> int:
    """The tray app; `warnings` go to the log, `notices` also pop up once (rare, and
    something the user must act on: a settings file set aside). `show`: the home window
    opens at once."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM")
    ):
        print(
            "nimbridge: no display found; run `nimbridge serve` for the headless server",
            file=sys.stderr,
        )
        return 2
    from app.logs import LogBuffer, log_crashes, setup_logging
    from app.service import ProxyService
    from app.ui.qt_main import run_gui

    buffer = LogBuffer()
    log_path = log_path_of("nimbridge.log")
    setup_logging(settings.log_level, secrets=secrets, log_file=log_path, buffer=buffer)
    log_crashes()
    for warning in warnings:
        log.warning("%s", warning)
    history = open_request_history(settings)
    service = ProxyService(
        settings,
        keys,
        settings_path=settings_path,
        proxy_key=proxy_key,
        log_buffer=buffer,
        log_path=log_path,
        generate_proxy_key=True,
        history=history,
    )
    try:
        return run_gui(service, notices=notices, show_home=show)
    finally:
        if history is not None:
            history.close()


def _warn_now(message: str) -> None:
    print(f"nimbridge: {message}", file=sys.stderr)


def _read_secret(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\n")  # piped: `printf %s "$KEY" | nimbridge key set`


async def serve(
    settings: Settings, keys: ProviderKeys, proxy_key: str | None, *, warnings: Sequence[str] = ()
) -> int:
    history = open_request_history(settings)
    try:
        return await _serve(settings, keys, proxy_key, history, warnings)
    finally:
        if history is not None:  # what is queued is written before the process ends
            await asyncio.to_thread(history.close)


async def _serve(
    settings: Settings,
    keys: ProviderKeys,
    proxy_key: str | None,
    history: HistoryWriter | None,
    warnings: Sequence[str],
) -> int:
    from app.server.access import UnsafeBindError
    from app.server.app import ProxyServer
    from app.server.event_loop import loop_name

    server = ProxyServer(settings, keys, proxy_key, history=history)
    try:
        base_url = await server.start()
    except UnsafeBindError as exc:
        print(f"nimbridge: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:  # never share: the first server keeps the port
            reason += " (another NimBridge or program uses it; choose another with --port)"
        print(
            f"nimbridge: cannot listen on {settings.host}:{settings.port}: {reason}",
            file=sys.stderr,
        )
        return 2
    # Before the announcement: whoever reads it may signal us at once, and the
    # default action would kill the process without the drain.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: no loop signal handlers
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
    print(f"NimBridge listening on {base_url}", flush=True)
    log.debug("event loop: %s", loop_name(loop))
    for warning in warnings:
        log.warning("%s", warning)
    if proxy_key:
        log.info("clients must send the proxy key")
    else:
        log.info("no proxy key: NimBridge's provider keys are used, else each client's own")
    for provider in settings.providers:
        status = keys.status(provider)
        log.info(
            "provider %s: %s preset at %s, key %s",
            provider.name,
            provider.kind.value,
            provider.base_url,
            status.source.value,
        )
    log.info("claude-* models map to %s", settings.tiers.default)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await server.stop()
    log.info("stopped")
    return 0
