"""Request and message ids: unique, and request ids in the order they were made."""

import re
import time

from app.server.records import new_message_id, new_request_id


def test_request_ids_are_unique_and_sort_in_the_order_they_were_made() -> None:
    earlier = [new_request_id() for _ in range(20_000)]
    time.sleep(0.002)  # the next millisecond at least
    later = new_request_id()
    assert len(set(earlier)) == len(earlier)
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in [*earlier, later])
    assert max(earlier) < later


def test_message_ids_are_unique() -> None:
    ids = [new_message_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"msg_[0-9a-f]{24}", i) for i in ids)
