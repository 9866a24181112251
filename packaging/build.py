"""Build NimBridge for this platform, prove the bundle works, and make its installer.

    python packaging/build.py                 # bundle + selftest + this OS's installer
    python packaging/build.py --bundle-only   # just dist/nimbridge/ (and the .app on macOS)

What lands in dist/:
- Linux:   nimbridge/ (onedir), nimbridge_<version>_<arch>.deb (dpkg-deb, dpkg-shlibdeps),
           nimbridge-<version>-linux-<machine>.tar.gz
- Windows: nimbridge/ (nimbridge.exe for the terminal, nimbridge-gui.exe for the tray),
           NimBridge-<version>-setup.exe (Inno Setup 6, per-user)
- macOS:   NimBridge.app (LSUIElement: menu bar only), NimBridge-<version>.dmg (hdiutil)

PyInstaller runs packaging/nimbridge.spec from the repository root; `selftest`
then runs inside the bundle (a translated request through the real server), and
the build fails if it does.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
BUILD = ROOT / "build"
ICONS = ROOT / "resources" / "icons"
INNO_SETUP = ROOT / "packaging" / "windows" / "nimbridge.iss"
# Where Inno Setup 6 installs itself (Windows upper-cases environment names).
ISCC_PLACES = tuple(
    Path(folder) / "Inno Setup 6" / "ISCC.exe"
    for folder in (
        os.environ.get("PROGRAMFILES(X86)", r"C:\Program Files (x86)"),
        os.environ.get("PROGRAMFILES", r"C:\Program Files"),
        os.path.join(os.environ.get("LOCALAPPDATA", "."), "Programs"),  # a per-user install
    )
)


def folder_size(folder: Path) -> int:
    """Bytes on disk, each file once (the bundle links some libraries twice)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def executable() -> Path:
    """The bundle's command-line executable."""
    if sys.platform == "darwin":
        return DIST / "NimBridge.app" / "Contents" / "MacOS" / "nimbridge"
    return DIST / "nimbridge" / ("nimbridge.exe" if sys.platform == "win32" else "nimbridge")


def render_icon_files() -> None:
    """The .ico (Windows) or .icns (macOS) the spec and the installer use, from our PNGs."""
    from PIL import Image  # type: ignore[import-not-found,unused-ignore]  # Windows and macOS builds only

    BUILD.mkdir(exist_ok=True)
    largest = Image.open(ICONS / "nimbridge-running-256.png")
    if sys.platform == "win32":
        sizes = [(s, s) for s in (16, 24, 32, 48, 64, 128, 256)]
        largest.save(BUILD / "nimbridge.ico", sizes=sizes)
    else:
        largest.save(BUILD / "nimbridge.icns")


def run_pyinstaller() -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--clean",
            "--log-level",
            "WARN",
            "--distpath",
            str(DIST),
            "--workpath",
            str(BUILD),
            str(ROOT / "packaging" / "nimbridge.spec"),
        ],
        cwd=ROOT,
        env={**os.environ, "NIMBRIDGE_ROOT": str(ROOT)},
        check=True,
    )


def selftest() -> int:
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    return subprocess.run([str(executable()), "selftest"], env=env, check=False).returncode


def linux_installers(release: str) -> list[Path]:
    sys.path.insert(0, str(ROOT / "packaging"))
    import deb

    if not (shutil.which("dpkg-deb") and shutil.which("dpkg-shlibdeps")):
        raise SystemExit("the .deb needs dpkg-deb and dpkg-shlibdeps: apt install dpkg-dev")
    tarball = DIST / f"nimbridge-{release}-linux-{platform.machine()}.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(DIST / "nimbridge", arcname=f"nimbridge-{release}")
    return [deb.build_deb(DIST / "nimbridge", DIST, release), tarball]


def windows_installer(release: str) -> list[Path]:
    iscc = shutil.which("iscc") or next((str(p) for p in ISCC_PLACES if p.is_file()), None)
    if iscc is None:
        raise SystemExit("the installer needs Inno Setup 6 (https://jrsoftware.org/isdl.php)")
    subprocess.run(
        [
            iscc,
            "/Qp",
            f"/DAppVersion={release}",
            f"/DSourceDir={DIST / 'nimbridge'}",
            f"/DOutputDir={DIST}",
            f"/DIconFile={BUILD / 'nimbridge.ico'}",
            f"/DLicenseFile={ROOT / 'LICENSE'}",
            str(INNO_SETUP),
        ],
        check=True,
    )
    return [DIST / f"NimBridge-{release}-setup.exe"]


def macos_installer(release: str) -> list[Path]:
    """A compressed disk image: the app beside a link to /Applications, to drag onto."""
    staging = BUILD / "dmg"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copytree(DIST / "NimBridge.app", staging / "NimBridge.app", symlinks=True)
    (staging / "Applications").symlink_to("/Applications")
    image = DIST / f"NimBridge-{release}.dmg"
    subprocess.run(
        [
            "hdiutil", "create", "-volname", "NimBridge", "-srcfolder", str(staging),
            "-fs", "HFS+", "-format", "UDZO", "-ov", str(image),
        ],
        check=True,
    )  # fmt: skip
    return [image]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build NimBridge's bundle and installer.")
    parser.add_argument("--bundle-only", action="store_true", help="skip the installer")
    args = parser.parse_args(argv)
    release = version("nimbridge")

    started = time.monotonic()
    if sys.platform in ("win32", "darwin"):
        render_icon_files()
    run_pyinstaller()
    print(f"built {DIST / 'nimbridge'} ({folder_size(DIST / 'nimbridge') / 1e6:.0f} MB)")
    if (failed := selftest()) != 0:
        print("selftest failed inside the bundle", file=sys.stderr)
        return failed
    if not args.bundle_only:
        if sys.platform == "win32":
            made = windows_installer(release)
        elif sys.platform == "darwin":
            made = macos_installer(release)
        else:
            made = linux_installers(release)
        for path in made:
            print(f"built {path} ({path.stat().st_size / 1e6:.0f} MB)")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
