"""Time expressions the operator may type: `now`, `today`, `yesterday`, a plain date, a relative offset, RFC 3339.

    now                         the command's clock (one instant for the whole invocation)
    today, yesterday            midnight UTC of that day
    2026-11-20                  a plain date: midnight UTC
    -2h, +30m, -1d, -1d12h      an offset from now (units s, m, h, d, w; combinable, largest first)
    2026-11-20T10:00:00Z        RFC 3339 with an offset (Z or +HH:MM)

A date-time without an offset stays an error: whether `10:00` meant UTC or the laptop's zone cannot be guessed
(a plain date is unambiguous enough: the grid and the windows are UTC). Like Airflow's CLI, which takes dates
and date-times for its run ranges, but stricter about zones.
"""

from __future__ import annotations

import re

import pendulum
from pendulum import DateTime

from shared.core.errors import WindowError
from shared.core.windows import parse_timestamp

ACCEPTED = "now, today, yesterday, a date (2026-11-20), an offset (-2h, -1d12h) or RFC 3339 (2026-11-20T10:00:00Z)"
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_OFFSET = re.compile(r"^([+-])((?:\d+[wdhms])+)$")
_PART = re.compile(r"(\d+)([wdhms])")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def is_offset(text: str) -> bool:
    """True for `-2h`-like text (argparse would otherwise take it for an option)."""
    return bool(_OFFSET.match(text.strip()))


def _offset(sign: str, body: str, now: DateTime) -> DateTime:
    parts = _PART.findall(body)
    units = [unit for _, unit in parts]
    order = list(_UNITS)
    if len(set(units)) != len(units) or units != sorted(units, key=order.index):
        raise ValueError(f"repeats a unit or lists them out of order (largest first: {''.join(order)})")
    delta = pendulum.duration(**{_UNITS[unit]: int(n) for n, unit in parts})
    return now - delta if sign == "-" else now + delta


def parse_time(text: str, now: DateTime) -> DateTime:
    """The instant `text` names, in UTC; `now` anchors `now`, `today` and offsets. Raises ValueError saying
    what was given and what is accepted."""
    word = text.strip().lower()
    if word == "now":
        return now.in_timezone("UTC")
    if word in ("today", "yesterday"):
        day = now.in_timezone("UTC").start_of("day")
        return day if word == "today" else day.subtract(days=1)
    offset = _OFFSET.match(word)
    if offset:
        try:
            return _offset(offset.group(1), offset.group(2), now).in_timezone("UTC")
        except ValueError as e:
            raise ValueError(f"{text!r} {e}") from e
    if _DATE.match(word):
        try:
            return pendulum.datetime(*(int(p) for p in word.split("-")), tz="UTC")
        except ValueError as e:
            raise ValueError(f"{text!r} is not a calendar date ({e})") from e
    try:
        return parse_timestamp(text, "timestamp").in_timezone("UTC")
    except WindowError as e:
        raise ValueError(f"{text!r} {e.problem}; accepted: {ACCEPTED}") from e
