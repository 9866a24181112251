"""`python -m app` is the same as the `nimbridge` command."""

import sys

if sys.argv[1:] == ["statusline"]:  # Claude Code runs it after every turn: no argparse, no app.cli
    from app.commands.statusline import main as statusline

    raise SystemExit(statusline())

from app.cli import main  # noqa: E402 (after the fast path on purpose)

raise SystemExit(main())
