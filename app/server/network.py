"""How NimBridge reaches the internet: which proxy a URL goes through, which certificate
authorities TLS trusts, and the words for a proxy's failures.

Invariants:
- Every outbound client (upstreams, listings, probes, web search, web fetch, image and
  document URLs, doctor) asks one `Network` per URL (`proxy_for`) and connects with its
  `ssl_context`.
- The proxy: Settings' `outbound_proxy` when set ("direct": none at all), else the
  standard library's `urllib.request.getproxies()` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY,
  upper or lower case; on macOS and Windows the system's proxy settings when no
  variable is set), with NO_PROXY by `urllib.request.proxy_bypass`. We decide per URL
  rather than hand aiohttp `trust_env=True` (which reads the same `getproxies`): that is
  all-or-nothing per session, would send a 127.0.0.1 upstream to the proxy unless
  NO_PROXY lists it, leaves no place for the Settings proxy, and reads ~/.netrc for
  credentials that belong in the keychain.
- Loopback hosts never go through a proxy.
- A proxy's credentials travel as a Proxy-Authorization header (`proxy_headers`),
  never in a URL that could be shown.
- TLS verifies against the OS trust store (`truststore`: Keychain on macOS, CryptoAPI on
  Windows, OpenSSL's default paths on Linux, which SSL_CERT_FILE / SSL_CERT_DIR move),
  plus `extra_ca_file`. Verification is never turned off; a CA file that cannot be read
  is an error at start, not a silent fallback.
"""

import base64
import ssl
import sys
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import aiohttp
import truststore
from yarl import URL

from app.config.secrets import ProviderKeys, SecretStoreUnavailable
from app.config.settings import DIRECT, Settings, is_loopback

SETTINGS_PLACE = "Settings → Server"
PROXY_SCHEMES = ("http", "https")
# Which variable `getproxies()` read a scheme's proxy from, for the words.
VARIABLE_BY_SCHEME = {"https": "HTTPS_PROXY", "http": "HTTP_PROXY", "all": "ALL_PROXY"}
TRUST_STORE_BY_PLATFORM = {
    "darwin": "the macOS Keychain",
    "win32": "the Windows certificate store",
}


# For NimBridge's own server (doctor, `code`): never through HTTP_PROXY, which
# urllib's default opener would send even a request to this computer through.
LOCAL_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NetworkSetupError(Exception):
    """The network settings cannot be used (a CA file that does not load); in words."""


