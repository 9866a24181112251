"""Screenshots of the log window, its request table and a request's details.

    .venv/bin/python -m tests.ui.screenshot_log_window [OUT.png]

OUT.png (default resources/screenshots/log-window.png) gets the Log tab;
log-requests.png and request-detail.png are written beside it. Runs offscreen
(QWidget.grab() needs no display), fed by a FakeController with realistic data.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402 (after the platform is chosen)

from app.logs import LogLine  # noqa: E402
from app.service import RequestDetail, RequestSummary  # noqa: E402
from app.ui.log_window import LogWindow  # noqa: E402
from tests.ui.fakes import FakeController, summary  # noqa: E402

DEFAULT_OUT = Path("resources/screenshots/log-window.png")
QWEN = "qwen/qwen3-coder-480b-a35b-instruct@nvidia"
DEEPSEEK = "deepseek-ai/deepseek-v3.1@nvidia"


class ScreenshotController(FakeController):
    """FakeController whose details look like a real Claude Code turn."""

    def request_detail(self, request_id: str) -> RequestDetail | None:
        row = next((r for r in self.recent_requests() if r.request_id == request_id), None)
        if row is None:
            return None
        client = {
            "model": row.client_model,
            "max_tokens": 32000,
            "stream": row.stream,
            "system": [{"type": "text", "text": "You are Claude Code, ..."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Run the tests"}]},
            ],
            "tools": [
                {
                    "name": "Bash",
                    "description": "Executes a given bash command",
                    "input_schema": {
                        "type": "object",
                        "properties": {"command": {"type": "string"}},
                        "required": ["command"],
                    },
                }
            ],
        }
        upstream = {
            "model": (row.upstream_model or "").split("@")[0],
            "max_tokens": 32000,
            "stream": row.stream,
            "stream_options": {"include_usage": True},
            "messages": [
                {"role": "system", "content": "You are Claude Code, ..."},
                {"role": "user", "content": "Run the tests"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "Bash",
                        "description": "Executes a given bash command",
                        "parameters": {
                            "type": "object",
                            "properties": {"command": {"type": "string"}},
                            "required": ["command"],
                        },
                    },
                }
            ],
        }
        response = {
            "id": "chatcmpl-8f3a",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": "I'll run the test suite.",
                        "tool_calls": [
                            {
                                "id": "call_0",
                                "type": "function",
                                "function": {
                                    "name": "Bash",
                                    "arguments": '{"command": "pytest -q"}',
                                },
                            }
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": row.input_tokens, "completion_tokens": row.output_tokens},
        }
        return RequestDetail(
            summary=row,
            client_request=json.dumps(client),
            upstream_request=json.dumps(upstream),
            upstream_response=json.dumps(response),
            curl="curl https://integrate.api.nvidia.com/v1/chat/completions "
            '-H "Authorization: Bearer $NVIDIA_API_KEY" -H "Content-Type: application/json" -d @-',
        )


def fill(controller: FakeController) -> None:
    start = time.time() - 300
    rows: list[RequestSummary] = []
    for i in range(24):
        at = start + i * 11.3
        kind = i % 8
        row = summary(
            f"req_{0x3A10 + i:04x}",
            started_at=at,
            stream=kind != 3,
            ttfb_ms=380.0 + (i * 37) % 400,
            duration_ms=1800.0 + (i * 911) % 9000,
            input_tokens=18_000 + i * 1_350,
            output_tokens=120 + (i * 97) % 900,
        )
        if kind == 2:
            row = summary(
                row.request_id,
                started_at=at,
                client_model="claude-haiku-4-5",
                upstream_model=DEEPSEEK,
                input_tokens=900,
                output_tokens=42,
                ttfb_ms=260.0,
                duration_ms=610.0,
            )
        if kind == 5:
            row = summary(
                row.request_id,
                started_at=at,
                attempts=2,
                repairs=("tool arguments were not valid JSON; repaired",),
                duration_ms=5230.0,
            )
        if i == 21:
            row = summary(
                row.request_id,
                started_at=at,
                status=429,
                ttfb_ms=None,
                duration_ms=30_200.0,
                input_tokens=None,
                output_tokens=None,
                attempts=4,
                error="rate limited by nvidia: cooling down for 28 s",
            )
        if i in (0, 16):  # Claude Code's start-up listing: no model, a method and path
            row = summary(
                row.request_id,
                started_at=at,
                method="GET",
                path="/v1/models",
                client_model=None,
                upstream_model=None,
                stream=None,
                ttfb_ms=2.0,
                duration_ms=4.0,
                input_tokens=None,
                output_tokens=None,
            )
        if i == 1:
            row = summary(
                row.request_id,
                started_at=at,
                client_model=None,
                upstream_model=None,
                status=401,
                stream=None,
                ttfb_ms=None,
                duration_ms=3.0,
                input_tokens=None,
                output_tokens=None,
                error="wrong proxy key: send NimBridge's key (Settings → Server → Proxy key)",
            )
        if i == 13:
            row = summary(
                row.request_id,
                started_at=at,
                status=502,
                ttfb_ms=None,
                duration_ms=120_000.0,
                input_tokens=None,
                output_tokens=None,
                error="upstream timed out after 120 s",
            )
        rows.append(row)

    serving = "NimBridge serving on http://127.0.0.1:8787"
    models = "GET https://integrate.api.nvidia.com/v1/models -> 200 in 412 ms"
    lines: list[LogLine] = [
        LogLine(start - 2, "INFO", "app.server.app", serving),
        LogLine(start - 2, "INFO", "app.server.upstream.registry", "nvidia: key from the keychain"),
        LogLine(start - 1, "DEBUG", "app.server.upstream.registry", models),
    ]
    for row in rows:
        at = row.started_at
        rid = row.request_id
        if row.repairs:
            lines.append(
                LogLine(
                    at + 1,
                    "WARNING",
                    "app.server.upstream.call_policy",
                    f"{rid} {QWEN}: {row.repairs[0]}",
                )
            )
        if row.attempts > 1 and row.status == 429:
            for attempt in range(1, row.attempts):
                lines.append(
                    LogLine(
                        at + attempt * 7,
                        "INFO",
                        "app.server.upstream.call_policy",
                        f"{rid} retrying nvidia in {2**attempt:.2g} s after: 429 Too Many Requests",
                    )
                )
        if row.upstream_model is not None:
            lines.append(
                LogLine(
                    at + 0.2,
                    "DEBUG",
                    "app.server.routes",
                    f'{rid} upstream request: {{"model": "{row.upstream_model.split("@")[0]}", '
                    f'"stream": {str(row.stream).lower()}, "max_tokens": 32000, '
                    '"messages": [...]}',
                )
            )
        words = [rid, row.method, row.path]
        if row.client_model is not None:  # as the server's own summary line
            words.append(f"{row.client_model} -> {row.upstream_model}")
        if row.stream is not None:
            words.append("stream" if row.stream else "non-stream")
        words.append(str(row.status))
        if row.ttfb_ms is not None:
            words.append(f"ttfb={row.ttfb_ms:.0f}ms")
        words.append(f"total={row.duration_ms:.0f}ms")
        if row.input_tokens is not None:
            words.append(f"tokens={row.input_tokens}/{row.output_tokens}")
        if row.attempts > 1:
            words.append(f"attempts={row.attempts}")
        if row.error:
            words.append(f"error={row.error!r}")
        level = "ERROR" if row.status and row.status >= 500 else "WARNING" if row.error else "INFO"
        lines.append(LogLine(at + row.duration_ms / 1000, level, "app.server.app", " ".join(words)))
    lines.sort(key=lambda line: line.created)
    controller.emit_logs(lines)
    for row in rows:
        controller.emit_request(row)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(argv)
    controller = ScreenshotController()
    fill(controller)
    window = LogWindow(controller)
    window.resize(1200, 680)
    window.show()
    window.log_pump.flush()
    window.request_pump.flush()
    app.processEvents()
    window.grab().save(str(out))

    window.show_requests()
    app.processEvents()
    window.grab().save(str(out.with_name("log-requests.png")))

    dialog = window.requests.open_request(controller.recent_requests()[-9].request_id)
    dialog.resize(1200, 640)
    app.processEvents()
    dialog.grab().save(str(out.with_name("request-detail.png")))
    dialog.close()
    window.shutdown()
    print(out, out.with_name("log-requests.png"), out.with_name("request-detail.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
