"""Verdict logic of the health checks that Jinja expresses badly: the incident severity (P0-P3 by
the runbook's definitions, from measured facts, with the reasoning), the overall verdict, and the
order of the verdict table's rows."""

from __future__ import annotations

import math
from typing import Any

# The order an operator reads the table in: entry point first, then what it depends on.
COMPONENT_ORDER = ("edge", "app", "database", "ikhokha", "storage", "payment", "callback", "pending", "webhook",
                   "http", "response", "uptime", "security", "switch", "prometheus", "alertmanager", "alerts",
                   "host")

# The runbook's Incident Classification, in its words.
DEFINITIONS = {
    "P0": "Critical: system down, security breach, data loss",
    "P1": "High: major functionality impaired, security threat",
    "P2": "Medium: minor functionality issues, performance degradation",
    "P3": "Low: cosmetic issues, enhancement requests",
}


def _num(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def severity(facts: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Classify the platform's state P0..P3 from measured facts; every rule checked is listed.

    facts (any may be missing, which is said in the reasoning, never guessed):
      edge_state, app_state, database_state     healthy | degraded | down
      ikhokha_verdict                           ikhokha_check's verdict
      success_rate, success_rate_min            fractions
      lockdown, maintenance, payments_stopped   switch states (bool)
      security_critical, security_high          security events in the window by severity
      critical_alerts                           names of critical alerts firing
    rows: the verdict table; any other degraded row counts as a degradation (P2).
    """
    facts = facts or {}
    rows = rows or []
    reasons: dict[str, list[str]] = {"P0": [], "P1": [], "P2": []}
    not_measured: list[str] = []

    for name, label in (("edge", "the edge (nginx)"), ("app", "the app"), ("database", "the database")):
        state = facts.get(f"{name}_state")
        if state is None:
            not_measured.append(f"{label} state")
        elif state == "down":
            reasons["P0"].append(f"system down: {label} is down")
    if facts.get("lockdown"):
        reasons["P0"].append("security breach response in force: the lockdown switch is on")
    critical = _num(facts.get("security_critical"))
    if critical is None:
        not_measured.append("security events")
    elif critical > 0:
        reasons["P0"].append(f"security breach: {critical:g} critical security event(s) in the window")
    not_measured.append("data loss (not measurable by a health check; see backup:verify-status)")

    verdict = facts.get("ikhokha_verdict")
    if verdict is None:
        not_measured.append("the iKhokha gateway")
    elif verdict in ("unreachable", "credentials_rejected", "gateway_error", "tls_error"):
        reasons["P1"].append(f"major functionality impaired: payments cannot be created (iKhokha "
                             f"{verdict.replace('_', ' ')})")
    rate, minimum = _num(facts.get("success_rate")), _num(facts.get("success_rate_min")) or 0.95
    if rate is None:
        not_measured.append("payment success rate (no finished payments in the window)")
    elif rate < minimum:
        reasons["P1"].append(f"major functionality impaired: payment success rate {rate * 100:.1f} % is under "
                             f"{minimum * 100:g} %")
    for switch, words in (("payments_stopped", "payments are stopped"), ("maintenance", "maintenance mode is on")):
        if facts.get(switch):
            reasons["P1"].append(f"major functionality impaired: {words} (switch {switch})")
    high = _num(facts.get("security_high"))
    if high:
        reasons["P1"].append(f"security threat: {high:g} high-severity security event(s) in the window")
    for alert in facts.get("critical_alerts") or []:
        reasons["P1"].append(f"critical alert firing: {alert}")

    counted = {"edge", "app", "database", "ikhokha", "payment success rate"}
    for row in rows:
        if row.get("state") == "degraded" and not any(row.get("component", "").startswith(c) for c in counted):
            reasons["P2"].append(f"degradation: {row.get('component')} is {row.get('value')} "
                                 f"(target {row.get('target')})")
    if verdict == "slow":
        reasons["P2"].append("performance degradation: iKhokha answers slowly")
    if facts.get("app_state") == "degraded" and not reasons["P1"]:
        reasons["P2"].append("minor functionality issue: the app reports degraded")

    level = next((p for p in ("P0", "P1", "P2") if reasons[p]), "P3")
    why = reasons.get(level) or ["every measured component is up and every target is met: nothing above "
                                 "cosmetic issues or enhancement requests"]
    return {
        "level": level,
        "definition": DEFINITIONS[level],
        "reasons": why,
        "lower_findings": [r for p in ("P0", "P1", "P2") if p > level for r in reasons[p]],
        "not_measured": not_measured,
    }


def overall(rows: list[dict[str, Any]]) -> str:
    states = {row.get("state") for row in rows or []}
    if "down" in states:
        return "down"
    if "degraded" in states:
        return "degraded"
    return "healthy"


def order_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def rank(row: dict[str, Any]) -> int:
        name = str(row.get("component", "")).lower()
        return next((i for i, prefix in enumerate(COMPONENT_ORDER) if name.startswith(prefix)), len(COMPONENT_ORDER))

    # sorted() is stable: rows of one component keep the order their check gave them.
    return sorted(rows or [], key=rank)


def money(item: dict[str, Any]) -> str:
    """{key: ZAR, value: 2097900} (integer cents) as 'ZAR 20979.00'."""
    return f"{item['key']} {int(item['value'] or 0) / 100:.2f}"


def pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in sorted((mapping or {}).items()))


def switch_row(item: dict[str, Any]) -> dict[str, Any]:
    """A switch of the control model as a verdict row: on is a deliberate state, shown, not a failure."""
    enabled = bool(int(item["value"] or 0))
    return {"component": f"switch {item['key']}", "state": "on" if enabled else "off",
            "value": "on" if enabled else "off", "target": "off"}


def alert_row(alert: dict[str, Any], silenced: list[str] | None = None) -> dict[str, Any]:
    """An alert that fired in a window: still firing is degraded (acknowledged: info), resolved is info."""
    name = alert.get("alertname") or "?"
    held = name in (silenced or [])
    firing = bool(alert.get("firing_now"))
    minutes = round((alert.get("firing_seconds") or 0) / 60, 1)
    return {
        "component": f"alert {name}",
        "state": "degraded" if firing and not held else "info",
        "value": ("firing" + (", acknowledged" if held else "")) if firing else f"resolved after {minutes:g} min",
        "target": "resolved",
        "detail": f"{alert.get('severity') or 'no severity'}; first {alert.get('first_seen')}, "
                  f"last {alert.get('last_seen')}",
    }


def disk_use(mount: dict[str, Any]) -> dict[str, Any]:
    total = mount.get("size_total") or 0
    used = total - (mount.get("size_available") or 0)
    return {"mount": mount.get("mount"), "percent": round(100.0 * used / total, 1) if total else 0.0,
            "total_gb": round(total / 1024**3, 1)}


def query_row(query: dict[str, Any], kind: str = "long") -> dict[str, Any]:
    """A long-running or blocked query as a verdict row: its age, state and the statement's start."""
    text = " ".join(str(query.get("query") or "").split())
    blockers = ", ".join(str(pid) for pid in query.get("blocked_by") or [])
    return {
        "component": f"query pid {query.get('pid')}",
        "state": "degraded",
        "value": f"{query.get('age_seconds')} s {query.get('state') or ''}".strip(),
        "target": "blocked by nobody" if kind == "blocked" else "shorter",
        "detail": (f"blocked by {blockers}; " if blockers else "") + f"{query.get('user')}: {text[:120]}",
    }


def route_rows(result: list[dict[str, Any]], max_seconds: float) -> list[dict[str, Any]]:
    """Prometheus' per-route p95 and request counts (label kpi) as one verdict row per route."""
    counts = {r["metric"].get("route"): float(r["value"][1])
              for r in result or [] if r["metric"].get("kpi") == "requests"}
    rows = []
    for r in result or []:
        if r["metric"].get("kpi") != "p95" or str(r["value"][1]).lower() == "nan":
            continue
        route, p95 = r["metric"].get("route"), float(r["value"][1])
        rows.append({"component": f"route {route}", "state": "healthy" if p95 < float(max_seconds) else "degraded",
                     "value": f"p95 {p95:.3f} s, {counts.get(route, 0):.0f} req", "target": f"< {max_seconds:g} s"})
    return sorted(rows, key=lambda row: row["component"])


def _measured(value: Any) -> float | None:
    number = _num(value)
    return None if number is None or math.isnan(number) else number  # NaN: Prometheus had no samples


def api_rows(kpi: dict[str, Any], answered: bool, error_rate_max: float, response_time_max_seconds: float,
             detail: str = "") -> list[dict[str, Any]]:
    """The API's KPIs from Prometheus (error_rate, p95, mean, uptime, requests) as verdict rows: the one
    place the error rate and response time targets are judged."""
    kpi = kpi or {}
    error_rate, p95 = _measured(kpi.get("error_rate")), _measured(kpi.get("p95"))
    uptime = _num(kpi.get("uptime"))

    def state(value: float | None, limit: float) -> str:
        if not answered or value is None:
            return "unknown"
        return "healthy" if value < float(limit) else "degraded"

    return [
        {"component": "http error rate", "state": state(error_rate, error_rate_max),
         "value": "no data" if error_rate is None else
                  f"{round(error_rate * 100, 2)} % of {round(_num(kpi.get('requests')) or 0)} req",
         "target": f"< {error_rate_max * 100} %", "detail": detail},
        {"component": "response time p95", "state": state(p95, response_time_max_seconds),
         "value": "no data" if p95 is None else
                  f"{round(p95, 3)} s (mean {round(_num(kpi.get('mean')) or 0.0, 3)} s)",
         "target": f"< {response_time_max_seconds} s"},
        {"component": "uptime (app scrape)", "state": "info",
         "value": f"{round(uptime * 100, 2)} %" if uptime is not None else "no data", "target": "-"},
    ]


def top_processes(host: dict[str, Any], limit: int = 10) -> list[dict[str, Any]]:
    """`ps -eo pid,pcpu,pmem,rss,etimes,comm` lines of a host's registered result as records."""
    lines = ((host or {}).get("resources_processes") or {}).get("stdout_lines") or []
    found = []
    for line in lines[:limit]:
        parts = line.split(None, 5)
        if len(parts) == 6:
            found.append({"pid": int(parts[0]), "cpu_percent": float(parts[1]), "mem_percent": float(parts[2]),
                          "rss_mb": round(int(parts[3]) / 1024, 1), "seconds": int(parts[4]), "command": parts[5]})
    return found


def severity_rows(assessment: dict[str, Any]) -> list[dict[str, Any]]:
    """The severity and its reasoning as verdict rows (info: the components' own rows carry the states)."""
    level = assessment["level"]
    rows = [{"component": "severity", "state": "info", "value": f"{level} ({assessment['definition'].split(':')[0]})",
             "target": "P3", "detail": assessment["definition"]}]
    rows += [{"component": f"{level} because", "state": "info", "value": "-", "target": "-", "detail": reason}
             for reason in assessment["reasons"]]
    rows += [{"component": "also found", "state": "info", "value": "-", "target": "-", "detail": reason}
             for reason in assessment.get("lower_findings", [])]
    return rows


def reason_row(reason: dict[str, Any]) -> dict[str, Any]:
    """A failure reason of payment_metrics (category, gateway response code, count) as a row."""
    code = reason.get("response_code")
    return {"component": f"failures: {reason.get('category')}", "state": "info", "value": str(reason.get("count")),
            "target": "-", "detail": (f"responseCode {code}; " if code else "") + str(reason.get("example") or "")}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "severity": severity,
            "overall": overall,
            "order_rows": order_rows,
            "money": money,
            "reason_row": reason_row,
            "severity_rows": severity_rows,
            "top_processes": top_processes,
            "route_rows": route_rows,
            "api_rows": api_rows,
            "disk_use": disk_use,
            "query_row": query_row,
            "alert_row": alert_row,
            "pairs": pairs,
            "switch_row": switch_row,
        }
