"""Request translation under arbitrary client bodies: validation refuses with a
`ClientRequestError` or lets through what `to_openai_request` translates into a
well-formed, deterministic Chat Completions request, never mutating the input."""

import copy
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.core.errors import ClientRequestError, ProxyError
from app.core.request_map import to_openai_request
from app.core.request_validation import validate_messages_request
from app.core.tiers import ModelRoute
from tests.fuzz import FUZZ
from tests.fuzz.strategies import JSON_VALUES
from tests.unit.core.test_request_map import (
    ROUTES,
    assert_refusals_honoured,
    assert_well_formed,
    requests,
)

Container = dict[str, Any] | list[Any]


def places(value: Any) -> Iterator[tuple[Container, Any]]:
    """Every (container, key) inside a JSON value, depth first."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield value, key
            yield from places(inner)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield value, index
            yield from places(inner)


@st.composite
def mutated_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed request with one to three fields replaced by any JSON, or removed."""
    request: dict[str, Any] = copy.deepcopy(draw(requests()))  # its parts are shared constants
    for _ in range(draw(st.integers(1, 3))):
        container, key = draw(st.sampled_from(list(places(request))))
        if draw(st.booleans()):
            container[key] = draw(JSON_VALUES)
        else:
            del container[key]
        if not list(places(request)):
            break
    return request


BODIES = st.one_of(requests(), mutated_requests(), mutated_requests(), JSON_VALUES)


@FUZZ
@given(body=BODIES, route=ROUTES)
def test_any_body_is_refused_clearly_or_translated_well(body: Any, route: ModelRoute) -> None:
    before = copy.deepcopy(body)
    try:
        request = validate_messages_request(body)
    except ClientRequestError as exc:
        assert exc.status == 400 and exc.message.split(":")[0]  # names the field
        return
    notes: list[str] = []
    try:
        out = to_openai_request(request, route, notes=notes)
    except ProxyError as exc:
        assert exc.status == 400, exc.message  # only what no upstream takes (image file ids)
        return
    assert body == before  # never mutated
    wire = json.dumps(out, allow_nan=False)
    assert json.dumps(to_openai_request(request, route), allow_nan=False) == wire  # deterministic
    sent = json.loads(wire)
    assert_well_formed(sent)
    assert_refusals_honoured(sent, route.quirks)
    assert all(isinstance(note, str) for note in notes)
