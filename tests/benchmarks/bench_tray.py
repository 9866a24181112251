"""The tray app as a user starts it: time until its icon is in the tray, and idle memory.

    .venv/bin/python -m tests.benchmarks.bench_tray [--runs N] [--idle S] [--json PATH]

On a virtual desktop (Xvfb + trayer, as tests/ui/test_tray_xvfb.py), starts the tray app
`--runs` times from source (`python -m app`) and, when `dist/nimbridge/` holds a built
bundle, from the bundle too. Each run: the time from spawn until NimBridge's icon is
docked in the tray panel (polled every 20 ms through the X window tree), then the
process's resident memory (VmRSS) after `--idle` seconds with the server running and no
requests. Targets (issue 7): icon within 1.5 s, idle RSS <= 130 MB.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks.proc import rss_kb
from tests.ui.test_tray_xvfb import ROOT, _missing, _stop, docked_icon, virtual_desktop

ICON_TARGET_S = 1.5
RSS_TARGET_MB = 130.0


def _rss_mb(pid: int) -> float:
    return rss_kb(pid) / 1024


def one_run(command: list[str], display: str, idle_s: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as home:
        config = Path(home) / "settings.json"
        config.write_text(json.dumps({"port": 0}))
        env = {
            **os.environ,
            "DISPLAY": display,
            "QT_QPA_PLATFORM": "xcb",
            "XDG_CONFIG_HOME": f"{home}/config",
            "XDG_STATE_HOME": f"{home}/state",
            "NVIDIA_API_KEY": "nvapi-benchmark-key-000000",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }
        started = time.monotonic()
        app = subprocess.Popen(
            [*command, "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while docked_icon(env) is None:
                if app.poll() is not None:
                    raise RuntimeError(f"{command} exited with {app.returncode}")
                if time.monotonic() - started > 30:
                    raise RuntimeError("no tray icon after 30 s")
                time.sleep(0.02)
            icon_s = time.monotonic() - started
            time.sleep(idle_s)
            rss = _rss_mb(app.pid)
            app.send_signal(signal.SIGTERM)
            app.wait(20)
        finally:
            _stop(app)
        return icon_s, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds idle before RSS")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    missing = _missing()
    if missing:
        print(f"needs {', '.join(missing)}", file=sys.stderr)
        return 2
    commands = {"source (python -m app)": [sys.executable, "-m", "app"]}
    bundle = ROOT / "dist" / "nimbridge" / "nimbridge"
    if bundle.exists():
        commands["bundle (dist/nimbridge)"] = [str(bundle)]
    results: dict[str, dict[str, float]] = {}
    with virtual_desktop() as display:
        for name, command in commands.items():
            one_run(command, display, 0.5)  # warm the page cache, as a second launch is
            runs = [one_run(command, display, args.idle) for _ in range(args.runs)]
            icons, rss = [r[0] for r in runs], [r[1] for r in runs]
            results[name] = {
                "icon_median_s": statistics.median(icons),
                "icon_max_s": max(icons),
                "idle_rss_median_mb": statistics.median(rss),
                "idle_rss_max_mb": max(rss),
            }
    print(f"tray app, {args.runs} launches each, idle {args.idle:g} s before measuring RSS")
    print(f"{'':28} {'icon median':>12} {'icon max':>9} {'idle RSS median':>16} {'max':>7}")
    failed = False
    for name, r in results.items():
        print(
            f"{name:28} {r['icon_median_s']:>10.2f} s {r['icon_max_s']:>7.2f} s "
            f"{r['idle_rss_median_mb']:>13.0f} MB {r['idle_rss_max_mb']:>4.0f} MB"
        )
        failed |= r["icon_max_s"] > ICON_TARGET_S or r["idle_rss_max_mb"] > RSS_TARGET_MB
    print(
        f"targets: icon <= {ICON_TARGET_S} s, idle RSS <= {RSS_TARGET_MB:.0f} MB: "
        + ("MISSED" if failed else "met")
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
