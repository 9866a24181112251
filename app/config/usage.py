"""Usage figures from the request history: per day, per model/provider/session/project,
latency percentiles, errors by kind, and CSV.

Pure data in, data out (no Qt, no aiohttp): `nimbridge usage` and the usage view
both call `usage_report()` on `HistoryEntry` rows (`entries_since()` reads them).
Days are the computer's local days, as a user counts "today".
"""

import csv
import datetime
import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from app.config.history import HistoryEntry

Grouping = Literal["model", "provider", "session", "project"]
GROUPINGS: tuple[Grouping, ...] = ("model", "provider", "session", "project")
PERIODS: tuple[tuple[str, int], ...] = (("Today", 1), ("7 days", 7), ("30 days", 30))
PERCENTILES = (50, 90, 99)

NO_SESSION = "(no session id)"
NO_PROJECT = "(not launched by NimBridge)"
NO_MODEL = "(no model)"
NO_PROVIDER = "(no provider)"


def local_day(started_at: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(started_at).date()


def period_start(days: int, today: datetime.date) -> float:
    """Local midnight `days - 1` days before `today` (days=1: today's midnight)."""
    first = today - datetime.timedelta(days=max(1, days) - 1)
    return datetime.datetime.combine(first, datetime.time.min).timestamp()


def failed(entry: HistoryEntry) -> bool:
    """As the request table and the tray count a failure (app/service.py's `_failed`)."""
    return entry.status is None or entry.status >= 400 or bool(entry.error)


def error_kind(entry: HistoryEntry) -> str:
    """Anthropic's error type when the server named one, else the HTTP status."""
    if entry.error_type:
        return entry.error_type
    if entry.status is None:
        return "no answer"
    if entry.status == 499:
        return "cancelled by the client"
    return f"HTTP {entry.status}"


def group_key(entry: HistoryEntry, by: Grouping) -> str:
    if by == "model":
        if entry.upstream_model:
            return (
                f"{entry.upstream_model}@{entry.provider}"
                if entry.provider
                else entry.upstream_model
            )
        return entry.client_model or NO_MODEL
    if by == "provider":
        return entry.provider or NO_PROVIDER
    if by == "session":
        return entry.session_id or NO_SESSION
    return entry.project or NO_PROJECT


@dataclass(slots=True)
class Totals:
    requests: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    first_at: float | None = None
    last_at: float | None = None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, entry: HistoryEntry) -> None:
        self.requests += 1
        self.failed += failed(entry)
        self.input_tokens += entry.input_tokens or 0
        self.output_tokens += entry.output_tokens or 0
        self.cached_tokens += entry.cached_tokens or 0
        at = entry.started_at
        self.first_at = at if self.first_at is None else min(at, self.first_at)
        self.last_at = at if self.last_at is None else max(at, self.last_at)


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    values: tuple[float, ...]  # one per PERCENTILES, milliseconds


def percentiles(samples: Iterable[float | None]) -> Percentiles | None:
    """Nearest-rank percentiles (a value that occurred); None without samples."""
    ordered = sorted(s for s in samples if s is not None)
    if not ordered:
        return None
    picked = tuple(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] for p in PERCENTILES)
    return Percentiles(len(ordered), picked)


@dataclass(frozen=True, slots=True)
class UsageReport:
    days: tuple[datetime.date, ...]  # every day of the period, oldest first
    by: Grouping
    total: Totals
    per_day: dict[datetime.date, dict[str, Totals]]  # day -> group -> totals
    groups: list[tuple[str, Totals]]  # most tokens first
    ttfb: Percentiles | None
    duration: Percentiles | None
    errors: list[tuple[str, int]]  # kind, count; most first
    keys: list[str] = field(default_factory=list)  # the groups' names, most tokens first

    @property
    def error_rate(self) -> float:
        return self.total.failed / self.total.requests if self.total.requests else 0.0


