"""What a settings value may be: the range of every number, the shape of names and URLs.

Rule: one table, `RANGE_BY_SETTING`, holds every number settings carry; the loader,
`validate_settings` and the settings dialog's spin boxes all read it. A number outside
its range (NaN and the infinities are outside every range) is refused with the key,
the value and the range. Names that reach log lines, URLs, file names or keychain
entries hold no control or invisible characters (C0, C1, DEL, ANSI escapes, line
separators) and have a bounded length.
"""

import urllib.parse
from dataclasses import dataclass

MAX_PROVIDER_NAME_CHARS = 64  # a provider's name: a model prefix and a keychain entry
MAX_MODEL_ID_CHARS = 256  # model ids, aliases, display names
MAX_HOST_CHARS = 253  # the longest DNS name
MAX_URL_CHARS = 2048
MAX_MESSAGE_CHARS = 600  # a settings error is one line a terminal shows whole
MAX_SHOWN_VALUE_CHARS = 80


@dataclass(frozen=True, slots=True)
class NumberRange:
    minimum: int | float
    maximum: int | float
    whole: bool = False  # a whole number (int); otherwise int or float
    unit: str = ""  # "seconds", "MB": in the error's words

    def words(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        unit = f" ({self.unit})" if self.unit else ""
        return f"{kind} from {_number_words(self.minimum)} to {_number_words(self.maximum)}{unit}"

    def problem(self, value: object) -> str | None:
        """None when `value` fits; else why not, with the value and the range."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be {self.words()}, got {shown(value)}"
        # NaN fails every comparison and the infinities pass no maximum: one test for all.
        if (self.whole and isinstance(value, float)) or not self.minimum <= value <= self.maximum:
            return f"must be {self.words()}, got {shown(value)}"
        return None


def _number_words(number: int | float) -> str:
    return str(int(number)) if number == int(number) else f"{number:g}"


SECONDS = "seconds"
# Every number in settings. Keys are Settings fields; `providers[].x` is a field of
# each provider, `capabilities.*.x` one of each model's capability overrides.
RANGE_BY_SETTING: dict[str, NumberRange] = {
    "port": NumberRange(0, 65535, whole=True),  # 0: the system picks a free port
    "max_request_mb": NumberRange(1, 1024, whole=True, unit="MB"),
    "max_concurrent_requests": NumberRange(1, 10_000, whole=True),
    "max_upstream_response_mb": NumberRange(1, 4096, whole=True, unit="MB"),
    "web_fetch_max_chars": NumberRange(1000, 10_000_000, whole=True, unit="characters"),
    "history_days": NumberRange(0, 3650, whole=True, unit="days"),  # 0: keep no history
    "history_max_mb": NumberRange(1, 100_000, whole=True, unit="MB"),
    "commit_window_s": NumberRange(0, 60, unit=SECONDS),
    "connect_timeout_s": NumberRange(0.1, 600, unit=SECONDS),
    "read_timeout_s": NumberRange(0.1, 86_400, unit=SECONDS),
    "upstream_deadline_s": NumberRange(0.1, 86_400, unit=SECONDS),
    "ping_interval_s": NumberRange(0.1, 600, unit=SECONDS),
    "shutdown_grace_s": NumberRange(0.1, 600, unit=SECONDS),
    "retry_max_attempts": NumberRange(1, 20, whole=True),
    "retry_max_wait_s": NumberRange(0, 600, unit=SECONDS),
    "queue_max_wait_s": NumberRange(0, 600, unit=SECONDS),
    "catalog_ttl_s": NumberRange(0.1, 604_800, unit=SECONDS),  # up to a week
    "providers[].requests_per_minute": NumberRange(1, 100_000, whole=True),
    "capabilities.*.max_output_tokens": NumberRange(1, 10_000_000, whole=True, unit="tokens"),
    "capabilities.*.context_window": NumberRange(1, 100_000_000, whole=True, unit="tokens"),
}
CAPABILITY_RANGE_PREFIX = "capabilities.*."


def shown(value: object) -> str:
    """`value` as an error shows it: repr, cut short (a 1 MB string, a 5000-digit number)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a number of {value.bit_length()} bits"  # str() of it may even refuse
    text = repr(value)
    if len(text) > MAX_SHOWN_VALUE_CHARS:
        text = text[: MAX_SHOWN_VALUE_CHARS - 3] + "..."
    return text


def one_line(text: str) -> str:
    """`text` with every control or invisible character escaped (`\\n`, `\\x1b`), so it
    stays one line and forges no other, and cut to MAX_MESSAGE_CHARS."""
    plain = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if len(plain) > MAX_MESSAGE_CHARS:
        plain = plain[: MAX_MESSAGE_CHARS - 3] + "..."
    return plain


def name_problem(text: str, *, longest: int) -> str | None:
    """None for a plain name; else why not. Plain: printable (no C0, C1, DEL, escape
    sequences, line separators or other invisible characters), at most `longest` long."""
    if len(text) > longest:
        return f"must be at most {longest} characters, got {len(text)}"
    if not text.isprintable():  # str.isprintable: False for Cc, Cf, Zl, Zp, Cs, Co, Cn
        return f"must hold no control or invisible characters, got {shown(text)}"
    return None


def provider_name_problem(name: str) -> str | None:
    """None for a usable provider name: it prefixes model names (`name/model`), names a
    keychain entry and shows in log lines."""
    if not name or "/" in name or name != name.strip():
        return "must be a non-empty name without '/' or surrounding spaces"
    return name_problem(name, longest=MAX_PROVIDER_NAME_CHARS)


def url_problem(url: str) -> str | None:
    """None for an http(s) URL that parses and names a host; else why not."""
    if not url.startswith(("http://", "https://")):
        return f"must start with http:// or https://, got {shown(url)}"
    if len(url) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters, got {len(url)}"
    if not url.isprintable() or " " in url:
        return f"must hold no spaces, control or invisible characters, got {shown(url)}"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError as exc:
        return f"is not a valid URL ({exc}), got {shown(url)}"
    if not parts.hostname:
        return f"must name a host, got {shown(url)}"
    return None
