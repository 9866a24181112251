"""Build NimBridge's bundle for this platform, then prove it works.

    python packaging/build.py            # dist/nimbridge/ (onedir), then `selftest` in it

PyInstaller runs from this repository's root with `packaging/nimbridge.spec`;
the output folder's size is printed. The installers (.deb, Inno Setup, .dmg)
are built from this folder.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"


def folder_size(folder: Path) -> int:
    """Bytes on disk, each file once (the bundle links some libraries twice)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    env = {**os.environ, "NIMBRIDGE_ROOT": str(ROOT)}
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
            str(ROOT / "build"),
            str(ROOT / "packaging" / "nimbridge.spec"),
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )
    bundle = DIST / "nimbridge"
    executable = bundle / ("nimbridge.exe" if sys.platform == "win32" else "nimbridge")
    print(f"built {bundle} ({folder_size(bundle) / 1e6:.0f} MB)")
    selftest = subprocess.run(
        [str(executable), "selftest"],
        env={**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")},
        check=False,
    )
    return selftest.returncode


if __name__ == "__main__":
    raise SystemExit(main())
