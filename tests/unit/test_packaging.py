"""The bundle's recipe covers what the app loads at run time; the installers' files agree.

No PyInstaller run here: these check packaging/bundle_contents.py (the data the
spec applies), the .deb layout built from a stand-in bundle, the Inno Setup
script and the GitHub Actions workflow. tests/packaging/ checks the real bundle.
"""

import ast
import importlib.util
import plistlib
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from app import autostart
from app.service import Health
from app.ui.tray import ICON_SIZES

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
APP = ROOT / "app"


def load(name: str) -> ModuleType:
    """A module of packaging/ (not a package: `packaging` is also a PyPI name)."""
    spec = importlib.util.spec_from_file_location(
        f"nimbridge_packaging_{name}", PACKAGING / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


contents = load("bundle_contents")
deb = load("deb")


def app_imports() -> list[tuple[Path, str, bool]]:
    """(file, module, inside a function) for every import in app/."""
    found = []
    for path in sorted(APP.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nested = {
            id(node)
            for func in ast.walk(tree)
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
            for node in ast.walk(func)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, alias.name, id(node) in nested) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module, id(node) in nested))
    return found


# ------------------------------------------------------------------ hidden imports


def test_modules_the_cli_imports_lazily_are_hidden_imports() -> None:
    # cli.py imports each command's module only when that command runs.
    lazy = {
        module for path, module, inside in app_imports() if inside and module.startswith("app.")
    }
    assert lazy, "the scan found no lazy imports: it is broken"
    missing = sorted(
        m for m in lazy if not any(m == h or m.startswith(h + ".") for h in contents.HIDDEN_IMPORTS)
    )
    # A lazily imported app module is fine when an eagerly imported one pulls it in anyway;
    # the hidden list must name the ones only a function reaches.
    eager = {module for _, module, inside in app_imports() if not inside}
    assert [m for m in missing if m not in eager] == []


def test_importlib_loads_are_hidden_imports_or_platform_stdlib() -> None:
    for path in APP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "import_module"
            ):
                assert node.args and isinstance(node.args[0], ast.Constant), path
                name = node.args[0].value
                assert name in contents.HIDDEN_IMPORTS or name in sys.stdlib_module_names, (
                    f"{path.name} loads {name!r} by name: add it to HIDDEN_IMPORTS"
                )


def test_keyring_backends_come_along_with_their_entry_points() -> None:
    # keyring finds backends through entry points: the metadata and the modules.
    assert "keyring" in contents.METADATA
    assert "keyring.backends" in contents.HIDDEN_IMPORTS
    for point in entry_points(group="keyring.backends"):
        if point.module.startswith("keyring."):
            assert point.module.startswith("keyring.backends"), point


def test_the_os_trust_store_comes_along() -> None:
    # Every outbound TLS context is truststore's (app.server.network): a bundle without
    # it would not start; imported at the top, where PyInstaller's analysis sees it.
    importers = {path.name for path, module, inside in app_imports() if module == "truststore"}
    assert importers == {"network.py"}
    assert not any(inside for _, module, inside in app_imports() if module == "truststore")
    assert "truststore" in contents.HIDDEN_IMPORTS


def test_serves_event_loop_comes_along() -> None:
    # Imported inside a function (absent on Windows), so analysis alone would miss it; the
    # bundle's selftest prints the loop it served on (tests/integration/test_bundle.py).
    importers = {
        (path.name, inside) for path, module, inside in app_imports() if module == "uvloop"
    }
    assert importers == {("event_loop.py", True)}
    assert "uvloop" in contents.HIDDEN_IMPORTS
    assert "uvloop" not in contents.EXCLUDED_MODULES


def test_our_version_comes_from_metadata_that_is_bundled() -> None:
    source = (APP / "__init__.py").read_text(encoding="utf-8")
    assert 'version("nimbridge")' in source
    assert "nimbridge" in contents.METADATA


