"""What goes into NimBridge's PyInstaller bundle, as data the spec and the tests share.

The spec (`nimbridge.spec`) applies these rules to PyInstaller's analysis; the
unit tests (`tests/unit/test_packaging.py`) check them against what the app
loads at run time. Standard library only: PyInstaller imports this file.
"""

from pathlib import PurePosixPath

APP_NAME = "NimBridge"
BUNDLE_ID = "com.nimbridge.app"  # the macOS LaunchAgent label uses the same reverse-DNS name

# Loaded by name at run time, so PyInstaller's import analysis cannot see them.
# keyring picks its backend through entry points (hence its metadata too); the
# CLI imports each command's module only when that command runs.
HIDDEN_IMPORTS = (
    "keyring.backends",  # expanded to every backend module by the spec
    "qasync",
    "aiohttp",
    "platformdirs",
    # The OS trust store (app.server.network). Imported eagerly, so analysis finds it;
    # named here as well because without it every HTTPS request of the bundle fails.
    "truststore",
    # `serve`'s event loop (app.server.event_loop), imported inside a function; its
    # PyInstaller hook adds the Cython modules' own imports. Not installed on Windows.
    "uvloop",
    # Imported with the first fetched page or PDF (~12 MB a server never sent one need not
    # hold): named so the bundle has them whatever analysis makes of a function's imports.
    "app.server.server_tools.page_markdown",
    "pypdf",
    "app.commands.code",
    "app.commands.codex",
    "app.commands.doctor",
    "app.commands.keys",
    "app.commands.models",
    "app.commands.selftest",
    "app.commands.usage",
    "app.ui.qt_main",
    "app.ui.diagnostics",
    "app.service",
)

# Distributions whose metadata the app reads: our version, keyring's entry points.
METADATA = ("nimbridge", "keyring")

# Folders of resources/ the app opens by path (app.ui.tray.resources_dir).
RESOURCE_FOLDERS = ("icons",)

# Stacks the app never imports; Qt modules we do not use (DESKTOP.md: 224 -> 165 MB).
EXCLUDED_MODULES = (
    "tkinter",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6.QtQml",
    "PySide6.QtQuick",
    "PySide6.QtOpenGL",
    "PySide6.QtPdf",
    "PySide6.QtDesigner",
    "PySide6.QtTest",
    "PySide6.QtSql",
    "PySide6.QtXml",
    "PySide6.QtHelp",
    "PySide6.QtConcurrent",
    "PySide6.QtPrintSupport",
    "PySide6.QtDBus",  # Qt uses D-Bus itself (libQt6DBus); Python never calls it
    "readline",  # brings libreadline and libtinfo; no interactive prompt here
    "curses",
    "pytest",
    "hypothesis",
    "anthropic",
    "openai",
    "mypy",
    "ruff",
    "pydantic",
    "pydantic_core",
)

# Qt plugins, by folder: the ones we keep (a folder not named here is kept whole).
# Platforms: a desktop session (X11, Wayland, Windows, macOS) plus the headless
# ones `selftest` and servers use; not framebuffer, EGLFS, VNC or Vulkan displays.
# Image formats: PNG is built into QtGui; SVG for themed icons, ICO/ICNS for ours.
QT_PLUGINS_KEPT: dict[str, frozenset[str]] = {
    "platforms": frozenset({"xcb", "wayland", "offscreen", "minimal", "windows", "cocoa"}),
    "imageformats": frozenset({"svg", "ico", "icns"}),
}
# Folders we drop whole: EGLFS input and devices, network reachability, TLS
# backends (the server's TLS is Python's, Qt only opens a local socket).
QT_PLUGIN_FOLDERS_DROPPED = frozenset(
    {"egldeviceintegrations", "generic", "networkinformation", "tls"}
)

