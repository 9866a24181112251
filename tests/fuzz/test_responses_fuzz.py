"""The Responses API (Codex CLI) under arbitrary input, as the Anthropic path is fuzzed.

Requests: any JSON body, and Codex's captured request with one to three values replaced by
any JSON or removed, is refused with a `ClientRequestError` or becomes an Anthropic request
that validation accepts and the core translates. Streams: whatever chunks the upstream sends,
the Responses events that leave are grammatical (`ResponsesStreamGuard`), numbered in order,
and end exactly once.
"""

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.core.errors import ClientRequestError
from app.core.request_map import to_openai_request
from app.core.request_validation import validate_messages_request
from app.core.responses_guard import ResponsesStreamGuard
from app.core.responses_request import ToolNames, to_messages_request
from app.core.responses_stream import ResponsesStreamTranslator
from tests.fuzz import FUZZ
from tests.fuzz.strategies import JSON_VALUES
from tests.fuzz.test_request_fuzz import places
from tests.fuzz.test_stream_fuzz import relay, streams
from tests.unit.core.test_request_map import ROUTE

CODEX_REQUEST = json.loads(
    (
        Path(__file__).parents[1] / "fixtures" / "requests" / "codex_0.171_responses_request.json"
    ).read_text("utf-8")
)
CODEX_BODY: dict[str, Any] = CODEX_REQUEST.get("body", CODEX_REQUEST)


@st.composite
def mutated_codex_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(CODEX_BODY)
    for _ in range(draw(st.integers(1, 3))):
        container, key = draw(st.sampled_from(list(places(body))))
        if draw(st.booleans()):
            container[key] = draw(JSON_VALUES)
        else:
            del container[key]
    return body


def _translate(body: Any) -> None:
    """What the server does with a body: map, validate, translate; only our refusal may raise."""
    before = json.dumps(body, sort_keys=True)
    notes: list[str] = []
    try:
        plan = to_messages_request(body, notes)
        req = validate_messages_request(dict(plan.request))
    except ClientRequestError:
        return
    finally:
        assert json.dumps(body, sort_keys=True) == before  # the client's body is never changed
    out = to_openai_request(req, ROUTE, notes=notes)
    assert out["messages"] and out["messages"][-1]["role"] in ("user", "tool", "assistant")
    assert all(isinstance(note, str) for note in notes)


@FUZZ
@given(body=st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=6))
def test_any_body_is_refused_in_words_or_translated(body: dict[str, Any]) -> None:
    _translate(body)


@FUZZ
@given(body=mutated_codex_bodies())
def test_codex_request_with_hostile_values_is_refused_in_words_or_translated(
    body: dict[str, Any],
) -> None:
    _translate(body)


def test_codex_request_itself_translates() -> None:
    notes: list[str] = []
    plan = to_messages_request(copy.deepcopy(CODEX_BODY), notes)
    to_openai_request(validate_messages_request(dict(plan.request)), ROUTE, notes=notes)


@FUZZ
@given(
    items=streams(),
    end=st.sampled_from(["finish", "fail"]),
    encrypted=st.booleans(),
)
def test_any_upstream_stream_leaves_as_a_grammatical_responses_stream(
    items: list[Any], end: str, encrypted: bool
) -> None:
    anthropic_events, _ = relay(items, end=end, tools=(), start_in_thinking=False)
    translator = ResponsesStreamTranslator(
        response_id="resp_fuzz",
        created_at=1,
        tool_names=ToolNames(),
        include_encrypted_reasoning=encrypted,
    )
    guard = ResponsesStreamGuard()
    sent = [converted for event in anthropic_events for converted in translator.feed(event)]
    for event in sent:
        guard.check(event)
    assert guard.ended, [e["type"] for e in sent][-3:]
    assert sent[-1]["type"] in ("response.completed", "response.incomplete", "response.failed")
    json.dumps(sent)  # every event is JSON as it stands
