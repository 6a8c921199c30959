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


# --- Report periods: calendar days and windows in the platform's time zone (issue 14) ------------
DEFAULT_TIMEZONE = "Africa/Johannesburg"
MAX_WINDOW_DAYS = 366
DAY_FORMS = "a date (2026-12-02), 'today' or 'yesterday'"


def zone(name):
    """The time zone named (payops_timezone); ValueError naming the variable when it is unknown."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(str(name or DEFAULT_TIMEZONE).strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"payops_timezone={name!r} is not a time zone: use an IANA name such as "
                         f"{DEFAULT_TIMEZONE}") from None


def _period(start, end, now, tz, label):
    return {
        "label": label, "timezone": str(tz.key),
        "start": iso_seconds(start), "end": iso_seconds(end),
        # Where the data stops: the end, or now for a period still running.
        "until": iso_seconds(min(end, now)), "complete": end <= now,
        # The same moments as Unix time, for Prometheus (a string's strftime('%s') would read it in
        # the controller's own zone).
        "start_epoch": int(start.timestamp()), "end_epoch": int(end.timestamp()),
        "until_epoch": int(min(end, now).timestamp()),
        "local_start": start.astimezone(tz).isoformat(timespec="seconds"),
        "local_end": end.astimezone(tz).isoformat(timespec="seconds"),
    }


def parse_day(text, timezone=DEFAULT_TIMEZONE, now=None, variable="day"):
    """The calendar day `text` names in `timezone` as a period {label, start, end, until, complete,
    ...} (start and end in UTC; a day is 23 or 25 hours when the clocks change). Empty is today.
    ValueError naming `variable` for a day that does not parse or has not begun."""
    from datetime import date, time

    tz = zone(timezone)
    now = (now or utcnow()).astimezone(tz)
    value = str(text or "").strip().lower()
    if value in ("", "today"):
        day = now.date()
    elif value == "yesterday":
        day = now.date() - timedelta(days=1)
    elif value == "tomorrow":
        day = now.date() + timedelta(days=1)
    else:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{variable}={text!r} is not a day: use {DAY_FORMS}") from None
    if day > now.date():
        raise ValueError(f"{variable}={text!r} is in the future (today is {now.date()} in {tz.key})")
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return _period(start.astimezone(UTC), end.astimezone(UTC), now.astimezone(UTC), tz, day.isoformat())


def _window_bound(text, tz, now, variable):
    """One bound of a window. A date is that day's midnight in tz (for until, the midnight after
    it); today, yesterday and tomorrow likewise; now is now; anything else is a form of parse_since
    (HH:MM, 'yesterday HH:MM', a duration ago such as 2h, ISO 8601 - without a zone, in tz)."""
    from datetime import date, time

    value = str(text).strip()
    offset = {"yesterday": -1, "today": 0, "tomorrow": 1}.get(value.lower())
    if value.lower() == "now":
        return now
    try:
        day = date.fromisoformat(value) if offset is None else now.date() + timedelta(days=offset)
    except ValueError:
        day = None
    if day is not None:
        moment = datetime.combine(day, time(0), tzinfo=tz)
        return moment + timedelta(days=1) if variable == "until" else moment
    try:
        return parse_since(value, now=now, name=variable, allow_future=True)
    except ValueError:
        raise ValueError(f"{variable}={text!r} does not parse: use a date (2026-12-02), an ISO 8601 time "
                         "(2026-12-02T18:00:00+02:00), HH:MM, a duration ago (2h, 30m), today, yesterday "
                         "or now") from None


def window_bounds(since, until="", timezone=DEFAULT_TIMEZONE, now=None, max_days=MAX_WINDOW_DAYS,
                  default_since=None):
    """(start, end) of the window [since, until) an operator wrote, as aware datetimes in `timezone`.
    Each bound in any form of _window_bound; until empty is now; since empty is default_since, or
    refused when there is none. ValueError naming the variable when since is in the future, until
    is not after since, or the window is longer than `max_days`."""
    tz = zone(timezone)
    now = (now or utcnow()).astimezone(tz)
    if not str(since or "").strip():
        if not default_since:
            raise ValueError("since is required: use a date (2026-12-02) or an ISO 8601 time")
        since = default_since
    start = _window_bound(since, tz, now, "since")
    if start > now:
        raise ValueError(f"since={since!r} is in the future (it is {now.isoformat(timespec='seconds')} in {tz.key})")
    end = _window_bound(until, tz, now, "until") if str(until or "").strip() else now
    if end <= start:
        raise ValueError(f"until={until!r} is not after since={since!r} ({iso_seconds(end)} against "
                         f"{iso_seconds(start)}): the window would be empty")
    if end - start > timedelta(days=max_days):
        raise ValueError(f"the window since={since!r} until={until or 'now'!r} is {(end - start).days} days long:"
                         f" at most {max_days} days are reported at once")
    return start, end


def parse_window(since, until="", timezone=DEFAULT_TIMEZONE, now=None, max_days=MAX_WINDOW_DAYS):
    """The window [since, until) as a period (window_bounds; since is required)."""
    tz = zone(timezone)
    start, end = window_bounds(since, until, timezone, now, max_days)
    now = (now or utcnow()).astimezone(tz)
    local = [moment.astimezone(tz).isoformat(timespec="minutes") for moment in (start, end)]
    label = f"{local[0]} to {local[1]}"
    return _period(start.astimezone(UTC), end.astimezone(UTC), now.astimezone(UTC), tz, label)
