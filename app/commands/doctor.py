"""`nimbridge doctor`: one line per check, each with what to do about it.

Checks: the settings file, the keychain, each provider (key present, reachable,
key accepted), the tier models (listed and entitled), the port, Claude Code.
Exit code 0 when nothing failed (warnings allowed), 1 otherwise.
"""

import asyncio
import enum
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from app.config.secrets import KeySource, ProviderKeys
from app.config.settings import TIER_NAMES, Settings
from app.core.errors import ProxyError
from app.server.providers import ProviderRegistry
from app.server.upstream import UpstreamClient


class Verdict(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    verdict: Verdict
    subject: str
    words: str

    def line(self) -> str:
        return f"[{self.verdict.value:>4}] {self.subject}: {self.words}"


def check_settings_file(path: Path) -> Finding:
    if path.exists():
        return Finding(Verdict.OK, "settings", f"{path} is valid")
    return Finding(Verdict.OK, "settings", f"no file yet at {path}; built-in defaults in use")


def check_keychain(keys: ProviderKeys) -> Finding:
    store = keys.store
    if store.persistent:
        return Finding(Verdict.OK, "keychain", store.description)
    return Finding(
        Verdict.WARN,
        "keychain",
        "no secure keychain found: keys are kept in memory for this run only. On Linux, "
        "install and unlock gnome-keyring or KWallet (a Secret Service); or set the "
        "providers' environment variables (e.g. NVIDIA_API_KEY)",
    )


def check_port(host: str, port: int) -> Finding:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return Finding(
                Verdict.WARN,
                "port",
                f"{host}:{port} is in use ({exc.strerror}); if it is not NimBridge already, "
                "choose another port with --port or in the settings",
            )
    return Finding(Verdict.OK, "port", f"{host}:{port} is free")


def check_claude_code() -> Finding:
    claude = shutil.which("claude")
    if claude is None:
        return Finding(
            Verdict.WARN,
            "Claude Code",
            "not found on PATH; install it with: npm install -g @anthropic-ai/claude-code",
        )
    try:
        version = subprocess.run(
            [claude, "--version"], capture_output=True, text=True, timeout=15, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding(Verdict.WARN, "Claude Code", f"{claude} did not answer --version ({exc})")
    return Finding(Verdict.OK, "Claude Code", f"{version or 'unknown version'} at {claude}")


async def check_providers(settings: Settings, keys: ProviderKeys) -> list[Finding]:
    findings: list[Finding] = []
    upstream = UpstreamClient(
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=min(settings.read_timeout_s, 30),
    )
    await upstream.start()
    try:
        registry = ProviderRegistry(settings, keys, upstream)
        reachable: set[str] = set()
        for provider in settings.providers:
            subject = f"provider {provider.name}"
            status = keys.status(provider)
            if status.source is KeySource.NONE and provider.preset.needs_key:
                env = " or ".join(f"${name}" for name in provider.preset.key_env)
                findings.append(
                    Finding(
                        Verdict.FAIL,
                        subject,
                        f"no key: run `nimbridge key set {provider.name}`"
                        + (f" or set {env}" if env else ""),
                    )
                )
                continue
            try:
                models = await registry.catalog(provider.name, refresh=True)
            except ProxyError as exc:
                findings.append(Finding(Verdict.FAIL, subject, exc.message))
                continue
            reachable.add(provider.name)
            where = "" if status.source is KeySource.NONE else f", key from {status.source.value}"
            findings.append(
                Finding(
                    Verdict.OK,
                    subject,
                    f"{provider.base_url} answers, {len(models)} chat models{where}",
                )
            )
        findings.extend(await _check_tiers(settings, registry, reachable))
    finally:
        await upstream.close()
    return findings


async def _check_tiers(
    settings: Settings, registry: ProviderRegistry, reachable: set[str]
) -> list[Finding]:
    findings: list[Finding] = []
    probed: dict[tuple[str, str], Finding] = {}
    for tier in TIER_NAMES:
        reference = getattr(settings.tiers, tier)
        if not reference:
            continue
        provider, model = registry.router.resolve_reference(reference)
        subject = f"{tier} model"
        if provider not in reachable:
            findings.append(Finding(Verdict.WARN, subject, f"{model}: {provider} not reachable"))
            continue
        if (provider, model) not in probed:
            listed = any(m.id == model for m in await registry.catalog(provider))
            result = await registry.probe(provider, model)
            if not result.entitled:
                verdict, words = Verdict.FAIL, f"{model} on {provider}: {result.detail}"
            elif not listed:
                verdict = Verdict.WARN
                words = f"{model} answers but is not in {provider}'s model list"
            else:
                verdict, words = Verdict.OK, f"{model} on {provider}: {result.detail}"
            probed[(provider, model)] = Finding(verdict, subject, words)
        findings.append(probed[(provider, model)])
    return findings


async def run_doctor(
    settings: Settings, settings_path: Path, keys: ProviderKeys, out: TextIO = sys.stdout
) -> int:
    findings = [check_settings_file(settings_path), check_keychain(keys)]
    findings += await check_providers(settings, keys)
    findings.append(await asyncio.to_thread(check_port, settings.host, settings.port))
    findings.append(await asyncio.to_thread(check_claude_code))
    for finding in findings:
        print(finding.line(), file=out)
    failed = sum(f.verdict is Verdict.FAIL for f in findings)
    print("all good" if not failed else f"{failed} problem(s) to fix", file=out)
    return 1 if failed else 0
