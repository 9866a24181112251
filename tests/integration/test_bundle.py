"""The frozen Linux bundle and its .deb, as users get them (built by packaging/build.py).

`.ci/run` builds both before the tests; elsewhere these tests are skipped until
`python packaging/build.py` has run (in CI a missing bundle fails instead). The
bundle runs as a real program: --version, selftest, serve answering the official
anthropic SDK, the keychain, and the tray docked under Xvfb. The .deb is read with
dpkg-deb, unpacked into a temporary root and run from there, and, when the tests
may touch the machine (NIMBRIDGE_TEST_SYSTEM_INSTALL=1, as root), installed with
dpkg and removed again, leaving nothing behind.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import anthropic
import pytest

from app import __version__
from tests.fake_tls import TestCA
from tests.fake_upstream import FakeUpstream, LoopThread, http_request
from tests.integration.conftest import track
from tests.integration.test_cli import PROXY_KEY, UPSTREAM_SECRET, base_url_of, finish, spawn_serve
from tests.integration.test_commands import CANARY, keychain_env, run
from tests.integration.test_network import (
    UPSTREAM_NAME,
    doctor_lines_through_the_proxy,
    proxied_provider,
)
from tests.secret_service import SecretServiceInfo
from tests.ui.test_tray_xvfb import run_tray_session, x_display  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
BUNDLE = DIST / "nimbridge"
EXECUTABLE = BUNDLE / "nimbridge"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux bundle")


def _absent(what: str) -> None:
    message = f"{what} not built: run `python packaging/build.py` first"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def bundle() -> list[str]:
    if not EXECUTABLE.is_file():
        _absent("the bundle")
    return [str(EXECUTABLE)]


@pytest.fixture(scope="module")
def deb_file() -> Path:
    found = sorted(DIST.glob(f"nimbridge_{__version__}_*.deb"))  # this version's, not an old one
    if not found:
        _absent(f"the .deb of {__version__}")
    return found[0]


def headless() -> dict[str, str]:
    return {"QT_QPA_PLATFORM": "offscreen"}


# ------------------------------------------------------------------ the bundle


def test_version(bundle: list[str]) -> None:
    result = run("--version", env={}, program=bundle)
    assert result.stdout.strip() == f"nimbridge {__version__}"


def test_selftest(bundle: list[str]) -> None:
    result = run("selftest", env=headless(), program=bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "selftest passed"
    assert "xcb" in result.stdout  # the desktop's platform plugin survived the trim
    assert "(uvloop.Loop)" in result.stdout  # serve's event loop came along


def test_serve_translates_a_request(bundle: list[str], upstream: FakeUpstream) -> None:
    server = spawn_serve(upstream, program=bundle)
    try:
        url = base_url_of(server)
        sdk = track(anthropic.Anthropic(base_url=url, api_key=PROXY_KEY, max_retries=0))
        assert json.loads(http_request(url + "/health")[2])["status"] == "ok"
        message = sdk.messages.create(
            model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.content[0].type == "text" and message.content[0].text == "You said: hi"
        sent = upstream.chat_requests[-1]
        assert sent.body["model"] == "fake/model"
        assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_SECRET}"
        with sdk.messages.stream(
            model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            assert "".join(stream.text_stream) == "You said: hi"
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0
    finally:
        finish(server)


def test_keys_live_in_the_real_keychain(
    bundle: list[str], secret_service_session: SecretServiceInfo, tmp_path: Path
) -> None:
    # The frozen keyring finds the Secret Service backend (entry points + SecretStorage).
    env = keychain_env(secret_service_session)
    config = tmp_path / "settings.json"
    config.write_text("{}")  # a file named by --config must exist
    stored = run(
        "key",
        "set",
        "nvidia",
        "--config",
        str(config),
        env=env,
        stdin=CANARY + "\n",
        program=bundle,
    )
    assert stored.returncode == 0, stored.stderr
    assert "Secret Service" in stored.stdout and CANARY not in stored.stdout + stored.stderr
    status = run("key", "status", "--config", str(config), env=env, program=bundle)
    assert "Secret Service" in status.stdout
    assert (
        run("key", "delete", "nvidia", "--config", str(config), env=env, program=bundle).returncode
        == 0
    )


def test_tray_docks_under_xvfb(bundle: list[str], x_display: str, tmp_path: Path) -> None:  # noqa: F811
    run_tray_session(bundle, x_display, tmp_path)


# ------------------------------------------------------------------ the .deb


def dpkg_deb(*args: str) -> str:
    return subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, check=True).stdout


def test_deb_metadata(deb_file: Path) -> None:
    info = dpkg_deb("--field", str(deb_file))
    fields = dict(re.findall(r"^([\w-]+): (.*)$", info, re.MULTILINE))
    assert fields["Package"] == "nimbridge"
    assert fields["Version"] == __version__
    # dpkg-shlibdeps named the system libraries the bundle leaves to the system.
    for package in (
        "libc6",
        "libxcb-cursor0",
        "libxkbcommon-x11-0",
        "libfontconfig1",
        "libglib2.0-0",
    ):
        assert re.search(rf"(^|, ){re.escape(package)}( |,|$)", fields["Depends"]), package
    # Installed-Size (KiB) is the measured footprint: under the 120 MB target plus margin.
    assert int(fields["Installed-Size"]) * 1024 < 140e6


def test_deb_contents(deb_file: Path) -> None:
    listing = dpkg_deb("--contents", str(deb_file))
    paths = {line.split()[5].removeprefix(".") for line in listing.splitlines()}
    for path in (
        "/opt/nimbridge/nimbridge",
        "/usr/share/applications/nimbridge.desktop",
        "/usr/share/icons/hicolor/48x48/apps/nimbridge.png",
        "/usr/share/icons/hicolor/256x256/apps/nimbridge.png",
        "/usr/share/icons/hicolor/scalable/apps/nimbridge.svg",
        "/usr/share/metainfo/com.nimbridge.NimBridge.metainfo.xml",
    ):
        assert path in paths, path
    assert re.search(r" \./usr/bin/nimbridge -> /opt/nimbridge/nimbridge$", listing, re.MULTILINE)
    assert not any(path.startswith(("/home", "/root", "/etc")) for path in paths)


def test_unpacked_deb_runs_from_any_root(deb_file: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb_file), str(tmp_path)], check=True)
    desktop = (tmp_path / "usr/share/applications/nimbridge.desktop").read_text()
    assert "Exec=nimbridge" in desktop and "Icon=nimbridge" in desktop
    link = tmp_path / "usr/bin/nimbridge"
    program = tmp_path / str(link.readlink()).lstrip("/")  # the /usr/bin link, inside this root
    result = run("selftest", env=headless(), program=[str(program)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    os.environ.get("NIMBRIDGE_TEST_SYSTEM_INSTALL") != "1" or os.geteuid() != 0,
    reason="installs for real: set NIMBRIDGE_TEST_SYSTEM_INSTALL=1 and run as root (CI does)",
)
def test_dpkg_install_run_and_remove(deb_file: Path) -> None:
    if subprocess.run(["dpkg", "-s", "nimbridge"], capture_output=True).returncode == 0:
        pytest.skip("a nimbridge package is installed on this machine already")
    installed = subprocess.run(["dpkg", "-i", str(deb_file)], capture_output=True, text=True)
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        owned = subprocess.run(["dpkg", "-L", "nimbridge"], capture_output=True, text=True).stdout
        assert shutil.which("nimbridge") == "/usr/bin/nimbridge"
        result = run("selftest", env=headless(), program=["/usr/bin/nimbridge"])
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        removed = subprocess.run(["dpkg", "--purge", "nimbridge"], capture_output=True, text=True)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    # Nothing the package brought is left behind (shared folders like /usr/share stay).
    leftovers = [
        path
        for path in owned.splitlines()
        if path.startswith(("/opt/nimbridge", "/usr/bin/nimbridge"))
        or "nimbridge" in Path(path).name
    ]
    assert [path for path in leftovers if os.path.lexists(path)] == []


# ------------------------------------------------------------------ the OS trust store

SYSTEM_CA = Path("/usr/local/share/ca-certificates/nimbridge-test-root.crt")


@pytest.mark.skipif(
    os.environ.get("NIMBRIDGE_TEST_SYSTEM_INSTALL") != "1"
    or os.geteuid() != 0
    or shutil.which("update-ca-certificates") is None,
    reason="changes the system's CA store: set NIMBRIDGE_TEST_SYSTEM_INSTALL=1 and run as "
    "root with update-ca-certificates (CI does)",
)
def test_the_bundle_trusts_the_system_store_through_a_proxy(
    bundle: list[str], loop_thread: LoopThread, tmp_path: Path
) -> None:
    # A CA made here, in no certifi anywhere: only the system store can vouch for it.
    ca = TestCA()
    clean = {"SSL_CERT_FILE": "", "SSL_CERT_DIR": "", "NO_PROXY": "", "no_proxy": ""}
    with proxied_provider(loop_thread, ca, tmp_path) as provider:
        _, before = doctor_lines_through_the_proxy(provider, clean, program=bundle)
        assert "is not trusted" in before  # not in the store yet: refused, and said so
        assert not SYSTEM_CA.exists()
        SYSTEM_CA.write_bytes(ca.pem)
        try:
            subprocess.run(["update-ca-certificates"], check=True, capture_output=True)
            proxy_line, after = doctor_lines_through_the_proxy(provider, clean, program=bundle)
        finally:
            SYSTEM_CA.unlink()
            subprocess.run(["update-ca-certificates", "--fresh"], check=True, capture_output=True)
        assert proxy_line.startswith(f"[  ok] proxy: https:// via {provider.proxy.url}")
        assert after.startswith("[  ok] provider nvidia: https://upstream.nimbridge.test"), after
        connect = f"CONNECT {UPSTREAM_NAME}:{provider.upstream.port} HTTP/1.1"
        assert provider.proxy.seen.count(connect) >= 2
