"""`to_curl_command` (app.server.curl): the inspector's "Copy as curl" for each kind of call.
End to end (the commands run against the fake upstream): tests/integration/test_images.py."""

from typing import Any

import pytest

from app.server.curl import NO_CALL, to_curl_command
from app.server.records import UpstreamTarget

CHAT = UpstreamTarget(
    "POST", "https://integrate.api.nvidia.com/v1/chat/completions", "application/json"
)


@pytest.mark.parametrize(
    ("target", "body", "expected"),
    [
        pytest.param(
            CHAT,
            {"model": "m"},
            "curl -sS https://integrate.api.nvidia.com/v1/chat/completions \\\n"
            '  -H "Authorization: Bearer $KEY_VAR" -H "Content-Type: application/json" \\\n'
            "  --data-binary @- <<'JSON'\n"
            '{\n  "model": "m"\n}\n'
            "JSON",
            id="json-body",
        ),
        pytest.param(
            CHAT,
            b'{"raw": true}',
            "curl -sS https://integrate.api.nvidia.com/v1/chat/completions \\\n"
            '  -H "Authorization: Bearer $KEY_VAR" -H "Content-Type: application/json" \\\n'
            "  --data-binary @- <<'JSON'\n"
            '{\n  "raw": true\n}\n'
            "JSON",
            id="json-bytes",
        ),
        pytest.param(
            UpstreamTarget("POST", "http://h/run/m?x=1&y=2", "multipart/form-data; boundary=b"),
            {"prompt": "it's", "steps": 4},
            "# multipart/form-data, as this model takes it: one --form-string per field\n"
            "curl -sS 'http://h/run/m?x=1&y=2' \\\n"
            '  -H "Authorization: Bearer $KEY_VAR" \\\n'
            "  --form-string 'prompt=it'\"'\"'s' \\\n"
            "  --form-string steps=4",
            id="multipart-and-a-url-the-shell-would-split",
        ),
        pytest.param(
            UpstreamTarget("POST", "http://h/upload", "application/octet-stream"),
            b"\x00\x01",
            "# The body was application/octet-stream, which this command cannot repeat.\n"
            "curl -sS http://h/upload \\\n"
            '  -H "Authorization: Bearer $KEY_VAR"',
            id="other-body-named-not-sent-wrong",
        ),
        pytest.param(
            CHAT,
            b"not json",
            "# The body was application/json, which this command cannot repeat.\n"
            "curl -sS https://integrate.api.nvidia.com/v1/chat/completions \\\n"
            '  -H "Authorization: Bearer $KEY_VAR"',
            id="json-that-is-not",
        ),
        pytest.param(
            UpstreamTarget("GET", "http://h/v1/models", ""),
            None,
            'curl -sS -X GET http://h/v1/models \\\n  -H "Authorization: Bearer $KEY_VAR"',
            id="no-body-names-its-method",
        ),
        pytest.param(None, {"model": "m"}, NO_CALL, id="no-call-made"),
    ],
)
def test_curl_command(target: UpstreamTarget | None, body: Any, expected: str) -> None:
    assert to_curl_command(target, body, key_env="KEY_VAR") == expected