def test_excluded_modules_are_never_imported_by_the_app() -> None:
    excluded = set(contents.EXCLUDED_MODULES)
    for path, module, _ in app_imports():
        parts = module.split(".")
        prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
        assert not prefixes & excluded, (
            f"{path.relative_to(ROOT)} imports {module}, which the bundle leaves out"
        )


# ------------------------------------------------------------------ data files


def test_every_icon_the_tray_asks_for_is_in_a_bundled_folder() -> None:
    assert "icons" in contents.RESOURCE_FOLDERS
    for health in Health:
        for size in ICON_SIZES:
            assert (ROOT / "resources" / "icons" / f"nimbridge-{health.value}-{size}.png").is_file()


# ------------------------------------------------------------------ Qt trims


@pytest.mark.parametrize(
    ("dest", "kept"),
    [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", True),
        ("PySide6/Qt/plugins/platforms/libqwayland.so", True),
        ("PySide6/Qt/plugins/platforms/libqwayland-egl.so", True),
        ("PySide6/Qt/plugins/platforms/libqoffscreen.so", True),
        ("PySide6/Qt/plugins/platforms/libqminimal.so", True),
        ("PySide6\\plugins\\platforms\\qwindows.dll", True),
        ("PySide6/Qt/plugins/platforms/libqcocoa.dylib", True),
        ("PySide6/Qt/plugins/platforms/libqeglfs.so", False),
        ("PySide6/Qt/plugins/platforms/libqlinuxfb.so", False),
        ("PySide6/Qt/plugins/platforms/libqvnc.so", False),
        ("PySide6/Qt/plugins/platforms/libqvkkhrdisplay.so", False),
        ("PySide6/Qt/plugins/imageformats/libqsvg.so", True),
        ("PySide6/Qt/plugins/imageformats/libqico.so", True),
        ("PySide6/Qt/plugins/imageformats/libqjpeg.so", False),
        ("PySide6/Qt/plugins/imageformats/libqtiff.so", False),
        ("PySide6/Qt/plugins/tls/libqopensslbackend.so", False),
        ("PySide6/Qt/plugins/generic/libqevdevmouseplugin.so", False),
        ("PySide6/Qt/plugins/platformthemes/libqxdgdesktopportal.so", True),
        ("PySide6/Qt/plugins/platforminputcontexts/libibusplatforminputcontextplugin.so", True),
        ("PySide6/Qt/plugins/xcbglintegrations/libqxcb-glx-integration.so", True),
        ("PySide6/Qt/lib/libQt6Core.so.6", True),
        ("PySide6/QtWidgets.abi3.so", True),
    ],
)
def test_qt_plugin_trim(dest: str, kept: bool) -> None:
    assert contents.keeps_qt_plugin(dest) is kept


def test_the_installed_qt_keeps_this_desktops_platform_plugin() -> None:
    from app.commands.selftest import DESKTOP_PLUGIN
    from app.ui.diagnostics import qt_platform_plugins

    needed = DESKTOP_PLUGIN.get(sys.platform, "xcb")
    assert needed in qt_platform_plugins()
    dest = {"win32": f"q{needed}.dll", "darwin": f"libq{needed}.dylib"}.get(
        sys.platform, f"libq{needed}.so"
    )
    assert contents.keeps_qt_plugin(f"PySide6/Qt/plugins/platforms/{dest}")
    assert contents.keeps_qt_plugin("PySide6/Qt/plugins/platforms/libqoffscreen.so")  # selftest


@pytest.mark.parametrize(
    ("dest", "translation"),
    [
        ("PySide6/Qt/translations/qtbase_de.qm", True),
        ("PySide6\\translations\\qtbase_fr.qm", True),
        ("resources/icons/nimbridge.png", False),
        ("PySide6/Qt/lib/libQt6Core.so.6", False),
    ],
)
def test_qt_translations_are_left_out(dest: str, translation: bool) -> None:
    assert contents.is_qt_translation(dest) is translation


