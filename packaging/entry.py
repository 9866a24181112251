"""The frozen bundle's entry point: the same `main` as the `nimbridge` command."""

from app.cli import main

raise SystemExit(main())
