"""`nimbridge doctor`: one line per check, each with what to do about it.

Checks: the settings file, the keychain, the proxy and the trust store, each provider
(key present, reachable, key accepted), the tier models (listed and entitled), web
search (key present, one test search, as providers get one test call) and web fetch,
the port, Claude Code.
Exit code 0 when nothing failed (warnings allowed), 1 otherwise. No line shows a key.
"""

import asyncio
import enum
import json
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from app.config.secrets import (
    WEB_SEARCH_KEY_ENV_BY_BACKEND,
    KeySource,
    ProviderKeys,
    SecretStoreUnavailable,
)
from app.config.settings import RESERVED_PROVIDER_PREFIX, TIER_NAMES, Settings
from app.core.errors import ProxyError
from app.core.server_tools.backends import SearchQuery, WebToolError
from app.server.network import LOCAL_OPENER, Network, NetworkSetupError
from app.server.server_tools.backends import make_web_search
from app.server.upstream.registry import NO_TOOL_CALL, ProviderRegistry, open_registry


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
    why = f" ({store.problem})" if store.problem else ""
    return Finding(
        Verdict.WARN,
        "keychain",
        f"no secure keychain found{why}: keys are kept in memory for this run only. On Linux, "
        "install and unlock gnome-keyring or KWallet (a Secret Service); or set the "
        "providers' environment variables (e.g. NVIDIA_API_KEY)",
    )


def check_port(host: str, port: int) -> Finding:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            version = nimbridge_version_at(host, port)
            if version is not None:  # the user's own NimBridge (the tray app or `serve`)
                return Finding(
                    Verdict.OK, "port", f"{host}:{port} is this NimBridge ({version}), running"
                )
            return Finding(
                Verdict.WARN,
                "port",
                f"{host}:{port} is in use by another program ({exc.strerror}); choose "
                "another port with --port or in the settings",
            )
    return Finding(Verdict.OK, "port", f"{host}:{port} is free")


def nimbridge_version_at(host: str, port: int, timeout_s: float = 2.0) -> str | None:
    """The version a NimBridge on host:port says in GET /health; None if none answers."""
    shown = f"[{host}]" if ":" in host else host
    try:
        with LOCAL_OPENER.open(f"http://{shown}:{port}/health", timeout=timeout_s) as response:
            health = json.loads(response.read())
    except (OSError, ValueError):
        return None
    if isinstance(health, dict) and health.get("status") == "ok" and "version" in health:
        return str(health["version"])
    return None


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


def check_network(settings: Settings, keys: ProviderKeys) -> tuple[list[Finding], Network]:
    """Which proxy and which trust store every check after this one goes through."""
    try:
        network = Network.from_settings(settings, keys)
        trust = Finding(Verdict.OK, "trust store", network.describe_trust())
    except NetworkSetupError as exc:  # the other checks go on without the CA file
        network = Network.from_settings(replace(settings, extra_ca_file=""), keys)
        trust = Finding(Verdict.FAIL, "trust store", str(exc))
    proxy = [Finding(Verdict.OK, "proxy", network.describe_proxy())]
    proxy += [Finding(Verdict.WARN, "proxy", problem) for problem in network.problems]
    return [*proxy, trust], network


async def check_providers(
    settings: Settings, keys: ProviderKeys, network: Network | None = None
) -> list[Finding]:
    findings: list[Finding] = []
    async with open_registry(
        settings, keys, network, read_timeout_s=min(settings.read_timeout_s, 30)
    ) as registry:
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
            elif not result.tools:  # False: it answered in text; None: could not tell
                verdict = Verdict.WARN
                words = (
                    f"{model} on {provider} answered without calling the tool, and Claude "
                    "Code needs tool calls: choose a model whose probe says 'tool calls "
                    "work' (nimbridge models --probe)"
                    if result.tools is False and result.detail == NO_TOOL_CALL
                    else f"{model} on {provider}: tool calls not confirmed ({result.detail})"
                )
            elif not listed:
                verdict = Verdict.WARN
                words = f"{model} answers but is not in {provider}'s model list"
            else:
                verdict, words = Verdict.OK, f"{model} on {provider}: {result.detail}"
            probed[(provider, model)] = Finding(verdict, subject, words)
        findings.append(probed[(provider, model)])
    return findings


