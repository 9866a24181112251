"""Tool calls that a model leaked as markup into `content`, turned back into calls.

Some models served through NIM and vLLM (when the server's tool parser is off
or fails) write their native tool-call grammar into the text (PROTOCOL.md,
"tool-call markup leaking into content"). Recognised grammars:

- Kimi K2: `<|tool_calls_section_begin|>` then per call
  `<|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{json}<|tool_call_end|>`,
  then `<|tool_calls_section_end|>` (a lone `<|tool_call_begin|>...<|tool_call_end|>`
  is accepted too);
- MiniMax M2: `<minimax:tool_call><invoke name="NAME"><parameter name="P">v</parameter>
  </invoke></minimax:tool_call>`;
- Qwen / Hermes: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, and
  Qwen3-Coder's XML body `<tool_call><function=NAME><parameter=P>v</parameter>
  </function></tool_call>`.

Invariants:
- Nothing is lost: markup disappears only when it yields at least one call.
  Markup that does not parse (bad JSON, stray text between calls, no call at
  all, no closing marker by `close()`) comes out verbatim as text, as a call
  with invented `{}` arguments could run a tool the model did not ask for.
- Every split of the input gives the same output once adjacent text pieces
  are merged: `ToolMarkupScanner` holds back only a suffix that could begin
  an opening marker, so ordinary text streams without delay.
- `MarkupToolCall.arguments` is always compact JSON text of an object.
- XML parameter values become JSON numbers, booleans, objects or arrays when
  they parse as such; anything else (including `null`) stays a string.
- A Kimi call whose id carries no function name (`call_9e6c04c8` instead of
  `functions.NAME:0`) gets `name == ""`; `infer_tool_name` picks the one
  offered tool whose schema fits the arguments, as the caller knows the tools.
"""

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MarkupToolCall:
    name: str
    arguments: str  # compact JSON object text


# A parser returns the calls found between an opening and a closing marker,
# or None when the body is malformed (the caller then keeps the markup as text).
_BodyParser = Callable[[str], list[MarkupToolCall] | None]

_KIMI_CALL_RE = re.compile(
    r"<\|tool_call_begin\|>(.*?)<\|tool_call_argument_begin\|>(.*?)<\|tool_call_end\|>",
    re.DOTALL,
)
_KIMI_INDEX_RE = re.compile(r":\d+$")
_MINIMAX_INVOKE_RE = re.compile(r"<invoke\s+name=([\"'])(.*?)\1\s*>(.*?)</invoke>", re.DOTALL)
_MINIMAX_PARAM_RE = re.compile(
    r"<parameter\s+name=([\"'])(?P<name>.*?)\1\s*>(?P<value>.*?)</parameter>", re.DOTALL
)
_QWEN_FUNCTION_RE = re.compile(r"<function=([^>\s]+)>(.*?)</function>", re.DOTALL)
_QWEN_PARAM_RE = re.compile(r"<parameter=(?P<name>[^>]+)>(?P<value>.*?)</parameter>", re.DOTALL)


