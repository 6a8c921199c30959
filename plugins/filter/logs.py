"""The controller's half of the logs:* procedures: the operator's request checked (window, hosts,
route) with every problem named by its variable, and each host's matches (betaskill.payops.log_search)
merged in time order with the host named, each host's clock offset and a clear "N more" line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ansible_collections.betaskill.payops.plugins.module_utils.payops_mask import mask_text
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import (
    DEFAULT_TIMEZONE,
    iso,
    window_bounds,
)

LEVELS = ("debug", "info", "warning", "error", "critical")


def _names(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def log_request(params: dict[str, Any], groups: dict[str, list[str]], routes: list[str],
                default_hosts: list[str], now: Any = None, timezone: str | None = None) -> dict[str, Any]:
    """{problems: [...], window: {since, until, text}, hosts: [...], route}.

    params: the procedure's variables (since, until, host, route, level, limit). groups: the
    inventory's groups (Ansible's `groups`). routes: the app's known routes. default_hosts: the
    groups or hosts searched when `host` is not given. timezone: payops_timezone, in which dates and
    HH:MM of the window are read."""
    problems: list[str] = []
    window: dict[str, Any] = {}
    try:
        start, end = window_bounds(params.get("since"), params.get("until"),
                                   timezone or DEFAULT_TIMEZONE, now=now, default_since="1h")
        window = {"since": iso(start, "milliseconds"), "until": iso(end, "milliseconds"),
                  "text": f"{iso(start, 'seconds')} to {iso(end, 'seconds')}"}
    except ValueError as exc:
        problems.append(str(exc))
    known_hosts = sorted(groups.get("all", []))
    known_groups = sorted(name for name in groups if name not in ("all", "ungrouped"))
    hosts: list[str] = []
    for name in _names(params.get("host")) or _names(default_hosts):
        if name in groups and name != "ungrouped":
            hosts.extend(host for host in groups[name] if host not in hosts)
        elif name in known_hosts:
            if name not in hosts:
                hosts.append(name)
        else:
            problems.append(f"host={name!r} is neither a host nor a group of this inventory: hosts "
                            f"{', '.join(known_hosts)}; groups {', '.join(known_groups)}")
    route = params.get("route")
    if route not in (None, "") and route not in routes:
        problems.append(f"route={route!r} is not a route of the app: use one of {', '.join(routes)}")
    level = params.get("level")
    if level not in (None, "") and level not in LEVELS:
        problems.append(f"level={level!r} must be one of {', '.join(LEVELS)}")
    limit = params.get("limit")
    if limit not in (None, ""):
        try:
            if int(limit) < 1:
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"limit={limit!r} must be a whole number of lines, 1 or more")
    named = ("level", "route", "request_id", "payment_reference", "paylink_id", "grep")
    shown = [f"{name}={params[name]}" for name in named if params.get(name) not in (None, "")]
    return {"problems": problems, "window": window, "hosts": hosts, "route": route or None,
            "filters_text": ", ".join(shown)}


def _combined(results: Any) -> dict[str, dict[str, Any]]:
    """{host: one result}: results is {host: result} or [[host, result], ...] from several searches
    (logs:payment-processing searches twice), a host's searches added together."""
    pairs = list(results.items()) if isinstance(results, dict) else [tuple(pair) for pair in results]
    combined: dict[str, dict[str, Any]] = {}
    for host, result in pairs:
        result = result or {}
        if host not in combined:
            combined[host] = dict(result)
            continue
        into = combined[host]
        if result.get("failed") or "lines" not in result:
            into.update({"failed": True, "msg": result.get("msg")})
            continue
        into["lines"] = list(into.get("lines") or []) + list(result["lines"])
        for key in ("matched", "omitted", "bytes_returned"):
            into[key] = int(into.get(key) or 0) + int(result.get(key) or 0)
        into["files"] = list(into.get("files") or []) + list(result.get("files") or [])
        masked = dict(into.get("masked") or {})
        for kind, count in (result.get("masked") or {}).items():
            masked[kind] = masked.get(kind, 0) + int(count)
        into["masked"] = masked
        into["clock"] = result.get("clock") or into.get("clock")
    return combined


