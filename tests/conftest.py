"""Shared test set-up. Qt (later) runs offscreen; nothing here touches ../shared."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest_plugins = ["tests.secret_service"]
