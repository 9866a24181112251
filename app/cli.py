"""The composition root: parses the command line, builds the pieces, runs them.

`nimbridge serve` runs the translation server headless. Its flags are a
contract that tests and later issues rely on: keep them.
"""

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from app import __version__
from app.config.secrets import ServerSecrets, secrets_from_env
from app.config.settings import (
    NVIDIA_BASE_URL,
    Settings,
    SettingsError,
    load_settings,
    validate_settings,
)
from app.logs import setup_logging
from app.server.app import ProxyServer

log = logging.getLogger("app.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nimbridge",
        description="Anthropic Messages API in front of NVIDIA NIM and OpenAI-compatible APIs.",
    )
    parser.add_argument("--version", action="version", version=f"nimbridge {__version__}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the translation server without a UI")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8787; 0 picks one)")
    serve.add_argument(
        "--upstream-url", help=f"OpenAI-compatible base URL (default {NVIDIA_BASE_URL})"
    )
    serve.add_argument("--model", help="upstream model that claude-* names map to by default")
    serve.add_argument(
        "--proxy-key",
        help="key clients must send (or env NIMBRIDGE_PROXY_KEY); without one, "
        "the client's key is passed to the upstream",
    )
    serve.add_argument("--config", type=Path, help="settings file (JSON)")
    serve.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        # The tray app arrives with its own issue; until then the app is the server.
        args = parser.parse_args(["serve", *(argv or sys.argv[1:])])
    return run_serve(args)


def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config) if args.config else Settings()
        settings = validate_settings(
            settings.with_overrides(
                host=args.host,
                port=args.port,
                upstream_url=args.upstream_url,
                model=args.model,
                log_level=args.log_level,
            ),
            "command line",
        )
    except SettingsError as exc:
        print(f"nimbridge: invalid settings: {exc}", file=sys.stderr)
        return 2
    secrets = secrets_from_env(proxy_key=args.proxy_key)
    setup_logging(settings.log_level, secrets=lambda: secrets)
    return asyncio.run(serve(settings, secrets))


async def serve(settings: Settings, secrets: ServerSecrets) -> int:
    server = ProxyServer(settings, secrets)
    try:
        base_url = await server.start()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(
            f"nimbridge: cannot listen on {settings.host}:{settings.port}: {reason}",
            file=sys.stderr,
        )
        return 2
    print(f"NimBridge listening on {base_url}", flush=True)
    if secrets.proxy_key:
        log.info(
            "clients must send the proxy key; upstream key %s",
            "set" if secrets.upstream_key else "MISSING (set NVIDIA_API_KEY)",
        )
    else:
        log.info("no proxy key: each client's own key is passed to %s", settings.upstream_url)
    log.info("claude-* models map to %s", settings.model)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: no loop signal handlers
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
    try:
        await stop.wait()
    finally:
        in_flight = server.app_state.in_flight
        log.info(
            "shutting down (%d request(s) in flight, waiting up to %g s)",
            in_flight,
            settings.shutdown_grace_s,
        )
        await server.stop()
    log.info("stopped")
    return 0
