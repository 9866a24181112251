"""Several providers' model listings as one, whatever some of them answered."""

import logging
from collections.abc import Sequence

from app.core.catalog import CatalogModel, merge_catalogs
from app.core.errors import ProxyError
from app.core.providers import Provider

log = logging.getLogger(__name__)


def merge_listings(
    providers: Sequence[Provider],
    results: Sequence[list[CatalogModel] | BaseException],
    *,
    what: str,
) -> list[CatalogModel]:
    """The providers' listings merged; one that failed is logged and left out, unless all
    failed (then the first failure, in words). Anything but a ProxyError is a bug: raised."""
    catalogs: list[list[CatalogModel]] = []
    failures: list[ProxyError] = []
    for provider, result in zip(providers, results, strict=True):
        if isinstance(result, ProxyError):
            log.info("could not list the %s of %s: %s", what, provider.name, result.message)
            failures.append(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            catalogs.append(result)
    if failures and not catalogs:
        raise failures[0]
    return merge_catalogs(catalogs)
