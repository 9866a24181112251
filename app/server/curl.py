""" "Copy as curl": the upstream call a request made, as a shell command that repeats it.

Invariants:
- The key is never written: the command reads it from the variable the provider's
  preset names (`$NVIDIA_API_KEY`...), so a copied command is safe to paste anywhere.
- The URL and method are the ones the call used (`RequestRecord.upstream_target`):
  chat completions, OpenAI's images API, a Workers AI model's own run endpoint...
- A body is reproduced only in a form curl sends the same way: JSON as a here-document,
  multipart/form-data text fields as one `--form-string` each (curl picks its own
  boundary, and `--form-string` never reads `@file` or `<file` from a value). Any
  other body is named in a comment line instead of being sent wrong.
"""

import json
import shlex
from typing import Any

from app.server.records import UpstreamTarget

NO_CALL = "# No upstream call was made for this request: NimBridge answered it itself."
_INDENT = "  "


def to_curl_command(target: UpstreamTarget | None, body: Any, *, key_env: str) -> str:
    """The command repeating the call `target` describes, `body` as NimBridge sent it."""
    if target is None:
        return NO_CALL
    media_type = target.content_type.split(";", 1)[0].strip().lower()
    method = "" if target.method == "POST" and body is not None else f" -X {target.method}"
    command = [f"curl -sS{method} {shlex.quote(target.url)}"]
    auth = f'-H "Authorization: Bearer ${key_env}"'
    if body is None:
        return _joined([], [*command, auth])
    if media_type == "multipart/form-data" and isinstance(body, dict):
        fields = [
            "--form-string " + shlex.quote(f"{name}={_field_text(value)}")
            for name, value in body.items()
        ]
        note = "# multipart/form-data, as this model takes it: one --form-string per field"
        return _joined([note], [*command, auth, *fields])
    text = _json_text(body) if media_type == "application/json" else None
    if text is None:
        note = f"# The body was {media_type or 'untyped'}, which this command cannot repeat."
        return _joined([note], [*command, auth])
    content_type = f'-H "Content-Type: {target.content_type}"'
    lines = [*command, f"{auth} {content_type}", "--data-binary @- <<'JSON'"]
    # Quoted, the here-document expands nothing; and no line of JSON text is a bare
    # JSON (strings are quoted, newlines escaped), so the body cannot end it early.
    return f"{_joined([], lines)}\n{text}\nJSON"


def _joined(comments: list[str], lines: list[str]) -> str:
    """`lines` as one command continued with backslashes, after the comment lines."""
    command = f" \\\n{_INDENT}".join(lines)
    return "\n".join([*comments, command])


def _field_text(value: Any) -> str:
    # As `app.core.images.encode_multipart` writes a field.
    return value if isinstance(value, str) else json.dumps(value)


def _json_text(body: Any) -> str | None:
    if isinstance(body, bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    return json.dumps(body, indent=2, ensure_ascii=False)