@pytest.mark.parametrize(
    ("dest", "system"),
    [
        ("libX11.so.6", True),
        ("libxcb-cursor.so.0", True),
        ("libglib-2.0.so.0", True),
        ("libstdc++.so.6", True),
        ("libcap.so.2", True),
        ("libmd.so.0", True),
        # Python's own libraries stay: distributions ship other versions of them.
        ("libpython3.12.so.1.0", False),
        ("libssl.so.3", False),
        ("libcrypto.so.3", False),
        ("libffi.so.8", False),
        ("libz.so.1", False),
        ("libmpdec.so.3", False),
        # Only top-level copies: Qt's own libraries are never the system's.
        ("PySide6/Qt/lib/libQt6Gui.so.6", False),
        ("PySide6/Qt/lib/libicudata.so.73", False),
    ],
)
def test_system_library_policy(dest: str, system: bool) -> None:
    assert contents.is_system_library(dest) is system


def test_macos_app_is_a_menu_bar_app() -> None:
    info = contents.macos_info_plist("1.2.3")
    assert info["LSUIElement"] is True  # no Dock icon: it lives in the menu bar
    assert info["CFBundleShortVersionString"] == "1.2.3"
    assert info["CFBundleIdentifier"] == autostart.LAUNCH_AGENT_LABEL
    plistlib.loads(plistlib.dumps(info))  # a valid property list


def test_spec_is_python_and_uses_the_shared_contents() -> None:
    spec = (PACKAGING / "nimbridge.spec").read_text(encoding="utf-8")
    compile(spec, "nimbridge.spec", "exec")
    for name in (
        "HIDDEN_IMPORTS",
        "EXCLUDED_MODULES",
        "METADATA",
        "RESOURCE_FOLDERS",
        "keeps_qt_plugin",
        "is_qt_translation",
        "is_system_library",
        "macos_info_plist",
        "WINDOWS_GUI_EXE",
    ):
        assert f"contents.{name}" in spec, name


# ------------------------------------------------------------------ .deb


@pytest.mark.parametrize(
    ("python", "debian"),
    [
        ("0.4.0", "0.4.0"),
        ("1.0.0rc1", "1.0.0~rc1"),
        ("1.0.0a2", "1.0.0~a2"),
        ("1.1.dev3", "1.1~.dev3"),
    ],
)
def test_debian_version_sorts_prereleases_first(python: str, debian: str) -> None:
    assert deb.debian_version(python) == debian


def test_control_file_fields() -> None:
    text = deb.control_text(
        version="0.4.0", arch="amd64", installed_kib=1234, depends="libc6 (>= 2.35)"
    )
    fields = dict(line.split(": ", 1) for line in text.splitlines() if not line.startswith(" "))
    assert fields["Package"] == "nimbridge"
    assert fields["Version"] == "0.4.0"
    assert fields["Architecture"] == "amd64"
    assert fields["Installed-Size"] == "1234"
    assert fields["Depends"] == "libc6 (>= 2.35)"
    assert "x-terminal-emulator" in fields["Recommends"]
    assert text.endswith("\n")
    # Description: a synopsis, then indented lines; an empty line is " .".
    assert all(line.startswith(" ") for line in text.split("Description: ", 1)[1].splitlines()[1:])


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "_internal").mkdir(parents=True)
    (bundle / "nimbridge").write_text("#!/bin/sh\n")
    (bundle / "nimbridge").chmod(0o775)
    root = tmp_path / "root"
    deb.stage(bundle, root, "0.4.0")
    return root