def _compact(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _reject_constant(name: str) -> Any:
    # NaN / Infinity are not JSON; letting them through would emit invalid arguments.
    raise ValueError(name)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    return value if isinstance(value, dict) else None


def _only_whitespace_left(pattern: re.Pattern[str], body: str) -> bool:
    """True when `body` holds nothing but matches of `pattern` and whitespace."""
    return not pattern.sub("", body).strip()


def _param_value(raw: str) -> Any:
    # The templates put values on their own lines: drop one newline each side only,
    # so a file's content keeps its own leading/trailing blank lines.
    value = raw.removeprefix("\n").removesuffix("\n")
    try:
        decoded = json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return value
    # Strings and null stay as written: `"abc"` (quoted) is not the same argument as abc.
    return decoded if isinstance(decoded, int | float | dict | list) else value


def _params(pattern: re.Pattern[str], body: str) -> dict[str, Any] | None:
    if not _only_whitespace_left(pattern, body):
        return None
    matches = pattern.finditer(body)
    return {match.group("name").strip(): _param_value(match.group("value")) for match in matches}


def _kimi_name(call_id: str) -> str:
    """`functions.get_weather:0` -> `get_weather`; a bare id like `call_ab12` -> ``."""
    name, had_index = _KIMI_INDEX_RE.subn("", call_id.strip())
    if name.startswith("functions."):
        return name.removeprefix("functions.")
    return name if had_index else ""


def _parse_kimi_calls(body: str) -> list[MarkupToolCall] | None:
    if not _only_whitespace_left(_KIMI_CALL_RE, body):
        return None
    calls = []
    for match in _KIMI_CALL_RE.finditer(body):
        arguments_text = match.group(2).strip() or "{}"
        arguments = _json_object(arguments_text)
        if arguments is None:
            return None
        calls.append(MarkupToolCall(_kimi_name(match.group(1)), _compact(arguments)))
    return calls


def _parse_kimi_single(body: str) -> list[MarkupToolCall] | None:
    # The opening marker was consumed by the scanner; put it back for the shared parser.
    return _parse_kimi_calls(f"<|tool_call_begin|>{body}<|tool_call_end|>")


def _parse_minimax(body: str) -> list[MarkupToolCall] | None:
    if not _only_whitespace_left(_MINIMAX_INVOKE_RE, body):
        return None
    calls = []
    for match in _MINIMAX_INVOKE_RE.finditer(body):
        name = match.group(2).strip()
        arguments = _params(_MINIMAX_PARAM_RE, match.group(3))
        if not name or arguments is None:
            return None
        calls.append(MarkupToolCall(name, _compact(arguments)))
    return calls


def _parse_tool_call_tag(body: str) -> list[MarkupToolCall] | None:
    stripped = body.strip()
    if stripped.startswith("<"):  # Qwen3-Coder XML
        match = _QWEN_FUNCTION_RE.fullmatch(stripped)
        if match is None:
            return None
        arguments = _params(_QWEN_PARAM_RE, match.group(2))
        if arguments is None:
            return None
        return [MarkupToolCall(match.group(1), _compact(arguments))]
    call = _json_object(stripped)  # Hermes JSON
    if call is None or not isinstance(call.get("name"), str) or not call["name"]:
        return None
    raw_arguments = call.get("arguments", call.get("parameters", {}))
    if isinstance(raw_arguments, str):  # some templates double-encode
        raw_arguments = _json_object(raw_arguments or "{}")
    if not isinstance(raw_arguments, dict):
        return None
    return [MarkupToolCall(call["name"], _compact(raw_arguments))]


@dataclass(frozen=True, slots=True)
class _Grammar:
    opening: str
    closing: str
    parse: _BodyParser
    # First non-blank characters a real body can start with; anything else means
    # the opening marker was prose (e.g. "wrap it in <tool_call> tags"), and the
    # scanner lets it through at once instead of buffering to the end of the stream.
    body_starts: str


_GRAMMARS: tuple[_Grammar, ...] = (
    _Grammar("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", _parse_kimi_calls, "<"),
    _Grammar("<|tool_call_begin|>", "<|tool_call_end|>", _parse_kimi_single, ""),
    _Grammar("<minimax:tool_call>", "</minimax:tool_call>", _parse_minimax, "<"),
    _Grammar("<tool_call>", "</tool_call>", _parse_tool_call_tag, "{<"),
)
_GRAMMAR_BY_OPENING = {grammar.opening: grammar for grammar in _GRAMMARS}
_OPENING_RE = re.compile("|".join(re.escape(grammar.opening) for grammar in _GRAMMARS))
_LONGEST_OPENING = max(len(grammar.opening) for grammar in _GRAMMARS)


def _held_suffix_length(text: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of an opening marker."""
    start = max(0, len(text) - _LONGEST_OPENING + 1)
    position = text.find("<", start)
    while position != -1:
        tail = text[position:]
        if any(grammar.opening.startswith(tail) for grammar in _GRAMMARS):
            return len(tail)
        position = text.find("<", position + 1)
    return 0


class _Output:
    """Collects output items, merging adjacent text and dropping empty text."""

    def __init__(self) -> None:
        self.items: list[str | MarkupToolCall] = []

    def text(self, text: str) -> None:
        if not text:
            return
        if self.items and isinstance(self.items[-1], str):
            self.items[-1] += text
        else:
            self.items.append(text)

    def calls(self, calls: list[MarkupToolCall]) -> None:
        self.items.extend(calls)


class ToolMarkupScanner:
    """Text in, text and `MarkupToolCall`s out, at any split of the input. No I/O.

    state: in text (`_grammar is None`; `_buffer` holds at most a possible marker
    prefix) or inside markup (`_grammar` set; `_buffer` holds the body so far).
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._grammar: _Grammar | None = None
        self._body_checked = False  # whether the body's first non-blank char was seen
        self._search_from = 0  # where to resume looking for the closing marker

    def feed(self, text: str) -> list[str | MarkupToolCall]:
        self._buffer += text
        return self._drain(final=False)

    def close(self) -> list[str | MarkupToolCall]:
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> list[str | MarkupToolCall]:
        out = _Output()
        while True:
            grammar = self._grammar
            if grammar is None:
                match = _OPENING_RE.search(self._buffer)
                if match is None:
                    keep = 0 if final else _held_suffix_length(self._buffer)
                    out.text(self._buffer[: len(self._buffer) - keep])
                    self._buffer = self._buffer[len(self._buffer) - keep :]
                    return out.items
                out.text(self._buffer[: match.start()])
                self._buffer = self._buffer[match.end() :]
                self._grammar = _GRAMMAR_BY_OPENING[match.group()]
                self._body_checked = not self._grammar.body_starts
                self._search_from = 0
                continue
            if not self._body_checked:
                body_start = self._buffer.lstrip()
                if body_start:
                    self._body_checked = True
                    if body_start[0] not in grammar.body_starts:
                        # Prose, not markup: pass the marker on and scan what follows.
                        out.text(grammar.opening)
                        self._grammar = None
                        continue
            end = self._buffer.find(grammar.closing, self._search_from)
            if end == -1:
                if final:  # unterminated: give it back as it came
                    out.text(grammar.opening + self._buffer)
                    self._buffer = ""
                    self._grammar = None
                    return out.items
                self._search_from = max(0, len(self._buffer) - len(grammar.closing) + 1)
                return out.items
            body = self._buffer[:end]
            self._buffer = self._buffer[end + len(grammar.closing) :]
            self._grammar = None
            calls = grammar.parse(body)
            if not calls:  # malformed, or empty markup: nothing to call, keep what was said
                out.text(grammar.opening + body + grammar.closing)
            else:
                out.calls(calls)


def extract_tool_markup(text: str) -> tuple[str, list[MarkupToolCall]]:
    """A whole `content` string -> (the text without the markup, the calls in order).

    The text is stripped only when markup was taken out of it (the gaps it leaves);
    text without markup comes back as it was, as the stream keeps it."""
    scanner = ToolMarkupScanner()
    items = scanner.feed(text) + scanner.close()
    calls = [item for item in items if isinstance(item, MarkupToolCall)]
    if not calls:
        return text, []
    plain = "".join(item for item in items if isinstance(item, str))
    return plain.strip(), calls


def infer_tool_name(arguments: str, tools: Sequence[Mapping[str, Any]]) -> str | None:
    """The one tool (Anthropic `{name, input_schema}`) whose schema fits `arguments`, or None.

    Fits: every required property is given and every given key is a declared
    property (any key, when the schema declares none). Ambiguity gives None: a guessed
    tool call is worse than none.
    """
    given = _json_object(arguments)
    if given is None:
        return None
    fitting = []
    for tool in tools:
        schema = tool.get("input_schema")
        name = tool.get("name")
        if not isinstance(schema, Mapping) or not isinstance(name, str):
            continue
        properties = schema.get("properties")
        declared = set(properties) if isinstance(properties, Mapping) else set()
        required = schema.get("required")
        needed = (
            {key for key in required if isinstance(key, str)}
            if isinstance(required, list)
            else set()
        )
        # A schema that declares no properties takes any keys (a bare `{"type":"object"}`).
        if needed <= given.keys() and (not declared or given.keys() <= declared):
            fitting.append(name)
    return fitting[0] if len(fitting) == 1 else None
