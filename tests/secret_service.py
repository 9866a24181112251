"""A real Secret Service (gnome-keyring on a private D-Bus session bus) for tests.

`secret_service_session` starts one private bus and one gnome-keyring-daemon per
test session, in a throwaway HOME/XDG tree, and stops exactly those processes:
every process it starts carries a unique marker variable, found again in
/proc/PID/environ (gnome-keyring-daemon prints no PID of its own).
`secret_service` points keyring and D-Bus at it for one test and empties the
keyring afterwards, so tests stay independent. `no_keychain` forces keyring's
fail backend. None of them touches the user's own bus or keyring.

Registered for all tests by `pytest_plugins = ["tests.secret_service"]` in tests/conftest.py.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path

import keyring
import keyring.backends.fail
import keyring.backends.SecretService
import pytest

INSTALL = "apt-get install -y gnome-keyring dbus-x11 libsecret-tools"
_MARKER = "NIMBRIDGE_TEST_SECRET_SERVICE"
# Any non-empty password: with an empty one the login collection is never created.
_PASSWORD = "throwaway-test-keyring"


@dataclass(frozen=True)
class SecretServiceInfo:
    """`env`: the variables a client needs (DBUS_SESSION_BUS_ADDRESS, GNOME_KEYRING_CONTROL)."""

    env: dict[str, str]
    pids: tuple[int, ...] = field(repr=False)


def _parse_assignments(text: str) -> dict[str, str]:
    # dbus-launch --sh-syntax: NAME='value';  gnome-keyring-daemon: NAME=value
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([A-Z_][A-Z0-9_]*)='?(.*?)'?;?", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def _marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries our marker: the ones this fixture started."""
    needle = marker.encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited already


def _stop(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            if _alive(pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + 2
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not any(_alive(pid) for pid in pids):
            return


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":  # CI must exercise the real backend
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def secret_service_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretServiceInfo]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the Secret Service test keychain runs on Linux only")
    missing = [tool for tool in ("dbus-launch", "gnome-keyring-daemon") if not shutil.which(tool)]
    if missing:
        _unavailable(f"{' and '.join(missing)} not found; install them: {INSTALL}")
    root = tmp_path_factory.mktemp("keychain")
    runtime = root / "run"
    runtime.mkdir(mode=0o700)
    token = uuid.uuid4().hex
    marker = f"{_MARKER}={token}"
    env = {
        key: val
        for key, val in os.environ.items()
        if key not in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS")
    }
    env.update(
        {
            "HOME": str(root / "home"),
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_CONFIG_HOME": str(root / "config"),
            "XDG_CACHE_HOME": str(root / "cache"),
            "XDG_RUNTIME_DIR": str(runtime),
            _MARKER: token,
        }
    )
    started: list[int] = []
    try:
        bus = subprocess.run(
            ["dbus-launch", "--sh-syntax"], env=env, capture_output=True, text=True, timeout=10
        )
        bus_vars = _parse_assignments(bus.stdout)
        if "DBUS_SESSION_BUS_PID" in bus_vars:
            started.append(int(bus_vars["DBUS_SESSION_BUS_PID"]))
        if bus.returncode != 0 or "DBUS_SESSION_BUS_ADDRESS" not in bus_vars:
            _unavailable(f"dbus-launch failed: {bus.stderr.strip() or bus.returncode}")
        client_env = {"DBUS_SESSION_BUS_ADDRESS": bus_vars["DBUS_SESSION_BUS_ADDRESS"]}
        env.update(client_env)
        daemon = subprocess.run(
            ["gnome-keyring-daemon", "--daemonize", "--unlock", "--components=secrets"],
            input=_PASSWORD,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        started.extend(pid for pid in _marked_pids(marker) if pid not in started)
        if daemon.returncode != 0:
            _unavailable(f"gnome-keyring-daemon failed: {daemon.stderr.strip()}")
        client_env.update(_parse_assignments(daemon.stdout))  # GNOME_KEYRING_CONTROL
        yield SecretServiceInfo(client_env, tuple(started))
    finally:
        # Daemons the bus activated meanwhile carry the marker too.
        started.extend(pid for pid in _marked_pids(marker) if pid not in started)
        _stop(started)


def _empty_keyring() -> None:
    import secretstorage  # keyring's Secret Service dependency; Linux only

    with closing(secretstorage.dbus_init()) as connection:
        for item in secretstorage.get_default_collection(connection).get_all_items():
            item.delete()


@pytest.fixture
def secret_service(
    secret_service_session: SecretServiceInfo, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SecretServiceInfo]:
    """keyring's active backend is the private Secret Service, empty, for this test."""
    previous = keyring.get_keyring()  # before the env changes: detection sees the real one
    for name, value in secret_service_session.env.items():
        monkeypatch.setenv(name, value)
    keyring.set_keyring(keyring.backends.SecretService.Keyring())  # type: ignore[no-untyped-call]
    try:
        yield secret_service_session
    finally:
        keyring.set_keyring(previous)
        _empty_keyring()  # the env still points at the private bus here


def _unlock_default_collection() -> None:
    """Unlock the login collection with its password and no prompt, through gnome-keyring's
    own D-Bus call for that (what its PAM module does at login)."""
    import secretstorage
    from secretstorage.util import DBusAddressWrapper, format_secret, open_session

    with closing(secretstorage.dbus_init()) as connection:
        collection = secretstorage.get_default_collection(connection)
        session = open_session(connection)
        keyring_daemon = DBusAddressWrapper(
            "/org/freedesktop/secrets",
            "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface",
            connection,
        )
        keyring_daemon.call(
            "UnlockWithMasterPassword",
            "o(oayays)",
            collection.collection_path,
            format_secret(session, _PASSWORD.encode(), "text/plain"),
        )


@pytest.fixture
def locked_keychain(secret_service: SecretServiceInfo) -> Iterator[SecretServiceInfo]:
    """The private Secret Service with its collection locked (as after a screen lock or
    a login without the keyring's password); unlocked again afterwards."""
    import secretstorage

    with closing(secretstorage.dbus_init()) as connection:
        secretstorage.get_default_collection(connection).lock()
    try:
        yield secret_service
    finally:
        _unlock_default_collection()
        with closing(secretstorage.dbus_init()) as connection:
            assert not secretstorage.get_default_collection(connection).is_locked()


@pytest.fixture
def no_keychain() -> Iterator[None]:
    """keyring finds no backend, as on a fresh headless machine."""
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        keyring.set_keyring(previous)
