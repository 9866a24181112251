"""`python -m app` is the same as the `nimbridge` command."""

from app.cli import main

raise SystemExit(main())