def test_deb_layout(staged: Path) -> None:
    assert (staged / "opt/nimbridge/nimbridge").is_file()
    link = staged / "usr/bin/nimbridge"
    assert link.is_symlink() and str(link.readlink()) == "/opt/nimbridge/nimbridge"
    desktop = (staged / "usr/share/applications/nimbridge.desktop").read_text()
    assert "Exec=nimbridge --show\n" in desktop and "Icon=nimbridge\n" in desktop
    for size in deb.ICON_SIZES:
        assert (staged / f"usr/share/icons/hicolor/{size}x{size}/apps/nimbridge.png").is_file()
    assert (staged / "usr/share/icons/hicolor/scalable/apps/nimbridge.svg").is_file()
    metainfo = (staged / "usr/share/metainfo" / deb.METAINFO).read_text()
    assert 'version="0.4.0"' in metainfo and "@" not in metainfo
    assert (staged / "usr/share/doc/nimbridge/copyright").read_text().startswith("MIT")
    # Nothing group- or world-writable (dpkg and lintian refuse those).
    assert not [p for p in staged.rglob("*") if not p.is_symlink() and p.stat().st_mode & 0o022]


def test_the_desktop_entry_the_package_installs_matches_the_app() -> None:
    desktop = (PACKAGING / "linux" / deb.DESKTOP_ID).read_text()
    # Wayland matches windows to their menu entry by this name.
    qt_main = (APP / "ui" / "qt_main.py").read_text()
    assert f'setDesktopFileName("{Path(deb.DESKTOP_ID).stem}")' in qt_main
    assert "StartupWMClass=NimBridge" in desktop  # X11: the class is the application name
    assert 'setApplicationName("NimBridge")' in qt_main
    # The menu entry opens the home window (autostart's plain `nimbridge` only the icon).
    from app.cli import parse_command_line

    exec_line = next(line for line in desktop.splitlines() if line.startswith("Exec="))
    args = parse_command_line(exec_line.removeprefix("Exec=").split()[1:])
    assert args.command == "gui" and args.show is True


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs {name}")
    return path


def test_desktop_entry_validates(staged: Path) -> None:
    result = subprocess.run(
        [_tool("desktop-file-validate"), str(staged / "usr/share/applications/nimbridge.desktop")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout


def test_appstream_metadata_validates(staged: Path) -> None:
    result = subprocess.run(
        [
            _tool("appstreamcli"),
            "validate",
            "--no-net",
            str(staged / "usr/share/metainfo" / deb.METAINFO),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ Windows, CI


def test_inno_setup_script_agrees_with_the_app() -> None:
    iss = (PACKAGING / "windows" / "nimbridge.iss").read_text(encoding="utf-8")
    assert "PrivilegesRequired=lowest" in iss  # per-user: no administrator rights
    assert f'#define GuiExe "{contents.WINDOWS_GUI_EXE}.exe"' in iss
    # The installer's start-at-login and the Settings dialog's switch are one value.
    assert f'#define RunValueName "{autostart.WINDOWS_VALUE_NAME}"' in iss
    assert f'#define RunKey "{autostart.WINDOWS_RUN_KEY}"' in iss
    assert 'Name: "{autoprograms}\\{#AppName}"' in iss  # the Start menu entry
    assert 'Name: "startatlogin"' in iss
    # Every define build.py passes is one the script reads.
    build = (PACKAGING / "build.py").read_text(encoding="utf-8")
    for define in ("AppVersion", "SourceDir", "OutputDir", "IconFile", "LicenseFile"):
        assert f"/D{define}=" in build and "{#" + define + "}" in iss, define


def test_installers_workflow_builds_and_selftests_on_each_os() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "installers.yml").read_text())
    job = workflow["jobs"]["build"]
    systems = [entry["os"] for entry in job["strategy"]["matrix"]["include"]]
    assert [s.split("-")[0] for s in systems] == ["ubuntu", "windows", "macos"]
    scripts = "\n".join(step.get("run", "") for step in job["steps"])
    assert "python packaging/build.py" in scripts  # which runs selftest in the bundle
    assert scripts.count("selftest") >= 3  # and the installed program's, on each OS
    python = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert float(python["with"]["python-version"]) >= 3.12
