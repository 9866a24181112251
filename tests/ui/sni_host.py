"""A StatusNotifierItem desktop for tests: a private session bus, a watcher + host, a reader.

What a KDE panel, Ubuntu's AppIndicator extension or waybar does, reduced to what
the tests look at: `serve_watcher` owns org.kde.StatusNotifierWatcher (and says a
host is there), keeps the items registered with it and drops an item when its
owner leaves the bus. `SniReader` reads an item's properties and its menu over
com.canonical.dbusmenu and clicks entries, as a host does when the user clicks.

Run the watcher as its own process (`python -m tests.ui.sni_host ADDRESS`), so a
test can start it late or stop it, as a panel that starts after login or crashes.
Only jeepney (keyring's D-Bus library) and the stdlib.
"""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jeepney import (  # type: ignore[import-untyped]  # untyped; tests only
    DBusAddress,
    DBusErrorResponse,
    HeaderFields,
    MatchRule,
    Message,
    MessageType,
    new_error,
    new_method_call,
    new_method_return,
    new_signal,
)
from jeepney.bus_messages import message_bus  # type: ignore[import-untyped]
from jeepney.io.blocking import (  # type: ignore[import-untyped]
    DBusConnection,
    Proxy,
    open_dbus_connection,
)

WATCHER = "org.kde.StatusNotifierWatcher"
WATCHER_PATH = "/StatusNotifierWatcher"
ITEM_INTERFACE = "org.kde.StatusNotifierItem"
MENU_INTERFACE = "com.canonical.dbusmenu"
PROPERTIES = "org.freedesktop.DBus.Properties"
DEFAULT_ITEM_PATH = "/StatusNotifierItem"
NAME_FLAG_DO_NOT_QUEUE = 4
NAME_PRIMARY_OWNER = 1
ROOT = Path(__file__).resolve().parents[2]

INTROSPECTION = f"""<node><interface name="{WATCHER}">
<method name="RegisterStatusNotifierItem"><arg type="s" direction="in"/></method>
<method name="RegisterStatusNotifierHost"><arg type="s" direction="in"/></method>
<property name="RegisteredStatusNotifierItems" type="as" access="read"/>
<property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
<property name="ProtocolVersion" type="i" access="read"/>
<signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
<signal name="StatusNotifierItemUnregistered"><arg type="s"/></signal>
<signal name="StatusNotifierHostRegistered"/>
</interface></node>"""


