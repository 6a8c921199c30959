# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the health, metrics and alert modules share: time windows as operators write them
("24h", "yesterday 18:00", an ISO time), percentiles, and JSON over HTTP to Prometheus and
Alertmanager with environment-variable defaults (PROMETHEUS_URL, ALERTMANAGER_URL).

The time and percentile functions use the standard library only, so that unit tests can load this
file on its own.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, UTC

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CLOCK = re.compile(r"^(?:(today|yesterday)\s+)?(\d{1,2}):(\d{2})$")
SINCE_FORMS = ("an ISO 8601 time (2024-05-01T18:00:00+02:00), HH:MM (the last such time), "
               "'yesterday 18:00', 'today 06:30', or a duration back from now (12h, 90m, 2d)")


def parse_duration(text):
    """Seconds in a Prometheus-style duration: 45s, 90m, 24h, 7d, 2w, 1h30m. ValueError otherwise."""
    value = str(text or "").strip().lower()
    if not value or _DURATION.sub("", value):
        raise ValueError(f"{text!r} is not a duration: use a number and a unit (s, m, h, d, w), e.g. 24h, 90m, 7d")
    seconds = sum(int(number) * _UNITS[unit] for number, unit in _DURATION.findall(value))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a duration longer than zero")
    return seconds


def local_now():
    return datetime.now(UTC).astimezone()


def parse_since(text, now=None):
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
            raise ValueError(f"since={text!r}: {hour:02d}:{minute:02d} is not a time of day")
        moment = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if day == "yesterday" or (day is None and moment > now):
            moment -= timedelta(days=1)
        return moment
    if _DURATION.fullmatch(value) or (value and not _DURATION.sub("", value)):
        return now - timedelta(seconds=parse_duration(value))
    try:
        moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since={text!r} does not parse: use {SINCE_FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=now.tzinfo)
    if moment > now:
        raise ValueError(f"since={text!r} is in the future")
    return moment


def parse_time(text):
    """An ISO 8601 time from an API (Alertmanager's startsAt, ...) as an aware datetime, or None."""
    if not text:
        return None
    value = str(text).strip().replace("Z", "+00:00")
    # Go writes nanoseconds; Python reads at most microseconds.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment):
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def percentile(values, fraction):
    """The fraction-quantile with linear interpolation between ranks (PostgreSQL's percentile_cont)."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= fraction <= 1:
        raise ValueError("a percentile's fraction is between 0 and 1")
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- HTTP to Prometheus and Alertmanager ------------------------------------------------------------

class MonitoringError(Exception):
    """No usable answer: the message names the URL and the reason."""


def prometheus_argument_spec():
    from ansible.module_utils.basic import env_fallback

    return dict(
        prometheus_url=dict(type="str", fallback=(env_fallback, ["PROMETHEUS_URL"]), required=True),
        timeout=dict(type="float", default=10.0),
        validate_certs=dict(type="bool", default=True),
    )


def alertmanager_argument_spec():
    from ansible.module_utils.basic import env_fallback

    return dict(
        alertmanager_url=dict(type="str", fallback=(env_fallback, ["ALERTMANAGER_URL"]), required=True),
        timeout=dict(type="float", default=10.0),
        validate_certs=dict(type="bool", default=True),
    )


def http_json(url, method="GET", payload=None, timeout=10.0, validate_certs=True):
    """(HTTP status, parsed JSON or None). Raises MonitoringError when there is no answer at all."""
    from ansible.module_utils.urls import open_url

    try:
        from urllib.error import HTTPError, URLError
    except ImportError:  # pragma: no cover
        raise
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        response = open_url(url, method=method, data=data, headers=headers, timeout=timeout,
                            validate_certs=validate_certs)
        status, body = response.getcode(), response.read()
    except HTTPError as exc:
        status, body = exc.code, exc.read()
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MonitoringError(f"no answer from {url.split('?')[0]}: {reason}") from None
    try:
        parsed = json.loads(body.decode("utf-8")) if body else None
    except ValueError:
        parsed = None
    return status, parsed


def prometheus_query(base, path, params, timeout=10.0, validate_certs=True):
    """The `data` of a Prometheus API answer, or MonitoringError with Prometheus' own error."""
    from urllib.parse import urlencode

    url = f"{base.rstrip('/')}/api/v1/{path}?{urlencode(params)}"
    status, answer = http_json(url, timeout=timeout, validate_certs=validate_certs)
    if not isinstance(answer, dict) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, dict) else None
        raise MonitoringError(f"Prometheus answered HTTP {status} to {path}: {error or 'no JSON'}")
    return answer["data"]
