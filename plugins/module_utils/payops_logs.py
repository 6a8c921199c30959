# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Log lines as payops reads them, the one copy: betaskill.payops.log_search runs this on each host
(so that filtering happens where the logs are) and the evidence packs take its output.

A line is a JSON object (the edge's payops_json access log, the app's JSON lines, journald's
``-o json``) or plain text (nginx's error log, syslog, PostgreSQL, Prometheus' logfmt, a
supervisor). Each gets a time, a level and, where the line says so, a request id, route, path,
status and payment reference. A plain line without a time of its own (a traceback's) takes the
time of the line before it. Rotated files (``access.log.1``, ``app.log.2.gz``,
``syslog-20261203.gz``) are read with the file they were rotated from, gzip transparently.

Standard library only, so that unit tests load it on its own.
"""

from __future__ import annotations

import glob
import gzip
import heapq
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVEL_RANK = {name: rank for rank, name in enumerate(LEVELS)}
_LEVEL_WORDS = {
    "debug": "debug", "trace": "debug", "info": "info", "notice": "info", "log": "info",
    "warn": "warning", "warning": "warning", "error": "error", "err": "error",
    "crit": "critical", "critical": "critical", "fatal": "critical", "panic": "critical",
    "alert": "critical", "emerg": "critical",
}
# journald's PRIORITY (syslog severities).
_PRIORITY_LEVELS = {0: "critical", 1: "critical", 2: "critical", 3: "error", 4: "warning", 5: "info",
                    6: "info", 7: "debug"}

# Times in plain lines: ISO 8601 or close to it (Python's logging writes a comma, nginx slashes,
# PostgreSQL a zone name), near the start of the line; or syslog's "Dec  3 12:45:52".
_PLAIN_TIME = re.compile(
    r"(?P<date>\d{4}[-/]\d{2}[-/]\d{2})[T ](?P<clock>\d{2}:\d{2}:\d{2})(?P<fraction>[.,]\d{1,9})?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2}| UTC| GMT)?")
_SYSLOG_TIME = re.compile(r"^(?P<month>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<clock>\d{2}:\d{2}:\d{2})\b")
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_PLAIN_LEVEL = re.compile(
    r"(?:\blevel=|\[|\b)(?P<word>debug|trace|info|notice|warn(?:ing)?|error|err|crit(?:ical)?|fatal|panic|"
    r"alert|emerg)(?:\]|:|\b)", re.IGNORECASE)
# How far into a plain line its time and level are looked for.
_HEAD = 96
_ROTATED = re.compile(r"^(?:\.\d+|-\d{8}(?:\d{2})?)(?:\.gz)?$|^\.gz$")
_TIME_KEYS = ("time", "timestamp", "@timestamp", "ts", "time_iso8601")


@dataclass
class LogLine:
    time: float | None  # epoch seconds; None when neither the line nor one before it has a time
    text: str
    source: str
    file: str
    level: str = "info"
    fields: dict = field(default_factory=dict)  # request_id, route, path, status, payment_reference, ...


@dataclass
class Filters:
    since: float | None = None
    until: float | None = None
    level: str | None = None  # the lowest level shown
    route: str | None = None
    request_id: str | None = None
    payment_reference: str | None = None
    paylink_id: str | None = None
    grep: re.Pattern | None = None
    status: tuple = ()  # HTTP statuses; a line with none never matches when given
    events: tuple = ()  # the app's "event" field values (webhook_signature_invalid, ...)
    _route_re: re.Pattern | None = None

    def __post_init__(self):
        if self.route:
            self._route_re = route_pattern(self.route)

    def needles(self):
        """Strings a matching line must contain: checked before anything is parsed."""
        return [value for value in (self.request_id, self.payment_reference, self.paylink_id) if value]


def route_pattern(route):
    """A route as the app's router writes it (/api/payments/{id}) as a regex over paths."""
    parts = re.split(r"(\{\w+(?::[^}]+)?\})", route)
    regex = "".join(
        (f"(?:{part[1:-1].split(':', 1)[1]})" if ":" in part else "[^/]+") if part.startswith("{") else re.escape(part)
        for part in parts)
    return re.compile(f"^{regex}$")


def level_at_least(level, lowest):
    return _LEVEL_RANK.get(level, 1) >= _LEVEL_RANK.get(lowest, 0)


def parse_iso(text):
    """An ISO 8601 time (Z, an offset, or none: local time) as epoch seconds, or None."""
    if not isinstance(text, str) or len(text) < 19:
        return None
    match = _PLAIN_TIME.match(text)
    if not match:
        return None
    return _epoch(match)


def _epoch(match, now=None):
    date = match.group("date").replace("/", "-")
    fraction = (match.group("fraction") or "")[1:7]
    zone = (match.group("zone") or "").strip()
    try:
        fraction_text = f".{fraction.ljust(6, '0')}" if fraction else ""
        moment = datetime.fromisoformat(f"{date}T{match.group('clock')}{fraction_text}")
    except ValueError:
        return None
    if zone in ("Z", "UTC", "GMT"):
        moment = moment.replace(tzinfo=UTC)
    elif zone:
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        return moment.replace(tzinfo=UTC).timestamp() - offset
    else:
        moment = moment.astimezone()  # the host's local time: this runs on the host that wrote it
    return moment.timestamp()


def plain_time(text, now=None):
    head = text[:_HEAD]
    match = _PLAIN_TIME.search(head)
    if match:
        return _epoch(match)
    match = _SYSLOG_TIME.match(head)
    if match and match.group("month") in _MONTHS:
        now = now or datetime.now().astimezone()
        try:
            moment = datetime(now.year, _MONTHS[match.group("month")], int(match.group("day")),
                              *map(int, match.group("clock").split(":"))).astimezone()
        except ValueError:
            return None
        if moment > now.replace(microsecond=0) and moment.month > now.month:  # last year's December
            moment = moment.replace(year=now.year - 1)
        return moment.timestamp()
    return None


def plain_level(text):
    match = _PLAIN_LEVEL.search(text[:_HEAD + 64])
    return _LEVEL_WORDS.get(match.group("word").lower(), "info") if match else "info"


def _status_level(status):
    if isinstance(status, int):
        if status >= 500:
            return "error"
        if status >= 400:
            return "warning"
    return "info"


def parse_json_line(data, text, source, file):
    """A JSON object from a file (the edge's or the app's) as a LogLine; journald's has its own."""
    moment = None
    if isinstance(data.get("msec"), (int, float)):
        moment = float(data["msec"])
    else:
        for key in _TIME_KEYS:
            if key in data:
                value = data[key]
                moment = float(value) if isinstance(value, (int, float)) else parse_iso(value)
                if moment is not None:
                    break
    status = data.get("status")
    status = int(status) if isinstance(status, (int, str)) and str(status).isdigit() else None
    level = data.get("level") or data.get("levelname") or data.get("severity")
    level = _LEVEL_WORDS.get(str(level).lower(), "info") if level else _status_level(status)
    fields = {key: data[key] for key in ("request_id", "route", "path", "method", "event", "payment_reference",
                                         "paylink_id", "duration_ms", "db_ms", "gateway_ms", "request_time",
                                         "upstream_response_time", "remote_addr")
              if data.get(key) not in (None, "")}
    if status is not None:
        fields["status"] = status
    return LogLine(moment, text, source, file, level, fields)


def parse_journal_entry(data, source):
    try:
        moment = int(data.get("__REALTIME_TIMESTAMP")) / 1e6
    except (TypeError, ValueError):
        moment = None
    message = data.get("MESSAGE")
    if isinstance(message, list):  # journald gives bytes as a list of numbers
        message = bytes(item for item in message if isinstance(item, int)).decode("utf-8", "replace")
    message = str(message or "")
    try:
        level = _PRIORITY_LEVELS.get(int(data.get("PRIORITY", 6)), "info")
    except (TypeError, ValueError):
        level = "info"
    # systemd's own lines about a unit ("Started nginx.service") come from init.scope with UNIT set.
    unit = data.get("UNIT") or data.get("_SYSTEMD_UNIT") or data.get("SYSLOG_IDENTIFIER") or "journal"
    if message.startswith("{"):
        try:
            inner = json.loads(message)
        except ValueError:
            inner = None
        if isinstance(inner, dict):
            line = parse_json_line(inner, message, source, f"journal:{unit}")
            line.time = line.time if line.time is not None else moment
            return line
    return LogLine(moment, f"{unit}: {message}", source, f"journal:{unit}", level, {})


def parse_line(text, source, file, previous_time=None):
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            line = parse_json_line(data, text, source, file)
            if line.time is None:
                line.time = previous_time
            return line
    moment = plain_time(text)
    return LogLine(moment if moment is not None else previous_time, text, source, file, plain_level(text), {})


def matches(line, filters):
    """Whether a parsed line passes every filter (the needles were checked on the raw text)."""
    if filters.since is not None or filters.until is not None:
        if line.time is None:
            return False
        if filters.since is not None and line.time < filters.since:
            return False
        if filters.until is not None and line.time > filters.until:
            return False
    if filters.level and not level_at_least(line.level, filters.level):
        return False
    fields = line.fields
    if filters.route:
        route, path = fields.get("route"), fields.get("path")
        if route != filters.route and not (isinstance(path, str) and filters._route_re.match(path)):
            return False
    if filters.request_id and fields.get("request_id", filters.request_id) != filters.request_id:
        return False
    if filters.status and fields.get("status") not in filters.status:
        return False
    return not (filters.events and fields.get("event") not in filters.events)


def rotated_files(path):
    """The file at path and the files rotated from it, oldest first (by modification time)."""
    found = set()
    for candidate in glob.glob(path):
        if os.path.isfile(candidate):
            found.add(candidate)
        for sibling in glob.glob(glob.escape(candidate) + "*"):
            suffix = sibling[len(candidate):]
            if suffix and _ROTATED.match(suffix) and os.path.isfile(sibling):
                found.add(sibling)
    return sorted(found, key=lambda name: (os.path.getmtime(name), name))


def open_text(path):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


class Collector:
    """Keeps at most `limit` matching lines (the newest, or the oldest), counting the rest."""

    def __init__(self, limit, keep="newest"):
        self.limit = limit
        self.keep = keep
        self.matched = 0
        self._heap = []
        self._order = itertools.count()

    def add(self, line):
        self.matched += 1
        key = line.time if line.time is not None else float("-inf")
        if self.keep == "oldest":
            key = -key
        entry = (key, next(self._order), line)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, entry)
        elif self.limit > 0 and entry[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, entry)

    def lines(self):
        kept = [entry[2] for entry in self._heap]
        kept.sort(key=lambda line: (line.time if line.time is not None else float("-inf")))
        return kept

    @property
    def omitted(self):
        return self.matched - len(self._heap)


def scan_lines(lines, source, file, filters, collector, grep_raw=True):
    """Filter an iterable of raw lines from one file into the collector; returns how many were read."""
    needles = filters.needles()
    previous_time = None
    count = 0
    for raw in lines:
        count += 1
        text = raw.rstrip("\n")
        if not text:
            continue
        # Cheap checks first: most lines of a big file fail a needle or the grep.
        if needles and not all(needle in text for needle in needles):
            # A plain line's time carries over to the next; skipping it costs a little accuracy only
            # for continuation lines after a skipped line, which have no needle either.
            continue
        if filters.grep is not None and grep_raw and not filters.grep.search(text):
            continue
        line = parse_line(text, source, file, previous_time)
        previous_time = line.time
        if matches(line, filters):
            collector.add(line)
    return count


def file_may_hold(path, filters):
    """False when the file was last written before the window starts: none of its lines is in it."""
    if filters.since is None:
        return True
    try:
        return os.path.getmtime(path) >= filters.since
    except OSError:
        return False