def basic_login(user: str, password: str) -> str:
    """A Proxy-Authorization value (aiohttp's BasicAuth is deprecated in 3.14)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    proxy: URL  # without credentials: safe to show
    login: str | None  # the Proxy-Authorization value
    source: str  # "Settings → Server", "$HTTPS_PROXY"

    @property
    def shown(self) -> str:
        return str(self.proxy).rstrip("/")

    @property
    def headers(self) -> dict[str, str] | None:
        return {"Proxy-Authorization": self.login} if self.login else None


def route_options(
    route: ProxyRoute | None, url: str | URL, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """aiohttp's `proxy`, `proxy_headers` and `headers` for a request to `url` through
    `route`. aiohttp sends `proxy_headers` only with a CONNECT; a plain-http request
    carries the proxy's login among its own headers (the proxy strips it), and an https
    one never does (it would reach the server inside the tunnel)."""
    if route is None:
        return {"headers": headers}
    if route.login and URL(str(url)).scheme == "http":
        headers = {**(headers or {}), "Proxy-Authorization": route.login}
    return {"proxy": route.proxy, "proxy_headers": route.headers, "headers": headers}


def make_ssl_context(extra_ca_file: str = "") -> ssl.SSLContext:
    """The OS trust store, plus `extra_ca_file`'s certificates when named."""
    context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if extra_ca_file:
        try:
            context.load_verify_locations(cafile=extra_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise NetworkSetupError(
                f"the CA file {extra_ca_file} ({SETTINGS_PLACE}, extra_ca_file) cannot be "
                f"loaded ({getattr(exc, 'strerror', None) or exc}): it must be a PEM file of "
                "certificates; fix the path or clear the setting"
            ) from None
    return context


def _split_credentials(proxy: URL) -> tuple[URL, str | None]:
    if proxy.user is None:
        return proxy, None
    login = basic_login(unquote(proxy.raw_user or ""), unquote(proxy.raw_password or ""))
    return proxy.with_user(None), login


def _parse_proxy(value: str) -> URL:
    value = value.strip()
    return URL(value if "://" in value else f"http://{value}")  # curl's reading of host:port


class Network:
    """The proxy and trust decisions of one server or command run."""

    def __init__(
        self,
        *,
        proxy_setting: str = "",
        credentials: tuple[str, str] | None = None,
        extra_ca_file: str = "",
        proxies: Mapping[str, str] | None = None,
        bypass: Callable[[str], bool] | None = None,
    ) -> None:
        self.proxy_setting = proxy_setting
        self.extra_ca_file = extra_ca_file
        self.ssl_context = make_ssl_context(extra_ca_file)
        self.problems: list[str] = []  # proxies that are set but cannot be used
        self._bypass = bypass or urllib.request.proxy_bypass
        self._routes: dict[str, ProxyRoute] = {}  # URL scheme -> route
        if proxy_setting == DIRECT:
            return
        if proxy_setting:
            proxy = URL(proxy_setting)
            login = basic_login(*credentials) if credentials else None
            route = ProxyRoute(proxy, login, SETTINGS_PLACE)
            self._routes = {"http": route, "https": route}
            return
        found = urllib.request.getproxies() if proxies is None else proxies
        for scheme in ("http", "https"):
            for key in (scheme, "all"):
                if found.get(key):
                    self._add_env_route(scheme, key, found[key])
                    break

    def _add_env_route(self, scheme: str, key: str, value: str) -> None:
        variable = "$" + VARIABLE_BY_SCHEME[key]
        try:
            proxy, auth = _split_credentials(_parse_proxy(value))
        except ValueError:
            self.problems.append(f"{variable} is not a URL: not used")
            return
        if proxy.scheme not in PROXY_SCHEMES or not proxy.host:
            self.problems.append(
                f"{variable} names a {proxy.scheme} proxy, which NimBridge cannot use "
                "(http:// and https:// proxies only): not used, connections go direct"
            )
            return
        self._routes[scheme] = ProxyRoute(proxy, auth, variable)

    @classmethod
    def from_settings(cls, settings: Settings, keys: ProviderKeys | None = None) -> "Network":
        """Raises NetworkSetupError for a CA file that does not load."""
        credentials = None
        if settings.outbound_proxy not in ("", DIRECT) and keys is not None:
            try:
                credentials = keys.outbound_proxy_credentials()
            except SecretStoreUnavailable:
                credentials = None  # a 407 then says where to set them
        return cls(
            proxy_setting=settings.outbound_proxy,
            credentials=credentials,
            extra_ca_file=settings.extra_ca_file,
        )

    def proxy_for(self, url: str | URL) -> ProxyRoute | None:
        """The proxy a request to `url` goes through; None: straight to it."""
        target = URL(url) if isinstance(url, str) else url
        route = self._routes.get(target.scheme)
        host = target.host or ""
        if route is None or is_loopback(host) or self._bypass(host):
            return None
        return route

    def describe_proxy(self) -> str:
        """Which proxy is in use, in a line for doctor."""
        if self.proxy_setting == DIRECT:
            return f"none: {SETTINGS_PLACE} says direct (proxy variables ignored)"
        if not self._routes:
            return "none (no HTTPS_PROXY / HTTP_PROXY, no proxy in the settings)"
        parts = []
        for scheme, route in sorted(self._routes.items(), reverse=True):
            login = ", with a user name and password" if route.login else ""
            parts.append(f"{scheme}:// via {route.shown} (from {route.source}{login})")
        return "; ".join(parts) + "; loopback and NO_PROXY hosts go direct"

    def describe_trust(self) -> str:
        store = TRUST_STORE_BY_PLATFORM.get(sys.platform)
        if store is None:
            paths = ssl.get_default_verify_paths()
            store = "the system's CA certificates (" + (
                paths.cafile or paths.capath or "OpenSSL's default paths"
            )
            store += ")"
        extra = f", plus {self.extra_ca_file}" if self.extra_ca_file else ""
        return f"{store} via truststore {truststore.__version__}{extra}"

    def failure_words(self, exc: BaseException, url: str | URL) -> str | None:
        """One line a person can act on when `exc` is the proxy's doing; None otherwise."""
        target = URL(url) if isinstance(url, str) else url
        route = self.proxy_for(target)
        return proxy_failure_words(exc, route, target.host or str(target))


def proxy_login_words(route: ProxyRoute) -> str:
    """A 407 from the proxy: a CONNECT refused, or a plain-http request answered so."""
    proxy = f"the proxy {route.shown} (from {route.source})"
    if route.login is None:
        return (
            f"{proxy} asks for a user name and password (407 Proxy Authentication "
            f"Required): enter them in {SETTINGS_PLACE}, or `nimbridge key set outbound-proxy`"
        )
    return (
        f"{proxy} refused the user name and password it was given (407 Proxy "
        f"Authentication Required): check them in {SETTINGS_PLACE}"
    )


def proxy_failure_words(exc: BaseException, route: ProxyRoute | None, host: str) -> str | None:
    """One line for a failure through `route`; None when the proxy is not to blame."""
    if route is None:
        return None
    proxy = f"the proxy {route.shown} (from {route.source})"
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        if exc.status == 407:
            return proxy_login_words(route)
        return (
            f"{proxy} would not connect to {host} ({exc.status} {exc.message}): the proxy "
            "may block this host; ask whoever runs it, or list the host in NO_PROXY"
        )
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        cause = exc.os_error
        reason = (
            "connection refused"
            if isinstance(cause, ConnectionRefusedError)
            else (cause.strerror or str(cause))
        )
        return (
            f"cannot connect to {proxy} ({reason}): check the proxy's address and port, "
            "and that it is running"
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (
            f"the TLS certificate {host} presented through {proxy} is not trusted "
            f"({exc.certificate_error}): the proxy probably inspects TLS with a root of its "
            "own; install that root certificate in the system's trust store, or name it "
            f"as the CA file in {SETTINGS_PLACE}"
        )
    return None
