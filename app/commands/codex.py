"""`nimbridge codex [--model M] [--folder DIR] [-- CODEX_ARGS...]`: Codex CLI on NimBridge.

As `nimbridge code` (`app/commands/code.py`): reuses a running NimBridge or starts
one in this process for the session. Codex gets NimBridge as its model provider
through `-c` overrides (`app/launcher/codex.py`), the proxy key through the variable
that provider names, the default tier's model and its context window; the user's
own ~/.codex/config.toml is never written.
"""

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from app.commands.code import _forwarding_sigterm, _sum_up, serve_for_session
from app.config.secrets import ProviderKeys
from app.config.settings import Settings
from app.launcher.codex import INSTALL_COMMAND, codex_arguments, codex_env, find_codex
from app.launcher.context_window import served_context_window
from app.logs import ProblemTally


def run_codex_command(
    settings: Settings,
    keys: ProviderKeys,
    *,
    model: str | None,
    folder: Path | None,
    codex_args: Sequence[str],
    proxy_key: str | None,
    problems: ProblemTally | None = None,
    log_path: Path | None = None,
    err: TextIO = sys.stderr,
    codex: Path | None = None,
) -> int:
    codex = codex or find_codex()
    if codex is None:
        print(
            f"nimbridge: Codex CLI is not installed; install it with: {INSTALL_COMMAND}", file=err
        )
        return 127
    if model:
        settings = replace(settings, tiers=replace(settings.tiers, default=model))
    session = serve_for_session(settings, keys, reuse=not model, proxy_key=proxy_key, err=err)
    if isinstance(session, int):
        return session
    base_url, token, started = session
    model_name = settings.tiers.default
    print(f"nimbridge: Codex's model: {model_name}", file=err)
    arguments = codex_arguments(
        base_url=base_url,
        model=model_name,
        context_window=served_context_window(base_url, token, model_name, settings),
    )
    try:
        with _forwarding_sigterm() as forward:
            process = subprocess.Popen(
                [str(codex), *arguments, *codex_args],
                cwd=folder or Path.cwd(),
                env=codex_env(os.environ, token),
            )
            forward.to(process)
            code = process.wait()
        return 128 - code if code < 0 else code
    except KeyboardInterrupt:
        return 130
    finally:
        if started is not None:
            started.stop()
        _sum_up(problems, log_path, err)
