"""Sub-commands of the `nimbridge` CLI that do one job and exit."""