@contextlib.contextmanager
def private_session_bus() -> Iterator[str]:
    """A dbus-daemon of our own; yields its address (for DBUS_SESSION_BUS_ADDRESS).

    A developer's desktop has its own watcher on the usual session bus: an app
    started there would register with it instead of the test's host (issue 24, item 5).
    """
    with tempfile.TemporaryDirectory(prefix="nimbridge-bus-") as folder:
        daemon = subprocess.Popen(
            [
                "dbus-daemon",
                "--session",
                "--nofork",
                "--nopidfile",
                f"--address=unix:path={folder}/bus",
                "--print-address=1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert daemon.stdout is not None
            address = daemon.stdout.readline().strip()
            assert address.startswith("unix:"), f"dbus-daemon said {address!r}"
            yield address
        finally:
            stop_process(daemon)


def end_process(process: "subprocess.Popen[str] | subprocess.Popen[bytes]") -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def stop_process(process: "subprocess.Popen[str] | subprocess.Popen[bytes]") -> None:
    """End it and close the pipes we read it by."""
    end_process(process)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def start_watcher(address: str) -> "subprocess.Popen[str]":
    """The watcher + host in its own process; returns once it owns its name."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.ui.sni_host", address],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline().strip()
    assert ready == "ready", f"the watcher said {ready!r}"
    return process


@dataclass
class WatcherState:
    """The items registered: "service/path" -> the unique name that owns it."""

    owners: dict[str, str] = field(default_factory=dict)

    def register(self, argument: str, sender: str) -> str:
        # KDE's watcher takes a bus name (the item at /StatusNotifierItem) or a path.
        if argument.startswith("/"):
            service, path = sender, argument
        else:
            service, path = argument, DEFAULT_ITEM_PATH
        key = service + path
        self.owners[key] = sender
        return key

    def forget(self, name: str) -> list[str]:
        """The items that left with `name` (a unique or well-known name)."""
        gone = [key for key, owner in self.owners.items() if name in (owner, split_item(key)[0])]
        for key in gone:
            del self.owners[key]
        return gone

    def properties(self) -> dict[str, tuple[str, Any]]:
        return {
            "RegisteredStatusNotifierItems": ("as", list(self.owners)),
            "IsStatusNotifierHostRegistered": ("b", True),
            "ProtocolVersion": ("i", 0),
        }


def split_item(key: str) -> tuple[str, str]:
    """ "service/path" -> (service, "/path")."""
    slash = key.index("/")
    return key[:slash], key[slash:]


def serve_watcher(address: str) -> None:
    """Be the watcher and its host on the bus at `address` until killed."""
    conn = open_dbus_connection(address)
    bus = Proxy(message_bus, conn, timeout=5)
    for name in (WATCHER, f"org.kde.StatusNotifierHost-{os.getpid()}"):
        (result,) = bus.RequestName(name, NAME_FLAG_DO_NOT_QUEUE)
        if result != NAME_PRIMARY_OWNER:
            raise SystemExit(f"{name} is taken on this bus")
    bus.AddMatch(
        MatchRule(
            type="signal",
            sender="org.freedesktop.DBus",
            interface="org.freedesktop.DBus",
            member="NameOwnerChanged",
        )
    )
    emitter = DBusAddress(WATCHER_PATH, interface=WATCHER)
    state = WatcherState()
    print("ready", flush=True)
    while True:
        message = conn.receive()
        fields = message.header.fields
        member = fields.get(HeaderFields.member)
        if message.header.message_type is MessageType.signal:
            if member == "NameOwnerChanged" and message.body[2] == "":
                for key in state.forget(message.body[0]):
                    conn.send(new_signal(emitter, "StatusNotifierItemUnregistered", "s", (key,)))
            continue
        if message.header.message_type is not MessageType.method_call:
            continue
        if member == "RegisterStatusNotifierItem":
            key = state.register(message.body[0], fields[HeaderFields.sender])
            conn.send(new_method_return(message))
            conn.send(new_signal(emitter, "StatusNotifierItemRegistered", "s", (key,)))
        elif member == "RegisterStatusNotifierHost":
            conn.send(new_method_return(message))
        elif member == "Get" and fields.get(HeaderFields.interface) == PROPERTIES:
            found = state.properties().get(message.body[1])
            if found is None:
                conn.send(_unknown(message, "UnknownProperty"))
            else:
                conn.send(new_method_return(message, "v", (found,)))
        elif member == "GetAll":
            conn.send(new_method_return(message, "a{sv}", (state.properties(),)))
        elif member == "Introspect":
            conn.send(new_method_return(message, "s", (INTROSPECTION,)))
        elif member == "Ping":
            conn.send(new_method_return(message))
        else:
            conn.send(_unknown(message, "UnknownMethod"))


def _unknown(message: Message, what: str) -> Message:
    return new_error(message, f"org.freedesktop.DBus.Error.{what}", "s", (what,))


@dataclass(frozen=True, slots=True)
class MenuEntry:
    """One dbusmenu item: its id, its properties (variants unwrapped), its children."""

    id: int
    properties: dict[str, Any]
    children: tuple["MenuEntry", ...]

    @property
    def label(self) -> str:
        return str(self.properties.get("label", ""))

    @property
    def visible(self) -> bool:
        return bool(self.properties.get("visible", True))

    @property
    def enabled(self) -> bool:
        return bool(self.properties.get("enabled", True))

    @property
    def is_separator(self) -> bool:
        return self.properties.get("type") == "separator"

    def shown(self) -> list["MenuEntry"]:
        return [child for child in self.children if child.visible]

    def find(self, label: str) -> "MenuEntry":
        for child in self.children:
            if child.label == label:
                return child
            with contextlib.suppress(KeyError):
                return child.find(label)
        raise KeyError(label)

    def ids(self) -> dict[int, str]:
        """Every entry's id -> label, submenus included."""
        found = {self.id: self.label}
        for child in self.children:
            found |= child.ids()
        return found


def _entry(raw: tuple[int, dict[str, tuple[str, Any]], list[tuple[str, Any]]]) -> MenuEntry:
    item_id, properties, children = raw
    return MenuEntry(
        item_id,
        {name: value for name, (_sig, value) in properties.items()},
        tuple(_entry(child) for _sig, child in children),
    )


class SniReader:
    """What a host does with an item, one blocking D-Bus call at a time."""

    def __init__(self, address: str) -> None:
        self.conn: DBusConnection = open_dbus_connection(address)

    def close(self) -> None:
        self.conn.close()

    def call(
        self,
        service: str,
        path: str,
        interface: str,
        member: str,
        sig: str = "",
        body: tuple[Any, ...] = (),
    ) -> tuple[Any, ...]:
        message = new_method_call(DBusAddress(path, service, interface), member, sig, body)
        reply = self.conn.send_and_get_reply(message, timeout=5)
        if reply.header.message_type is MessageType.error:
            raise DBusErrorResponse(reply)
        return tuple(reply.body)

    def has_watcher(self) -> bool:
        (owned,) = self.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            "s",
            (WATCHER,),
        )
        return bool(owned)

    def items(self) -> list[str]:
        (variant,) = self.call(
            WATCHER,
            WATCHER_PATH,
            PROPERTIES,
            "Get",
            "ss",
            (WATCHER, "RegisteredStatusNotifierItems"),
        )
        return list(variant[1])

    def properties(self, item: str) -> dict[str, Any]:
        service, path = split_item(item)
        (found,) = self.call(service, path, PROPERTIES, "GetAll", "s", (ITEM_INTERFACE,))
        return {name: value for name, (_sig, value) in found.items()}

    def _menu(self, item: str) -> tuple[str, str]:
        return split_item(item)[0], str(self.properties(item)["Menu"])

    def layout(self, item: str) -> MenuEntry:
        service, path = self._menu(item)
        _revision, raw = self.call(service, path, MENU_INTERFACE, "GetLayout", "iias", (0, -1, []))
        return _entry(raw)

    def about_to_show(self, item: str, entry_id: int = 0) -> None:
        service, path = self._menu(item)
        self.call(service, path, MENU_INTERFACE, "AboutToShow", "i", (entry_id,))

    def click(self, item: str, entry_id: int) -> None:
        service, path = self._menu(item)
        self.call(
            service, path, MENU_INTERFACE, "Event", "isvu", (entry_id, "clicked", ("i", 0), 0)
        )


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    """Poll `predicate` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


if __name__ == "__main__":
    serve_watcher(sys.argv[1])
