"""app.server.safe_fetch: which addresses count as public, and the per-request budget."""

import ipaddress

import pytest

from app.server.safe_fetch import FetchBudget, FetchError, public_only


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "169.254.169.254",
        "::ffff:127.0.0.1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1: Python 3.12 calls it global (issue 17)
        "2002:a9fe:a9fe::1",  # 6to4 of the cloud metadata address
        "2002:c0a8:101::",  # 6to4 of 192.168.1.1
        "fec0::1",  # site-local (deprecated), likewise called global
        "64:ff9b::7f00:1",
        "::127.0.0.1",
        "fe80::1",
        "fc00::1",
        "::1",
    ],
)
def test_addresses_inside_the_users_network_are_refused(address: str) -> None:
    assert public_only(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "2002:808:808::1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert public_only(ipaddress.ip_address(address)) is None


def test_a_budget_refuses_what_would_not_fit_and_counts_what_was_taken() -> None:
    budget = FetchBudget(100)
    budget.check_room(100, "u")
    budget.take(60, "u")
    with pytest.raises(FetchError, match="over the 100 bytes NimBridge fetches for one request"):
        budget.check_room(41, "u")
    budget.take(40, "u")
    with pytest.raises(FetchError):
        budget.take(1, "u")
