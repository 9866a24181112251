"""The request history's cost per request: on the event loop, and on its writer thread.

    .venv/bin/python -m tests.benchmarks.bench_history [--rows N]

- loop cost: building the row from a finished record and `submit()` (what the
  request's own task pays, after its answer is sent);
- writer cost: rows per second the worker thread writes (batched, one transaction
  per batch, WAL), with the file on the real disk, and the time per row.
"""

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from app.config.history import HistoryWriter, recent_entries
from app.core.masking import Masker
from app.server.history import to_history_row
from app.server.records import RequestRecord


async def _records(count: int) -> list[RequestRecord]:
    records = []
    for n in range(count):
        record = RequestRecord(f"req_{n:024x}", "POST", "/v1/messages")
        record.client_model, record.upstream_model = "claude-sonnet-4-6", "meta/llama@nvidia"
        record.stream, record.status, record.attempts = True, 200, 1
        record.first_byte_at = record.started + 0.1
        record.usage = {"input_tokens": 12_000, "output_tokens": 300}
        record.session_id, record.project = "9e135e1d-2a25-4148-987c-1ea8acc37485", "/home/u/p"
        records.append(record)
    return records


async def measure(rows: int, folder: Path) -> dict[str, float]:
    records = await _records(rows)
    masker = Masker()
    writer = HistoryWriter(folder / "history.sqlite3")
    loop = asyncio.get_running_loop()
    began = time.perf_counter()
    for record in records:
        writer.submit_row(to_history_row(record, masker, loop_now=loop.time()))
    loop_s = time.perf_counter() - began
    began_write = time.perf_counter()
    await asyncio.to_thread(writer.flush)
    drain_s = time.perf_counter() - began_write
    writer.close()
    assert len(recent_entries(writer.path, rows)) == rows and writer.dropped == 0
    size = (folder / "history.sqlite3").stat().st_size
    return {
        "rows": rows,
        "loop_us_per_request": loop_s / rows * 1e6,
        "writer_rows_per_s": rows / (loop_s + drain_s),
        "writer_us_per_row": (loop_s + drain_s) / rows * 1e6,
        "bytes_per_row": size / rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_history")
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(measure(args.rows, Path(folder)))
    print(
        f"{result['rows']:.0f} requests: {result['loop_us_per_request']:.1f} µs each on the "
        f"event loop (row built + queued); the writer thread wrote "
        f"{result['writer_rows_per_s']:,.0f} rows/s ({result['writer_us_per_row']:.1f} µs a "
        f"row, batched); {result['bytes_per_row']:.0f} bytes a row on disk"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
