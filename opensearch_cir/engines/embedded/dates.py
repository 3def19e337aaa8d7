"""`date` fields as OpenSearch's default format reads them (`strict_date_optional_time||epoch_millis`):
ISO 8601 dates and date-times (UTC unless an offset is given) or epoch milliseconds, stored as
epoch milliseconds; date math (`now-1d/d`, `2024-01-01||+1M`) in range queries."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

from ...errors import EngineError

DEFAULT_FORMAT = "strict_date_optional_time||epoch_millis"
SUPPORTED_FORMATS = {"strict_date_optional_time", "date_optional_time", "epoch_millis", "strict_date", "date", "strict_date_time", "date_time"}
# OpenSearch's dynamic date detection (dynamic_date_formats, first one): strict_date_optional_time
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}(:\d{2}(:\d{2}([.,]\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$")
_MATH = re.compile(r"([+-])(\d+)([yMwdhHms])|/([yMwdhHms])")
_UNITS = {"y": "years", "M": "months", "w": "weeks", "d": "days", "h": "hours", "H": "hours", "m": "minutes", "s": "seconds"}


def check_format(path: str, fmt: str | None) -> None:
    for name in (fmt or DEFAULT_FORMAT).split("||"):
        if name not in SUPPORTED_FORMATS:
            from ...errors import UnsupportedQueryError

            raise UnsupportedQueryError(f"date format [{name}] on [{path}] is not supported by the embedded engine")


def looks_like_date(value: str) -> bool:
    """Dynamic date detection: would OpenSearch map this string as a `date`?"""
    return bool(_ISO_DATE.match(value))


def _parse_datetime(text: str) -> datetime:
    if not _ISO_DATE.match(text):
        raise ValueError(text)
    normalised = text.replace(",", ".")
    if normalised.endswith("Z"):
        normalised = normalised[:-1] + "+00:00"
    moment = datetime.fromisoformat(normalised if "T" in normalised else normalised + "T00:00:00")
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def to_millis(value, path: str = "") -> float:
    """Epoch milliseconds of a document or query value (ISO 8601 string or epoch millis)."""
    if isinstance(value, bool):
        raise EngineError(f"failed to parse date field [{value}] with format [{DEFAULT_FORMAT}]", 400, "mapper_parsing_exception")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(int(value))
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text) and not _ISO_DATE.match(text):
        return float(int(text))
    try:
        return _parse_datetime(text).timestamp() * 1000.0
    except ValueError:
        raise EngineError(f"failed to parse date field [{value}] with format [{DEFAULT_FORMAT}]" + (f" for [{path}]" if path else ""),
                          400, "mapper_parsing_exception") from None


def _round(moment: datetime, unit: str, up: bool) -> datetime:
    fields = ["year", "month", "day", "hour", "minute", "second"]
    keep = {"y": 1, "M": 2, "w": 3, "d": 3, "h": 4, "H": 4, "m": 5, "s": 6}[unit]
    floor = moment.replace(**{f: (1 if f in ("month", "day") else 0) for f in fields[keep:]}, microsecond=0)
    if unit == "w":
        floor -= timedelta(days=floor.weekday())
    if not up:
        return floor
    return _add(floor, 1, unit) - timedelta(milliseconds=1)


def _add(moment: datetime, amount: int, unit: str) -> datetime:
    if unit in ("y", "M"):
        months = moment.month - 1 + amount * (12 if unit == "y" else 1)
        return moment.replace(year=moment.year + months // 12, month=months % 12 + 1)
    return moment + timedelta(**{_UNITS[unit]: amount})


def bound_millis(value, *, round_up: bool, now: datetime | None = None) -> float:
    """A range bound in epoch millis, with date math; rounding (`/d`) goes to the end of the unit
    for `gt` / `lte` (round_up) and to its start for `gte` / `lt`, as OpenSearch does."""
    if not isinstance(value, str):
        return to_millis(value)
    text = value.strip()
    if text.startswith("now"):
        anchor, math_part = (now or datetime.now(timezone.utc)), text[3:]
    elif "||" in text:
        head, math_part = text.split("||", 1)
        anchor = datetime.fromtimestamp(to_millis(head) / 1000.0, tz=timezone.utc)
    else:
        return to_millis(text)
    position = 0
    for match in _MATH.finditer(math_part):
        if match.start() != position:
            break
        position = match.end()
        if match.group(4):
            anchor = _round(anchor, match.group(4), round_up)
        else:
            anchor = _add(anchor, int(match.group(2)) * (1 if match.group(1) == "+" else -1), match.group(3))
    if position != len(math_part):
        raise EngineError(f"failed to parse date math [{value}]", 400, "parse_exception")
    return anchor.timestamp() * 1000.0
