"""The history row the server builds reads back as the entry the request was."""

import asyncio

from app.config.history import COLUMNS, HistoryEntry, entry_of, row_of
from app.core.masking import MASK, Masker
from app.server.history import to_history_row
from app.server.records import RequestRecord

KEY = "nvapi-history-row-test-key-0123456789"


def finished_record() -> RequestRecord:
    record = RequestRecord("req_1", "POST", "/v1/messages", started=10.0, started_wall=1e9)
    record.client_model, record.upstream_model, record.provider = "claude-x", "up/m", "nvidia"
    record.stream, record.status, record.first_byte_at, record.attempts = True, 429, 10.25, 2
    record.usage = {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 5}
    record.repairs = ["max_tokens clamped to 10", "fell back to up/other"]
    record.error = f"upstream said no to {KEY}"
    record.session_id, record.project = "session-1", "/home/me/project"
    return record


def test_every_column_in_its_place() -> None:
    row = to_history_row(finished_record(), Masker([KEY]), loop_now=11.5)
    assert len(row) == len(COLUMNS)
    assert entry_of(row) == HistoryEntry(
        request_id="req_1",
        started_at=1e9,
        method="POST",
        path="/v1/messages",
        client_model="claude-x",
        upstream_model="up/m",
        provider="nvidia",
        stream=True,
        status=429,
        error_type="rate_limit_error",
        error=f"upstream said no to {MASK}",
        ttfb_ms=250.0,
        duration_ms=1500.0,
        input_tokens=7,
        output_tokens=3,
        cached_tokens=5,
        attempts=2,
        repairs=("max_tokens clamped to 10", "fell back to up/other"),
        session_id="session-1",
        project="/home/me/project",
    )
    assert row_of(entry_of(row)) == row  # the entry's own row is the same


def test_a_request_that_never_got_a_status_is_an_api_error() -> None:
    async def row() -> tuple[object, ...]:
        record = RequestRecord("req_2", "GET", "/v1/models")
        return to_history_row(record, Masker(), loop_now=record.started - 1)

    entry = entry_of(asyncio.run(row()))
    assert (entry.status, entry.error_type, entry.error) == (None, "api_error", None)
    assert entry.duration_ms == 0.0 and entry.ttfb_ms is None and entry.repairs == ()
