# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Time as payops reads and writes it, the one copy: ISO 8601 times from APIs, manifests and
Ansible, durations ("24h", "1h30m") and a window's ends as operators write them ("yesterday
18:00", "12h", an ISO time).

Standard library only, so that unit tests and the filter plugins can load this file on its own.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CLOCK = re.compile(r"^(?:(today|yesterday)\s+)?(\d{1,2}):(\d{2})$")
SINCE_FORMS = ("an ISO 8601 time (2024-05-01T18:00:00+02:00), HH:MM (the last such time), "
               "'yesterday 18:00', 'today 06:30', or a duration back from now (12h, 90m, 2d)")


def utcnow():
    return datetime.now(UTC)


def local_now():
    return datetime.now(UTC).astimezone()


def iso(moment, timespec="microseconds"):
    """moment in UTC as ISO 8601 with a Z: microseconds by default (manifests, verification records),
    timespec="seconds" where people read it (alerts, silences, metric windows)."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_seconds(moment):
    return iso(moment, timespec="seconds")


def _iso_text(text):
    # Go writes nanoseconds and Ansible's now() a space: Python reads at most microseconds and,
    # before 3.11, only a T.
    value = str(text).strip().replace(" ", "T").replace("Z", "+00:00")
    return re.sub(r"(\.\d{6})\d+", r"\1", value)


def parse_time(text):
    """An ISO 8601 time (an API's startsAt, a manifest's started_at, Ansible's now()) as an aware
    datetime; a time without a zone is UTC. None when empty or unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(_iso_text(text))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_time_strict(text):
    """As parse_time, in UTC, for times that must be there (a manifest's): ValueError when empty or
    unreadable."""
    moment = parse_time(text)
    if moment is None:
        raise ValueError(f"{text!r} is not an ISO 8601 time")
    return moment.astimezone(UTC)


def parse_duration(text):
    """Seconds in a Prometheus-style duration: 45s, 90m, 24h, 7d, 2w, 1h30m. ValueError otherwise."""
    value = str(text or "").strip().lower()
    if not value or _DURATION.sub("", value):
        raise ValueError(f"{text!r} is not a duration: use a number and a unit (s, m, h, d, w), e.g. 24h, 90m, 7d")
    seconds = sum(int(number) * _UNITS[unit] for number, unit in _DURATION.findall(value))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a duration longer than zero")
    return seconds


def parse_since(text, now=None, name="since", allow_future=False):
    """The start of a window as an aware datetime.

    Empty: 18:00 the day before (the overnight window of the morning checklist). HH:MM: the last
    time the clock showed it. 'yesterday HH:MM' / 'today HH:MM'. A duration: that long ago. Anything
    ISO 8601; a time without a zone is the controller's local time.
    """
    now = now or local_now()
    value = str(text or "").strip().lower()
    if not value:
        return (now - timedelta(days=1)).replace(hour=18, minute=0, second=0, microsecond=0)
    match = _CLOCK.match(value)
    if match:
        day, hour, minute = match.group(1), int(match.group(2)), int(match.group(3))
        if hour > 23 or minute > 59:
            raise ValueError(f"{name}={text!r}: {hour:02d}:{minute:02d} is not a time of day")
        moment = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if day == "yesterday" or (day is None and moment > now):
            moment -= timedelta(days=1)
        return moment
    if _DURATION.fullmatch(value) or (value and not _DURATION.sub("", value)):
        return now - timedelta(seconds=parse_duration(value))
    try:
        moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}={text!r} does not parse: use {SINCE_FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=now.tzinfo)
    if moment > now and not allow_future:
        raise ValueError(f"{name}={text!r} is in the future")
    return moment


def parse_window(since, until, now=None, default_since="1h"):
    """(start, end) of a window an operator wrote: each end in any form of parse_since (until may
    also be 'now', its default, or lie ahead); ValueError naming the variable when one does not
    parse or since is after until."""
    now = now or local_now()
    start = parse_since(since or default_since, now=now)
    value = str(until or "").strip().lower()
    end = now if value in ("", "now") else parse_since(until, now=now, name="until", allow_future=True)
    if start > end:
        raise ValueError(f"since={since!r} ({iso_seconds(start)}) is after until={until!r} ({iso_seconds(end)}): "
                         "the window must start before it ends")
    return start, end
