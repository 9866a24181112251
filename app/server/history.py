"""What the server tells the request history, and what it knows of each Claude Code session.

`to_history_row` turns a finished `RequestRecord` into the row the history keeps
(no bodies); `SessionTallies` keeps each session's tokens and last upstream model in
memory, for the status line (`GET /v1/nimbridge/status`), which must answer fast.
"""

import time
from collections import OrderedDict
from dataclasses import dataclass

from app.config.history import REPAIRS_SEPARATOR, HistoryRow
from app.core.errors import error_type_for_status
from app.core.masking import Masker
from app.server.records import RequestRecord

SESSIONS_KEPT = 1000
# Paths that are not a client's request: Claude Code's reachability check, probes,
# the status line's own question.
UNRECORDED_PATHS = frozenset({"/", "/health", "/v1/nimbridge/status"})


def to_history_row(record: RequestRecord, masker: Masker, *, loop_now: float) -> HistoryRow:
    """The row as stored, in `COLUMNS` order (a tuple: building a HistoryEntry and taking
    it apart again cost more than the rest of the bookkeeping of a request)."""
    status = record.status
    failed = status is None or status >= 400
    usage = record.usage
    first_byte_at = record.first_byte_at
    return (
        record.request_id,
        record.started_wall,
        record.method,
        record.path,
        record.client_model,
        record.upstream_model,
        record.provider,
        record.stream,
        status,
        error_type_for_status(status)  # error_type
        if status is not None and status >= 400
        else ("api_error" if failed or record.error else None),
        masker.redact(record.error) if record.error else None,  # error
        (first_byte_at - record.started) * 1000 if first_byte_at is not None else None,  # ttfb
        max(0.0, (loop_now - record.started) * 1000),  # duration_ms
        usage.get("input_tokens"),
        usage.get("output_tokens"),
        usage.get("cache_read_input_tokens"),  # cached_tokens
        record.attempts,
        REPAIRS_SEPARATOR.join(record.repairs),
        record.session_id,
        record.project,
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
