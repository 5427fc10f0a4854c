"""How values leave the API: money as numbers rounded to 6 decimals, UTC times with Z, safe CSV."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterable, Iterator, Sequence

from flask import Response, stream_with_context

from ledger.errors import Invalid
from projections.wire import money, timestamp  # noqa: F401  (shared with the webhooks)

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def parse_moment(value: str, field: str, *, end_of_day: bool = False) -> datetime:
    """RFC3339 timestamp or YYYY-MM-DD (a date as an end bound includes that whole day).
    Returns naive UTC, the form the read models store."""
    try:
        if len(value) == 10:
            start = day_start(date.fromisoformat(value))
            return start + timedelta(days=1) if end_of_day else start
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("VALIDATION_FAILED", f"{field} must be an RFC3339 timestamp or YYYY-MM-DD", field=field) from None
    if moment.tzinfo is None:
        raise Invalid("VALIDATION_FAILED", f"{field} needs a time zone offset (e.g. Z)", field=field)
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def event_time(moment: datetime | None) -> str | None:
    """An event or record time: RFC 3339 UTC with exactly 6 fractional digits, in every row
    and answer (period bounds, `since` and dates keep their own forms)."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def exact_decimal(nanos: int | None) -> str | None:
    """Nano-units as exact decimal text with 9 decimals and no exponent (1500000 →
    "0.001500000"), so that every row of a column has one type."""
    return None if nanos is None else format(Decimal(nanos).scaleb(-9), "f")


def csv_safe(value):
    """Text that a spreadsheet would run as a formula is prefixed with a quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence]) -> Response:
    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for count, row in enumerate(rows, 1):
            writer.writerow([csv_safe(v) for v in row])
            if count % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    response = Response(stream_with_context(generate()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f"attachment; filename={filename}"
    return response