def log_rows_as_lines(rows: list[dict[str, Any]], host: str, source: str,
                      drop: list[str] | None = None) -> list[dict[str, Any]]:
    """Database rows (each with an epoch column) as log lines of `host`, their text masked JSON;
    the columns in `drop` (a window count) are left out."""
    lines = []
    left_out = {"epoch", *(drop or [])}
    for row in rows or []:
        epoch = row.get("epoch")
        # A row may carry its own source (a timeline of several tables) and its record as one column.
        record = row["record"] if isinstance(row.get("record"), dict) else {
            key: value for key, value in row.items() if key not in left_out | {"source"}}
        text, counts = mask_text(json.dumps(record, default=str, separators=(",", ":")))
        moment = float(epoch) if epoch not in (None, "") else None
        lines.append({"time": iso(datetime.fromtimestamp(moment, UTC), "milliseconds") if moment else None,
                      "epoch": moment, "source": row.get("source") or source,
                      "file": f"database:{row.get('source') or source}", "level": "info",
                      "text": text, "host": host, "masked": counts})
    return lines


def clock_offset(clock: dict[str, Any], received_epoch: float | None) -> tuple[float | None, float | None]:
    """(offset, uncertainty) of a host's clock from the controller's, in seconds: the host read its
    clock between the controller sending the search (clock.controller_epoch) and receiving the
    result (received_epoch), so the offset is taken from the middle of that round trip, give or
    take half of it. Without the round trip's end: the module's own one-sided offset."""
    sent, host = clock.get("controller_epoch"), clock.get("epoch")
    if sent is None or host is None:
        return clock.get("offset_seconds"), None
    if received_epoch is None or float(received_epoch) < float(sent):
        return clock.get("offset_seconds"), None
    middle = (float(sent) + float(received_epoch)) / 2
    return round(float(host) - middle, 3), round((float(received_epoch) - float(sent)) / 2, 3)


def log_merge(results: Any, window: dict[str, Any], filters: str = "",
              extra_lines: list[dict[str, Any]] | None = None, received_epoch: float | None = None) -> dict[str, Any]:
    """Every host's log_search result merged: {lines, text, hosts, matched, returned, omitted, masked, empty}.

    results: {host: log_search's result} or [[host, result], ...]; a host whose search failed is
    named with its error. extra_lines: lines from elsewhere (log_rows_as_lines), merged in time order.
    received_epoch: the controller's clock when the results were in (for each host's clock offset)."""
    lines: list[dict[str, Any]] = []
    hosts: list[dict[str, Any]] = []
    masked = {"card": 0, "secret": 0, "email": 0}
    combined = _combined(results)
    for host in sorted(combined):
        result = combined[host]
        if result.get("failed") or "lines" not in result:
            hosts.append({"host": host, "matched": 0, "returned": 0, "omitted": 0, "offset_seconds": None,
                          "error": str(result.get("msg") or "no result")})
            continue
        for line in result["lines"]:
            lines.append({**line, "host": host})
        for kind, count in (result.get("masked") or {}).items():
            masked[kind] = masked.get(kind, 0) + int(count)
        clock = result.get("clock") or {}
        offset, uncertainty = clock_offset(clock, received_epoch)
        hosts.append({"host": host, "matched": result["matched"], "returned": len(result["lines"]),
                      "omitted": result["omitted"], "offset_seconds": offset, "offset_uncertainty": uncertainty,
                      "clock": clock.get("iso"), "files": len(result.get("files") or []),
                      "bytes_returned": result.get("bytes_returned", 0), "error": None})
    for line in extra_lines or []:
        lines.append(line)
        for kind, count in (line.get("masked") or {}).items():
            masked[kind] = masked.get(kind, 0) + int(count)
    lines.sort(key=lambda line: (line.get("epoch") is None, line.get("epoch") or 0, line["host"]))
    width = max((len(line["host"]) for line in lines), default=0)
    source_width = max((len(line["source"]) for line in lines), default=0)
    text = [f"{line.get('time') or '(no time)':24} {line['host']:{width}} {line['source']:{source_width}} "
            f"{line['text']}" for line in lines]
    for host in hosts:
        if host["omitted"]:
            text.append(f"... {host['omitted']} more line{'s' if host['omitted'] != 1 else ''} on {host['host']} "
                        f"matched but are not shown ({host['matched']} matched, {host['returned']} shown): narrow "
                        "the window or add a filter, or raise limit")
        if host["error"]:
            text.append(f"!!! {host['host']}: the search failed: {host['error']}")
    matched = sum(host["matched"] for host in hosts) + len(extra_lines or [])
    searched = ", ".join(host["host"] for host in hosts)
    if not lines:
        text.append(f"no log lines in {window.get('text', 'the window')} on {searched}"
                    + (f" matching {filters}" if filters else ""))
    return {"lines": lines, "text": text, "hosts": hosts, "matched": matched, "returned": len(lines),
            "omitted": sum(host["omitted"] for host in hosts), "masked": masked, "empty": not lines,
            "window": window}