# Libraries the bundle takes from the system on Linux instead of carrying copies:
# the desktop stack the PySide6 wheel already loads from the system (X11/xcb,
# Wayland, GL, fontconfig, GLib, D-Bus) and what those pull in. Copies of them
# are ~20 MB and can clash with the system's own (Mesa drivers need the system's
# libstdc++). The .deb declares them (dpkg-shlibdeps); Python's own libraries
# (libpython, OpenSSL, libffi, ...) stay in the bundle, since distributions ship
# other versions of them.
SYSTEM_LIBRARY_PREFIXES = (
    "libX",
    "libxcb",
    "libxkbcommon",
    "libwayland",
    "libEGL",
    "libGL",
    "libOpenGL",
    "libdrm",
    "libgbm",
    "libglib-2.0",
    "libgio-2.0",
    "libgobject-2.0",
    "libgmodule-2.0",
    "libgthread-2.0",
    "libfontconfig",
    "libfreetype",
    "libharfbuzz",
    "libgraphite2",
    "libpng16",
    "libbrotli",
    "libexpat",
    "libdbus-1",
    "libsystemd",
    "libgcrypt",
    "libgpg-error",
    "liblz4",
    "libzstd",
    "libcap.",
    "libselinux",
    "libmount",
    "libblkid",
    "libpcre2",
    "libkrb5",
    "libk5crypto",
    "libgssapi_krb5",
    "libcom_err",
    "libkeyutils",
    "libstdc++",
    "libgcc_s",
    "libatspi",
    "libthai",
    "libdatrie",
    "libfribidi",
    "libbsd",
    "libmd.",
    "libjpeg",
)


# The Windows tray executable (no console window); the Inno Setup script starts it.
WINDOWS_GUI_EXE = "nimbridge-gui"


def macos_info_plist(version: str) -> dict[str, object]:
    """Info.plist keys of NimBridge.app (PyInstaller adds the executable and icon)."""
    return {
        "CFBundleName": APP_NAME,
        "CFBundleDisplayName": APP_NAME,
        "CFBundleIdentifier": BUNDLE_ID,
        "CFBundleShortVersionString": version,
        "CFBundleVersion": version,
        "LSUIElement": True,  # a menu-bar app: no Dock icon, no app menu
        "LSMinimumSystemVersion": "11.0",
        "NSHighResolutionCapable": True,
        "NSHumanReadableCopyright": "MIT License",
    }


def keeps_qt_plugin(dest: str) -> bool:
    """Whether a bundled file (its path inside the bundle) survives the Qt plugin trim."""
    parts = PurePosixPath(dest.replace("\\", "/")).parts
    if "plugins" not in parts:
        return True
    after = parts[parts.index("plugins") + 1 :]
    if len(after) < 2:  # the plugins folder itself
        return True
    folder, filename = after[0], after[-1]
    if folder in QT_PLUGIN_FOLDERS_DROPPED:
        return False
    kept = QT_PLUGINS_KEPT.get(folder)
    if kept is None:
        return True
    name = _plugin_name(filename)
    return name in kept or name.split("-", 1)[0] in kept  # libqwayland-egl.so -> wayland


def _plugin_name(filename: str) -> str:
    """libqxcb.so -> xcb; qwindows.dll -> windows; libqcocoa.dylib -> cocoa."""
    return filename.split(".", 1)[0].removeprefix("lib").removeprefix("q")


def is_qt_translation(dest: str) -> bool:
    """Qt's own .qm translations: our UI is English, so Qt's buttons should be too."""
    path = PurePosixPath(dest.replace("\\", "/"))
    return path.suffix == ".qm" and "translations" in path.parts


def is_system_library(dest: str) -> bool:
    """A top-level shared library the Linux bundle leaves to the system."""
    path = PurePosixPath(dest.replace("\\", "/"))
    if len(path.parts) != 1:  # only libraries PyInstaller copied from the system
        return False
    return ".so" in path.name and path.name.startswith(SYSTEM_LIBRARY_PREFIXES)
