"""What the server tells the request history, and what it knows of each Claude Code session.

`to_history_entry` turns a finished `RequestRecord` into the row the history keeps
(no bodies); `SessionTallies` keeps each session's tokens and last upstream model in
memory, for the status line (`GET /v1/nimbridge/status`), which must answer fast.
"""

import time
from collections import OrderedDict
from dataclasses import dataclass

from app.config.history import HistoryEntry
from app.core.errors import error_type_for_status
from app.core.masking import Masker
from app.server.records import RequestRecord

SESSIONS_KEPT = 1000
# Paths that are not a client's request: Claude Code's reachability check, probes,
# the status line's own question.
UNRECORDED_PATHS = frozenset({"/", "/health", "/v1/nimbridge/status"})


def to_history_entry(record: RequestRecord, masker: Masker, *, loop_now: float) -> HistoryEntry:
    failed = record.status is None or record.status >= 400
    usage = record.usage
    return HistoryEntry(
        request_id=record.request_id,
        started_at=record.started_wall,
        method=record.method,
        path=record.path,
        client_model=record.client_model,
        upstream_model=record.upstream_model,
        provider=record.provider,
        stream=record.stream,
        status=record.status,
        error_type=error_type_for_status(record.status)
        if record.status is not None and record.status >= 400
        else ("api_error" if failed or record.error else None),
        error=masker.redact(record.error) if record.error else None,
        ttfb_ms=(record.first_byte_at - record.started) * 1000
        if record.first_byte_at is not None
        else None,
        duration_ms=max(0.0, (loop_now - record.started) * 1000),
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        cached_tokens=usage.get("cache_read_input_tokens"),
        attempts=record.attempts,
        repairs=tuple(record.repairs),
        session_id=record.session_id,
        project=record.project,
    )


@dataclass(slots=True)
class SessionTally:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    upstream_model: str | None = None  # the last answer's model id, and its provider
    provider: str | None = None
    last_seen: float = 0.0


class SessionTallies:
    """The last `SESSIONS_KEPT` sessions' totals since this server started."""

    def __init__(self) -> None:
        self._by_session: OrderedDict[str, SessionTally] = OrderedDict()

    def add(self, record: RequestRecord) -> None:
        if record.session_id is None or record.client_model is None:
            return
        tally = self._by_session.pop(record.session_id, None) or SessionTally()
        self._by_session[record.session_id] = tally
        tally.requests += 1
        tally.input_tokens += int(record.usage.get("input_tokens") or 0)
        tally.output_tokens += int(record.usage.get("output_tokens") or 0)
        if record.upstream_model:
            tally.upstream_model, tally.provider = record.upstream_model, record.provider
        tally.last_seen = time.time()
        while len(self._by_session) > SESSIONS_KEPT:
            self._by_session.popitem(last=False)

    def seed(self, session_id: str, tally: SessionTally) -> SessionTally:
        """Totals from before this server started; kept unless the session came meanwhile."""
        return self._by_session.setdefault(session_id, tally)

    def get(self, session_id: str) -> SessionTally | None:
        return self._by_session.get(session_id)