def usage_report(
    entries: Iterable[HistoryEntry],
    *,
    days: int,
    today: datetime.date,
    by: Grouping = "model",
    day_of: Callable[[float], datetime.date] = local_day,
) -> UsageReport:
    """The figures of the `days` ending `today` (entries outside are left out)."""
    span = tuple(today - datetime.timedelta(days=n) for n in range(max(1, days) - 1, -1, -1))
    per_day: dict[datetime.date, dict[str, Totals]] = {day: {} for day in span}
    groups: dict[str, Totals] = {}
    errors: dict[str, int] = {}
    total = Totals()
    kept: list[HistoryEntry] = []
    for entry in entries:
        day = day_of(entry.started_at)
        if day not in per_day:
            continue
        kept.append(entry)
        key = group_key(entry, by)
        total.add(entry)
        groups.setdefault(key, Totals()).add(entry)
        per_day[day].setdefault(key, Totals()).add(entry)
        if failed(entry):
            kind = error_kind(entry)
            errors[kind] = errors.get(kind, 0) + 1
    ranked = sorted(groups.items(), key=lambda item: (-item[1].tokens, -item[1].requests, item[0]))
    return UsageReport(
        days=span,
        by=by,
        total=total,
        per_day=per_day,
        groups=ranked,
        ttfb=percentiles(e.ttfb_ms for e in kept),
        duration=percentiles(e.duration_ms for e in kept),
        errors=sorted(errors.items(), key=lambda item: (-item[1], item[0])),
        keys=[name for name, _ in ranked],
    )


CSV_COLUMNS = ("day", "requests", "failed", "input_tokens", "output_tokens", "cached_tokens")


def usage_csv(report: UsageReport) -> str:
    """One row per day and group (the stacked bars' figures), days with no request left out."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((CSV_COLUMNS[0], report.by, *CSV_COLUMNS[1:]))
    for day in report.days:
        for key in report.keys:
            totals = report.per_day[day].get(key)
            if totals is not None:
                writer.writerow(
                    (
                        day.isoformat(),
                        key,
                        totals.requests,
                        totals.failed,
                        totals.input_tokens,
                        totals.output_tokens,
                        totals.cached_tokens,
                    )
                )
    return out.getvalue()


def short_count(value: float) -> str:
    """12345 -> 12.3k, 2500000 -> 2.5M: what fits a label."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}".replace(".0", "")
    return f"{value:.0f}"


def milliseconds(value: float) -> str:
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def table_lines(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """An aligned text table: the first column left, the others right."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(header), *(line(r) for r in rows)]


def report_text(report: UsageReport, *, title: str) -> str:
    """What `nimbridge usage` prints: the same figures as the usage view."""
    total = report.total
    lines = [
        f"{title}: {total.requests} requests ({total.failed} failed, "
        f"{report.error_rate:.1%}), {total.input_tokens:,} tokens in, "
        f"{total.output_tokens:,} out, {total.cached_tokens:,} cached",
        "",
    ]
    if not total.requests:
        return "\n".join([*lines[:1], "No requests in this period."]) + "\n"
    rows = [
        (
            name,
            str(t.requests),
            str(t.failed),
            f"{t.input_tokens:,}",
            f"{t.output_tokens:,}",
            f"{t.cached_tokens:,}",
        )
        for name, t in report.groups
    ]
    lines += table_lines(
        (report.by, "requests", "failed", "tokens in", "tokens out", "cached"), rows
    )
    day_rows = []
    for day in report.days:
        day_totals = Totals()
        for t in report.per_day[day].values():
            day_totals.requests += t.requests
            day_totals.failed += t.failed
            day_totals.input_tokens += t.input_tokens
            day_totals.output_tokens += t.output_tokens
        day_rows.append(
            (
                day.isoformat(),
                str(day_totals.requests),
                str(day_totals.failed),
                f"{day_totals.input_tokens:,}",
                f"{day_totals.output_tokens:,}",
            )
        )
    lines += ["", *table_lines(("day", "requests", "failed", "tokens in", "tokens out"), day_rows)]
    latency_rows = [
        (name, str(p.count), *(milliseconds(v) for v in p.values))
        for name, p in (("time to first byte", report.ttfb), ("duration", report.duration))
        if p is not None
    ]
    lines += [
        "",
        *table_lines(("latency", "requests", *(f"p{p}" for p in PERCENTILES)), latency_rows),
    ]
    if report.errors:
        error_rows = [
            (kind, str(count), f"{count / total.requests:.1%}") for kind, count in report.errors
        ]
        lines += ["", *table_lines(("error", "requests", "share of all"), error_rows)]
    return "\n".join(lines) + "\n"
