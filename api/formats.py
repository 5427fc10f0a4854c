"""How values leave the API: money as numbers rounded to 6 decimals, UTC times with Z, safe CSV."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterable, Iterator, Sequence

from flask import Response, stream_with_context
from marshmallow import Schema, ValidationError, fields, validates_schema

from ledger.errors import Invalid
from projections.wire import event_time, money, timestamp  # noqa: F401  (shared with the webhooks)

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NEEDS_QUOTES = re.compile(r'[,;\t"\r\n=+\-@]')


MIN_YEAR, MAX_YEAR = 1970, 9999  # every timestamp the API accepts; both backends read these back


def _out_of_range(field: str) -> Invalid:
    return Invalid("VALIDATION_FAILED", f"{field} must be between the years {MIN_YEAR} and {MAX_YEAR}", field=field)


class Moment(fields.AwareDateTime):
    """An RFC3339 timestamp with an offset, in the years 1970-9999 (422 otherwise)."""

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            year = moment.astimezone(timezone.utc).year
        except OverflowError:
            year = 0
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise ValidationError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
        return moment


class Day(fields.Date):
    """YYYY-MM-DD in the years 1970-9999 (422 otherwise)."""

    def _deserialize(self, value, attr, data, **kwargs):
        day = super()._deserialize(value, attr, data, **kwargs)
        if not MIN_YEAR <= day.year <= MAX_YEAR:
            raise ValidationError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
        return day


WINDOW_NAMES = (("start_date", "end_date"), ("start", "end"), ("startDate", "endDate"))
"""The three ways the seeds name a window's bounds; each endpoint takes one of them."""


class WindowNames(Schema):
    """Arguments of an endpoint that takes a window under the names `window`. A bound given
    under another endpoint's names answers 422 with the name to use: ignored as an unknown
    argument, it would get an answer for the default window instead."""

    window: tuple[str, str] = ("start", "end")

    @validates_schema(pass_original=True)
    def _other_window_names(self, _data, original, **_kwargs):
        for names in WINDOW_NAMES:
            for name, meant in zip(names, self.window):
                if names != self.window and name in original:
                    # keyed by the name given (a field_name would be shown under its data_key)
                    raise ValidationError({name: [f"this endpoint takes {meant}, not {name}"]})


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


DEFAULT_DAYS = 30  # "the last 30 days" is every usage answer's default window


def last_days(now: datetime, days: int = DEFAULT_DAYS) -> tuple[datetime, datetime]:
    """"The last N days", one definition for every usage answer, the dashboard's range
    buttons and the export's `days=N`: the N UTC calendar days ending with today, today
    included, i.e. [00:00Z of today − (N − 1), 00:00Z of tomorrow). Naive UTC."""
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc).replace(tzinfo=None)
    end = day_start(now.date()) + timedelta(days=1)
    return end - timedelta(days=days), end


def window_range(start: datetime, end: datetime) -> dict:
    """The exact window an answer covers, stated in every usage answer: `start` inclusive,
    `end` exclusive, RFC 3339 UTC with 6 fractional digits (one form, whatever the bounds)."""
    return {"start": event_time(start), "end": event_time(end)}


def parse_moment(value: str, field: str, *, end_of_day: bool = False) -> datetime:
    """RFC3339 timestamp or YYYY-MM-DD (a date as an end bound includes that whole day).
    Returns naive UTC, the form the read models store."""
    try:
        if len(value) == 10:
            start = day_start(date.fromisoformat(value))
            moment = start + timedelta(days=1) if end_of_day else start
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise Invalid("VALIDATION_FAILED", f"{field} needs a time zone offset (e.g. Z)", field=field)
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    except ValueError:
        raise Invalid("VALIDATION_FAILED", f"{field} must be an RFC3339 timestamp or YYYY-MM-DD", field=field) from None
    except OverflowError:
        raise _out_of_range(field) from None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise _out_of_range(field)
    return moment


def exact_decimal(nanos: int | None) -> str | None:
    """Nano-units as exact decimal text with 9 decimals and no exponent (1500000 →
    "0.001500000"), so that every row of a column has one type."""
    return None if nanos is None else format(Decimal(nanos).scaleb(-9), "f")


def csv_safe(value):
    """Text that a spreadsheet would run as a formula (after any leading blanks) is
    prefixed with an apostrophe."""
    if isinstance(value, str) and value.lstrip(" \t\r\n").startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_cell(value) -> str:
    """One CSV cell: quoted when it holds a separator (comma, semicolon, tab), a quote, a
    line break or a formula character (= + - @) anywhere, so that no spreadsheet splits
    it into cells or reads part of it as a formula."""
    value = csv_safe(value)
    text = "" if value is None else str(value)
    if _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(row: Sequence) -> str:
    return ",".join(csv_cell(v) for v in row) + "\r\n"


def csv_response(
    filename: str,
    header: Sequence[str],
    rows: Iterable[Sequence],
    row_cap: int | None = None,
    window: tuple[datetime, datetime] | None = None,
    headers: dict | None = None,
) -> Response:
    """Streamed CSV; `row_cap`: the most rows it holds (newest first), stated in X-Row-Cap;
    `window`: the exact range it covers, stated in X-Range-Start and X-Range-End (the
    `range` of the JSON answers: start inclusive, end exclusive)."""

    def generate() -> Iterator[str]:
        chunk = [csv_line(header)]
        for count, row in enumerate(rows, 1):
            chunk.append(csv_line(row))
            if count % 500 == 0:
                yield "".join(chunk)
                chunk = []
        yield "".join(chunk)

    response = Response(stream_with_context(generate()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f"attachment; filename={filename}"
    if row_cap is not None:
        response.headers["X-Row-Cap"] = str(row_cap)
    if window is not None:
        bounds = window_range(*window)
        response.headers["X-Range-Start"], response.headers["X-Range-End"] = bounds["start"], bounds["end"]
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
