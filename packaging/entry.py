"""The frozen bundle's entry point: the same `main` as the `nimbridge` command."""

import os
import sys

# A windowed executable (nimbridge-gui.exe on Windows, the macOS app started from
# Finder) has no console: sys.stdout and sys.stderr are None there, and code that
# writes to them (argparse, a log handler) must not fail for it.
if sys.stdout is None:
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (lives as long as the process)
if sys.stderr is None:
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115

from app.cli import main  # noqa: E402

raise SystemExit(main())
