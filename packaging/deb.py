"""Build NimBridge's .deb from the PyInstaller bundle (dist/nimbridge).

    python packaging/deb.py             # after packaging/build.py; build.py calls it too

The package installs:
- /opt/nimbridge/            the onedir bundle
- /usr/bin/nimbridge         a link to it
- /usr/share/applications/nimbridge.desktop, hicolor icons (16-256 px + SVG),
  AppStream metadata: NimBridge in the app menu and in software centres
- /usr/share/doc/nimbridge/copyright

Depends comes from dpkg-shlibdeps over every ELF file in the bundle, so it names
exactly the system libraries the bundle leaves to the system (bundle_contents.py).
No maintainer scripts: dpkg's triggers refresh the icon cache and the menu, and
`dpkg -r` removes every file the package brought. The user's settings, keychain
entries and autostart entry (which names its program in TryExec, so it goes quiet)
are theirs and stay.
"""

import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINUX = ROOT / "packaging" / "linux"
ICONS = ROOT / "resources" / "icons"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
PACKAGE = "nimbridge"
INSTALL_DIR = "opt/nimbridge"
MAINTAINER = "NimBridge developers <nimbridge@users.noreply.github.com>"
DESKTOP_ID = "nimbridge.desktop"
METAINFO = "com.nimbridge.NimBridge.metainfo.xml"
ELF_MAGIC = b"\x7fELF"


def debian_version(version: str) -> str:
    """A Python version as Debian orders it: 1.0.0rc1 -> 1.0.0~rc1, 1.0+local stays."""
    return re.sub(r"(\d)(a|b|rc|\.dev)(\d*)", r"\1~\2\3", version)


def control_text(*, version: str, arch: str, installed_kib: int, depends: str) -> str:
    description = (
        "Run Claude Code on NVIDIA NIM and OpenAI-compatible models\n"
        " NimBridge is a local translation server in the system tray. It speaks the\n"
        " Anthropic Messages API to Claude Code and other Anthropic clients, and\n"
        " OpenAI Chat Completions to NVIDIA's hosted catalog, OpenAI, DeepSeek,\n"
        " OpenRouter, Ollama, vLLM, LM Studio or Cloudflare Workers AI.\n"
        " .\n"
        " Provider keys are kept in the desktop keychain (Secret Service)."
    )
    fields = {
        "Package": PACKAGE,
        "Version": debian_version(version),
        "Architecture": arch,
        "Maintainer": MAINTAINER,
        "Installed-Size": str(installed_kib),
        "Depends": depends,
        # A Secret Service for the keys; a terminal for "Launch Claude Code".
        "Recommends": "gnome-keyring | kwalletmanager | keepassxc, x-terminal-emulator",
        "Section": "devel",
        "Priority": "optional",
        "Description": description,
    }
    return "".join(f"{name}: {value}\n" for name, value in fields.items() if value)


def is_elf(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(4) == ELF_MAGIC


def shlib_depends(staging: Path) -> str:
    """dpkg-shlibdeps over the bundle's ELF files; the bundle's own folders are private."""
    bundle = staging / INSTALL_DIR
    elf_files = sorted(str(p) for p in bundle.rglob("*") if is_elf(p))
    private_dirs = sorted({str(Path(p).parent) for p in elf_files})
    # dpkg-shlibdeps reads debian/control from its working directory.
    work = staging.parent / "shlibdeps"
    (work / "debian").mkdir(parents=True, exist_ok=True)
    (work / "debian" / "control").write_text(
        f"Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n", encoding="utf-8"
    )
    result = subprocess.run(
        [
            "dpkg-shlibdeps",
            "-O",
            "--ignore-missing-info",  # the bundle's own libraries come from no package
            "--warnings=0",
            *(f"-l{folder}" for folder in private_dirs),
            *elf_files,
        ],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in result.stdout.splitlines():
        if line.startswith("shlibs:Depends="):
            return line.removeprefix("shlibs:Depends=")
    return ""


def folder_kib(folder: Path) -> int:
    """Installed-Size as dpkg counts it: KiB, each file rounded up, 1 per directory."""
    total = 0
    for path in folder.rglob("*"):
        is_dir = path.is_dir() and not path.is_symlink()
        total += 1 if is_dir else (path.lstat().st_size + 1023) // 1024
    return total


def stage(bundle: Path, staging: Path, version: str) -> None:
    """Lay out the package's files under `staging`, as they will be installed."""
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(bundle, staging / INSTALL_DIR, symlinks=True)
    usr_bin = staging / "usr" / "bin"
    usr_bin.mkdir(parents=True)
    # Absolute, as Debian policy asks for links between top-level folders.
    (usr_bin / PACKAGE).symlink_to(f"/{INSTALL_DIR}/{PACKAGE}")
    share = staging / "usr" / "share"
    (share / "applications").mkdir(parents=True)
    shutil.copy2(LINUX / DESKTOP_ID, share / "applications" / DESKTOP_ID)
    for size in ICON_SIZES:
        folder = share / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        folder.mkdir(parents=True)
        shutil.copy2(ICONS / f"nimbridge-running-{size}.png", folder / f"{PACKAGE}.png")
    scalable = share / "icons" / "hicolor" / "scalable" / "apps"
    scalable.mkdir(parents=True)
    shutil.copy2(ICONS / "nimbridge.svg", scalable / f"{PACKAGE}.svg")
    (share / "metainfo").mkdir(parents=True)
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    metainfo = (LINUX / METAINFO).read_text(encoding="utf-8")
    (share / "metainfo" / METAINFO).write_text(
        metainfo.replace("@VERSION@", version).replace("@DATE@", today), encoding="utf-8"
    )
    doc = share / "doc" / PACKAGE
    doc.mkdir(parents=True)
    shutil.copy2(ROOT / "LICENSE", doc / "copyright")
    for path in [staging, *staging.rglob("*")]:  # dpkg wants no group/world-writable files
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~0o022)


def build_deb(bundle: Path, out_dir: Path, version: str) -> Path:
    """Stage, compute Depends, write DEBIAN/control and build the package; its path."""
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".deb-", dir=out_dir) as work:
        return _build_in(Path(work), bundle, out_dir, version, arch)


def _build_in(work: Path, bundle: Path, out_dir: Path, version: str, arch: str) -> Path:
    staging = work / "root"
    stage(bundle, staging, version)
    depends = shlib_depends(staging)
    debian = staging / "DEBIAN"
    debian.mkdir()
    (debian / "control").write_text(
        control_text(
            version=version, arch=arch, installed_kib=folder_kib(staging), depends=depends
        ),
        encoding="utf-8",
    )
    package = out_dir / f"{PACKAGE}_{debian_version(version)}_{arch}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(staging), str(package)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return package


def main() -> int:
    from importlib.metadata import version

    bundle = ROOT / "dist" / PACKAGE
    if not (bundle / PACKAGE).is_file():
        print(f"no bundle at {bundle}: run packaging/build.py first", file=sys.stderr)
        return 1
    package = build_deb(bundle, ROOT / "dist", version(PACKAGE))
    print(f"built {package} ({os.path.getsize(package) / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
