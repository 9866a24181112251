"""What Qt brings along, for `nimbridge selftest` (a frozen bundle can lose plugins)."""

from pathlib import Path

from PySide6.QtCore import QLibraryInfo


def qt_platform_plugins() -> list[str]:
    """The platform plugins Qt can load (xcb, wayland, offscreen, cocoa, windows...)."""
    folder = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    names = []
    for plugin in sorted(folder.glob("*")):
        stem = plugin.name.split(".")[0]
        names.append(stem.removeprefix("libq").removeprefix("q"))
    return names