async def check_web_search(
    settings: Settings, keys: ProviderKeys, network: Network | None = None
) -> Finding:
    """The chosen backend has what it needs and answers one test search (one credit)."""
    subject = "web search"
    backend = settings.web_search_backend
    if not backend:
        return Finding(
            Verdict.WARN,
            subject,
            "not set up, so clients' web searches (Claude Code's WebSearch) get an error; "
            "choose Tavily, Brave Search or SearXNG in Settings → Web tools, or set "
            '"web_search_backend" in the settings file',
        )
    where = ""
    if backend in WEB_SEARCH_KEY_ENV_BY_BACKEND:
        try:
            status = keys.web_search_key_status(backend)
        except SecretStoreUnavailable as exc:
            return Finding(Verdict.FAIL, subject, f"{backend}: {exc}")
        if status.source is KeySource.NONE:
            # A provider may hold the backend's name; the prefixed one always means the search key.
            taken = any(provider.name == backend for provider in settings.providers)
            name = RESERVED_PROVIDER_PREFIX + backend if taken else backend
            env = WEB_SEARCH_KEY_ENV_BY_BACKEND[backend]
            return Finding(
                Verdict.FAIL,
                subject,
                f"{backend} has no key: run `nimbridge key set {name}`, set ${env}, "
                "or save one in Settings → Web tools",
            )
        where = f", key from {status.source.value}"
    search = make_web_search(settings, keys, network)
    if search is None:  # settings validation admits only known backends
        return Finding(Verdict.FAIL, subject, f"unknown backend {backend!r}")
    try:
        results = await search.search(SearchQuery("NimBridge doctor test", max_results=1))
    except WebToolError as exc:  # its words never carry the key
        return Finding(Verdict.FAIL, subject, exc.message)
    finally:
        await search.close()
    count = "a result" if results else "no result"
    return Finding(
        Verdict.OK, subject, f"{search.describe} answered a test search ({count}){where}"
    )


def check_web_fetch(settings: Settings) -> Finding:
    subject = "web fetch"
    if not settings.web_fetch_enabled:
        return Finding(
            Verdict.OK,
            subject,
            'off ("web_fetch_enabled": false): clients\' web_fetch calls get an error',
        )
    limit = f"pages cut at {settings.web_fetch_max_chars:,} characters"
    if settings.fetch_private_addresses:
        return Finding(
            Verdict.WARN,
            subject,
            f'on, {limit}, and private addresses allowed ("fetch_private_addresses": true): '
            "a model or a page's redirect can reach localhost and your LAN through it; "
            "turn that off unless you need it",
        )
    return Finding(Verdict.OK, subject, f"on, public addresses only, {limit}")


async def run_doctor(
    settings: Settings, settings_path: Path, keys: ProviderKeys, out: TextIO = sys.stdout
) -> int:
    findings = [check_settings_file(settings_path), check_keychain(keys)]
    network_findings, network = check_network(settings, keys)
    findings += network_findings
    findings += await check_providers(settings, keys, network)
    findings += [await check_web_search(settings, keys, network), check_web_fetch(settings)]
    findings.append(await asyncio.to_thread(check_port, settings.host, settings.port))
    findings.append(await asyncio.to_thread(check_claude_code))
    for finding in findings:
        print(finding.line(), file=out)
    failed = sum(f.verdict is Verdict.FAIL for f in findings)
    warned = sum(f.verdict is Verdict.WARN for f in findings)
    if failed:
        print(f"{failed} problem(s) to fix", file=out)
    elif warned:
        print(f"nothing failed; {warned} warning(s) above", file=out)
    else:
        print("all good", file=out)
    return 1 if failed else 0
