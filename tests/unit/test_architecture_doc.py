"""docs/ARCHITECTURE.md stays true: every module or folder it names in backticks exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
NAMED = re.compile(r"`((?:[a-z_]+/)*[a-z_]+(?:\.py|/))`")


def named_paths(text: str) -> list[str]:
    return NAMED.findall(text)


def test_the_pattern_finds_paths() -> None:
    assert named_paths("see `messages/exchange.py` and `server_tools/`, not `x`") == [
        "messages/exchange.py",
        "server_tools/",
    ]


def test_every_module_the_architecture_names_exists() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    paths = named_paths(text)
    assert len(paths) > 30
    # Named from the repository, from app/, or within the folder the line is about.
    known = {
        path.relative_to(ROOT).as_posix() + ("/" if path.is_dir() else "")
        for path in [*APP.rglob("*"), *(ROOT / "tests").rglob("*")]
        if "__pycache__" not in path.parts
    }
    missing = [p for p in paths if not any(k == p or k.endswith("/" + p) for k in known)]
    assert missing == []
