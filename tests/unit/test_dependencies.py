"""pyproject.toml's lower bounds and constraints.txt's exact versions agree."""

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + [
        entry for extra in project["optional-dependencies"].values() for entry in extra
    ]
    return [Requirement(entry) for entry in listed]


@pytest.mark.parametrize("requirement", _requirements(), ids=str)
def test_every_dependency_is_pinned_within_its_bounds(requirement: Requirement) -> None:
    if requirement.marker is not None and not requirement.marker.evaluate():
        pytest.skip(f"not installed on this platform ({requirement.marker})")
    pinned = _pins().get(canonicalize_name(requirement.name))
    assert pinned is not None, f"constraints.txt does not pin {requirement.name}"
    assert requirement.specifier.contains(pinned, prereleases=True), (
        f"constraints.txt pins {requirement.name}=={pinned}, outside {requirement.specifier}"
    )


def test_every_direct_dependency_has_a_lower_bound() -> None:
    for requirement in _requirements():
        assert any(spec.operator == ">=" for spec in requirement.specifier), requirement
