"""The fault matrix for `POST /v1/responses` (Codex CLI): the same upstream faults as
test_fault_matrix.py, answered in the Responses API's own words.

Before the first byte: the HTTP status Anthropic's path gives, with an OpenAI-shaped
error body (`error.message/type/code`) Codex shows. After it: a stream that ends in
`response.failed` (never a clean `response.completed`), every event passing the
Responses grammar guard. Always one summary log line saying what happened, no key in
anything the client gets, and nothing left open on the server's loop (`LeakCheck`).
"""

import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest

from app.core.responses_guard import ResponsesStreamGuard
from tests.fake_upstream import after, http_request, reply_body
from tests.integration.conftest import UPSTREAM_KEY, LiveProxy, MakeProxy
from tests.integration.test_fault_matrix import (
    BROKEN,
    BROKEN_JSON,
    RETRY_AFTER_STATUSES,
    STATUSES,
    LeakCheckFor,
    error_body,
    leaks,  # noqa: F401  (fixture)
    logged,
)

pytestmark = pytest.mark.allow_warnings  # every case here fails on purpose, and says so

MODEL = "claude-sonnet-4-6"


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app")


@dataclass
class ResponsesAnswer:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def request_id(self) -> str:
        return self.headers["request-id"]

    def error(self) -> dict[str, Any]:
        assert self.headers["Content-Type"].startswith("application/json"), self.headers
        body = json.loads(self.raw)
        assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"]), body
        return dict(body["error"])

    def events(self) -> list[dict[str, Any]]:
        """The stream's events, each checked by the Responses grammar guard."""
        assert self.status == 200, self.raw[:500]
        events = [
            json.loads(line[6:])
            for line in self.raw.decode().splitlines()
            if line.startswith("data: ")
        ]
        guard = ResponsesStreamGuard()
        for event in events:
            guard.check(event)
        assert guard.ended, [e["type"] for e in events][-3:]
        return events


def ask(proxy: LiveProxy, *, stream: bool) -> ResponsesAnswer:
    body = {"model": MODEL, "input": "hello", "max_output_tokens": 50, "stream": stream}
    headers = {"Authorization": f"Bearer {proxy.client_key}", "content-type": "application/json"}
    status, got, raw = http_request(
        proxy.url + "/v1/responses", "POST", body=json.dumps(body).encode(), headers=headers
    )
    return ResponsesAnswer(status, got, raw)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("upstream_status", list(STATUSES))
def test_upstream_status(
    make_proxy: MakeProxy,
    leaks: LeakCheckFor,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    upstream_status: int,
    stream: bool,
) -> None:
    proxy = make_proxy(retry_max_attempts=1)
    words = f"zebra quota {upstream_status} exhausted for this account"
    body, content_type = error_body("openai", upstream_status, words)
    headers = {"Retry-After": "7"} if upstream_status in RETRY_AFTER_STATUSES else {}
    status, error_type, _ = STATUSES[upstream_status]
    with leaks(proxy).around():
        proxy.upstream.enqueue(
            reply_body(body, status=upstream_status, content_type=content_type, **headers)
        )
        answer = ask(proxy, stream=stream)
        assert answer.status == status, answer.raw
        error = answer.error()
        assert words in error["message"] and UPSTREAM_KEY not in error["message"]
        assert error["type"] == error_type
        assert answer.headers.get("retry-after") == headers.get("Retry-After")
        line = logged(caplog, answer.request_id)
        assert f" {status} " in line and words in line, line


@pytest.mark.parametrize("upstream_status", [429, 500, 503])
def test_upstream_status_after_commit_is_response_failed(
    make_proxy: MakeProxy,
    leaks: LeakCheckFor,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    upstream_status: int,
) -> None:
    proxy = make_proxy(retry_max_attempts=1, commit_window_s=0.05)
    words = f"late zebra {upstream_status}"
    body, content_type = error_body("openai", upstream_status, words)
    with leaks(proxy).around():
        proxy.upstream.enqueue(
            after(0.25, reply_body(body, status=upstream_status, content_type=content_type))
        )
        answer = ask(proxy, stream=True)
        events = answer.events()
        assert events[0]["type"] == "response.created"
        assert events[-1]["type"] == "response.failed", events[-3:]
        assert words in json.dumps(events[-1]) and UPSTREAM_KEY not in answer.raw.decode()
        assert words in logged(caplog, answer.request_id)


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_stream_ends_in_response_failed(
    make_proxy: MakeProxy,
    leaks: LeakCheckFor,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    behaviour, read_timeout, words, _ = BROKEN[case]
    proxy = make_proxy(read_timeout_s=read_timeout, commit_window_s=0.2)
    with leaks(proxy).around():
        proxy.upstream.enqueue(behaviour)
        answer = ask(proxy, stream=True)
        events = answer.events()
        assert events[-1]["type"] == "response.failed", [e["type"] for e in events][-3:]
        assert words in json.dumps(events[-1]), events[-1]
        assert words in logged(caplog, answer.request_id)


@pytest.mark.parametrize("case", list(BROKEN_JSON))
def test_broken_body_is_one_http_error(
    make_proxy: MakeProxy,
    leaks: LeakCheckFor,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    behaviour, read_timeout, status, words = BROKEN_JSON[case]
    proxy = make_proxy(read_timeout_s=read_timeout, retry_max_attempts=1)
    with leaks(proxy).around():
        proxy.upstream.enqueue(behaviour)
        answer = ask(proxy, stream=False)
        assert answer.status == status, answer.raw
        assert words in answer.error()["message"]
        assert words in logged(caplog, answer.request_id)
