"""Running Claude Code against NimBridge: its environment, where it is installed, how it
is started. Standard library and app.config/app.core only, so the tray and the CLI
share it."""