def log_host_rows(merged: dict[str, Any]) -> list[dict[str, Any]]:
    """The report table: one row per host (matched, shown, clock offset) and one for the masking."""
    rows = []
    for host in merged["hosts"]:
        if host["error"]:
            rows.append({"component": host["host"], "state": "down", "value": "search failed",
                         "detail": host["error"]})
            continue
        offset = host["offset_seconds"]
        uncertainty = host.get("offset_uncertainty")
        offset_text = "clock offset unknown" if offset is None else (
            f"clock {offset:+.2f} s" + (f" (± {uncertainty:.2f})" if uncertainty is not None else "")
            + " from the controller's")
        rows.append({"component": host["host"], "state": "healthy",
                     "value": f"{host['matched']} matched, {host['returned']} shown",
                     "detail": f"{host['files']} files read; {offset_text}"
                               + (f"; {host['omitted']} more not shown" if host["omitted"] else "")})
    masked = merged["masked"]
    rows.append({"component": "masking", "state": "healthy",
                 "value": ", ".join(f"{count} {kind}" for kind, count in masked.items()),
                 "detail": "card numbers, secrets and e-mail addresses are masked on each host before they are shown"})
    return rows


def _applies(entry: dict[str, Any], kind: str, group_names: list[str]) -> bool:
    """Whether an entry serves this kind (all: every kind, for evidence) on a host of these groups."""
    groups = set(entry.get("groups") or [])
    serves = kind == "all" or kind in (entry.get("kinds") or [])
    return serves and ("all" in groups or bool(groups & set(group_names)))


def log_sources_for(sources: list[dict[str, Any]], kind: str, group_names: list[str]) -> list[dict[str, Any]]:
    """The entries of logs_sources for this kind and this host's groups, as log_search takes them."""
    return [{"name": entry["name"], "paths": list(entry["paths"])} for entry in sources
            if _applies(entry, kind, group_names)]


def log_journal_for(journal: list[dict[str, Any]], kind: str, group_names: list[str]) -> dict[str, Any]:
    """{read: whether the journal serves this kind here, units: [] for every entry}."""
    entries = [entry for entry in journal if _applies(entry, kind, group_names)]
    if any(not entry.get("units") for entry in entries):
        return {"read": bool(entries), "units": []}
    units: list[str] = []
    for entry in entries:
        units.extend(unit for unit in entry["units"] if unit not in units)
    return {"read": bool(entries), "units": units}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"log_request": log_request, "log_merge": log_merge, "log_host_rows": log_host_rows,
                "log_sources_for": log_sources_for, "log_journal_for": log_journal_for,
                "log_rows_as_lines": log_rows_as_lines}
