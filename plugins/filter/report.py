# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the reports (issue 14): report periods, KPIs as verdict rows, and the daily summary's
document made from what the sources answered. Verdicts are payops_report's, periods payops_time's."""

from __future__ import annotations

from ansible_collections.betaskill.payops.plugins.module_utils import payops_reconcile, payops_report, payops_time

NOT_AVAILABLE = "not available"


def report_day(text, timezone=payops_time.DEFAULT_TIMEZONE, variable="day"):
    """The calendar day as a period, or {error: <sentence naming the variable>}."""
    try:
        return payops_time.parse_day(text, timezone, variable=variable)
    except ValueError as exc:
        return {"error": str(exc)}


def report_window(since, until="", timezone=payops_time.DEFAULT_TIMEZONE, max_days=payops_time.MAX_WINDOW_DAYS):
    """The window [since, until) as a period, or {error: <sentence naming the variable>}."""
    try:
        return payops_time.parse_window(since, until, timezone, max_days=int(max_days))
    except ValueError as exc:
        return {"error": str(exc)}


def report_kpi_rows(kpis):
    """Unjudged KPI specs (name, value, unit, target, op, detail) as the report role's verdict rows."""
    judged = [payops_report.kpi(item["name"], item.get("value"), item.get("unit", ""), item.get("target"),
                                item.get("op"), item.get("detail", ""), item.get("digits", 1)) for item in kpis]
    return payops_report.kpi_rows(judged)


def prometheus_value(answer):
    """The single number of a Prometheus instant query's JSON answer (text or parsed); None when
    Prometheus did not answer, the query failed, or the vector is empty (no series: no data)."""
    import json
    import math

    if not answer:
        return None
    try:
        data = json.loads(answer) if isinstance(answer, str) else answer
        result = data["data"]["result"]
        if data.get("status") != "success" or not result:
            return None
        value = float(result[0]["value"][1])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def prometheus_vector(answer, label):
    """A Prometheus vector's values by one label ({route: value}); {} when there is none."""
    import json
    import math

    try:
        data = json.loads(answer) if isinstance(answer, str) else answer
        result = data["data"]["result"] if data and data.get("status") == "success" else []
    except (ValueError, KeyError, TypeError):
        return {}
    values = {}
    for item in result:
        try:
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if not (math.isnan(value) or math.isinf(value)):
            values[item.get("metric", {}).get(label, "")] = value
    return values


def prometheus_series(answer):
    """The first series of a range query as [[unix time, value or None], ...]; [] when there is none."""
    import json
    import math

    try:
        data = json.loads(answer) if isinstance(answer, str) else answer
        result = data["data"]["result"] if data and data.get("status") == "success" else []
        values = result[0]["values"] if result else []
    except (ValueError, KeyError, IndexError, TypeError):
        return []
    series = []
    for moment, value in values:
        number = float(value)
        series.append([int(float(moment)), None if math.isnan(number) or math.isinf(number) else number])
    return series


def _percent(part, whole):
    return None if not whole else round(100.0 * part / whole, 2)


def _within(alert, period):
    first, last = alert.get("first_seen") or "", alert.get("last_seen") or ""
    return first < period["until"] and last >= period["start"]


def _disagreements(counts):
    """Findings of the gateway's matching (None without a payment to match: no data)."""
    if not counts.get("checked"):
        return None
    return sum(counts.get(kind, 0) for kind in payops_reconcile.FINDINGS)


def daily_summary(sources, period, targets):
    """The daily summary's report parts {summary, kpis, tables, charts, details} from what each
    source answered (sources: db, prometheus, alerts_fired, alerts_open, backups, unavailable,
    reconciliation: ikhokha_history_info's counts). A source that has nothing gives None (no
    data), never 0."""
    db = sources.get("db") or {}
    prom = sources.get("prometheus") or {}
    unavailable = sources.get("unavailable") or {}
    counts = db.get("counts") or {}
    completed, failed = counts.get("completed", 0), counts.get("failed", 0)
    finished = completed + failed
    success = _percent(completed, finished)
    requests = prom.get("requests")
    errors = prom.get("errors")
    error_rate = None if not requests else round(100.0 * (errors or 0.0) / requests, 3)
    response = prom.get("response_avg")
    uptime = None if prom.get("uptime") is None else round(100.0 * prom["uptime"], 3)
    latency = db.get("callback_latency") or {}
    security = db.get("security") or {}
    alerts_fired = [alert for alert in sources.get("alerts_fired") or [] if _within(alert, period)]
    alerts_open = [alert for alert in sources.get("alerts_open") or [] if alert.get("state") == "active"]
    backups = [dict(backup, kind=kind) for kind, state in (sources.get("backups") or {}).items()
               for backup in state.get("backups", [])
               if period["start"] <= (backup.get("started_at") or "") < period["until"]]
    reconciliation = sources.get("reconciliation") or {}
    unverified = [backup for backup in backups if backup.get("state") == "complete" and not backup.get("verified")]

    completed_cents = db.get("completed_by_currency") or {}
    refunded_cents = db.get("refunded_by_currency") or {}
    currencies = sorted(set(completed_cents) | set(refunded_cents))
    revenue = {currency: int(completed_cents.get(currency, 0)) - int(refunded_cents.get(currency, 0))
               for currency in currencies}

    def why(source, default):
        return f"{NOT_AVAILABLE}: {unavailable[source]}" if source in unavailable else default

    kpis = [
        {"name": "uptime", "value": uptime, "unit": "%", "target": targets["uptime_min"], "op": ">=", "digits": 2,
         "detail": "share of the blackbox probe's checks through nginx that got 200" if uptime is not None else
         why("uptime", "no probe_success series in Prometheus for the day (the blackbox exporter's probe)")},
        {"name": "payments", "value": counts.get("total") or None, "unit": "",
         "detail": (f"{completed} completed, {failed} failed, {counts.get('pending', 0)} pending; "
                    f"{db.get('test_payments', 0)} test-mode left out") if counts.get("total") else
         why("db", "no payment was made in the day")},
        {"name": "payment success rate", "value": success, "unit": "%", "target": targets["success_rate_min"],
         "op": ">", "detail": f"{completed} completed of {finished} finished (test-mode left out)"
         if finished else why("db", "no finished payment in the day")},
        {"name": "callback latency p95", "value": None if latency.get("p95") is None else round(latency["p95"], 1),
         "unit": "s", "target": targets["callback_latency_max_seconds"], "op": "<",
         "detail": f"checkout to the gateway's callback, {latency.get('count')} callbacks; median "
                   f"{round(latency['p50'], 1)} s" if latency.get("p95") is not None else
         why("db", "no callback was received for the day's payments")},
        {"name": "api error rate", "value": error_rate, "unit": "%", "target": targets["error_rate_max"], "op": "<",
         "digits": 2, "detail": f"{int(errors or 0)} of {int(requests)} requests answered 5xx" if requests else
         why("prometheus", "no request was counted in Prometheus for the day")},
        {"name": "api response time (average)", "value": None if response is None else round(response, 3),
         "unit": "s", "target": targets["response_time_max_seconds"], "op": "<", "digits": 3,
         "detail": (f"p95 {round(prom['response_p95'], 3)} s" if prom.get("response_p95") is not None else "")
         if response is not None else why("prometheus", "no request duration in Prometheus for the day")},
        {"name": "security incidents", "value": security.get("incidents") if "db" not in unavailable else None,
         "unit": "", "target": 0, "op": "==",
         "detail": f"high or critical events in public.security_events ({security.get('total', 0)} events in all)"
         if "db" not in unavailable else why("db", "")},
        {"name": "alerts fired", "value": len(alerts_fired) if "alerts_fired" not in unavailable else None,
         "unit": "", "detail": ", ".join(sorted({alert["alertname"] for alert in alerts_fired}))
         if "alerts_fired" not in unavailable else why("alerts_fired", "")},
        {"name": "switch changes", "value": len(db.get("switch_events") or []) if "db" not in unavailable else None,
         "unit": "", "detail": "" if "db" not in unavailable else why("db", "")},
        {"name": "deployments", "value": len(db.get("deployments") or []) if "db" not in unavailable else None,
         "unit": "", "detail": "" if "db" not in unavailable else why("db", "")},
        {"name": "backups", "value": len(backups) if "backups" not in unavailable else None, "unit": "",
         "detail": f"{len(backups) - len(unverified)} verified or failed verification, {len(unverified)} unverified"
         if "backups" not in unavailable else why("backups", "")},
        {"name": "gateway reconciliation", "value": _disagreements(reconciliation), "unit": "", "target": 0,
         "op": "==", "detail": why("reconciliation", "") if "reconciliation" in unavailable else
         (f"{reconciliation['checked']} payments matched against iKhokha's history, {reconciliation['matched']} agree"
          + "".join(f"; {reconciliation[kind]} {kind.replace('_', ' ')}" for kind in payops_reconcile.FINDINGS
                    if reconciliation.get(kind)) + " (payment:reconcile settles lost callbacks)"
          if reconciliation.get("checked") else "no payment with a paylink in the day")},
        {"name": "open incidents", "value": None, "unit": "",
         "detail": why("incidents", f"{NOT_AVAILABLE}: no incident records in this environment")},
        {"name": "unacknowledged alerts", "value": len(alerts_open) if "alerts_open" not in unavailable else None,
         "unit": "", "target": 0, "op": "==",
         "detail": ", ".join(sorted({alert.get("alertname", "?") for alert in alerts_open}))
         if "alerts_open" not in unavailable else why("alerts_open", "")},
        {"name": "payments pending over 30 minutes" if targets["pending_max_minutes"] == 30 else
         f"payments pending over {targets['pending_max_minutes']} minutes",
         "value": db.get("pending_over") if "db" not in unavailable else None, "unit": "", "target": 0, "op": "==",
         "detail": "as of now, any day" if "db" not in unavailable else why("db", "")},
    ]
    for currency in currencies:
        kpis.append({"name": f"revenue {currency}", "value": revenue[currency], "unit": "cents",
                     "detail": f"completed {int(completed_cents.get(currency, 0))} - refunded "
                               f"{int(refunded_cents.get(currency, 0))} cents"})
    if not currencies:
        kpis.append({"name": "revenue", "value": None, "unit": "cents",
                     "detail": why("db", "no completed payment and no refund in the day")})

    hourly = {item["hour"]: item for item in db.get("hourly") or []}
    chart_points = []
    for hour in range(24):
        item = hourly.get(hour)
        done = (item["completed"] + item["failed"]) if item else 0
        chart_points.append([f"{hour:02d}", _percent(item["completed"], done) if done else None])
    charts = [{
        "title": "Payment success rate by hour", "x_label": f"hour of the day ({period['timezone']})",
        "y_label": "success rate (%)", "points": chart_points, "target": targets["success_rate_min"],
        "target_label": f"target > {targets['success_rate_min']:g} %", "kind": "bar", "y_min": 0, "y_max": 105,
    }]
    tables = [
        {"title": "Payments by hour", "columns": ["hour", "completed", "failed"],
         "rows": [[f"{item['hour']:02d}:00", item["completed"], item["failed"]] for item in db.get("hourly") or []],
         "empty": "no payment in the day"},
        {"title": "Failures by category", "columns": ["category", "payments"],
         "rows": [[item["category"], item["count"]] for item in db.get("failures") or []],
         "empty": "no failed payment"},
        {"title": "Revenue by currency",
         "columns": ["currency", "completed (cents)", "refunded (cents)", "revenue (cents)"],
         "rows": [[currency, int(completed_cents.get(currency, 0)), int(refunded_cents.get(currency, 0)),
                   revenue[currency]] for currency in currencies], "empty": "no revenue"},
        {"title": "Alerts fired", "columns": ["alert", "severity", "first seen", "last seen", "firing now"],
         "rows": [[alert["alertname"], alert.get("severity"), alert.get("first_seen"), alert.get("last_seen"),
                   "yes" if alert.get("firing_now") else "no"] for alert in alerts_fired],
         "empty": why("alerts_fired", "no alert fired")},
        {"title": "Switches changed", "columns": ["time", "switch", "state", "by", "why"],
         "rows": [[item["at"], item["switch"], item["state"], item["by"], item["reason"]]
                  for item in db.get("switch_events") or []], "empty": "no switch changed"},
        {"title": "Deployments", "columns": ["time", "kind", "release", "outcome", "by"],
         "rows": [[item["at"], item["kind"], item["release"], item["outcome"], item["by"]]
                  for item in db.get("deployments") or []], "empty": "no deployment"},
        {"title": "Backups", "columns": ["kind", "backup", "state", "verified"],
         "rows": [[backup["kind"], backup["backup_id"], backup["state"], "yes" if backup.get("verified") else "no"]
                  for backup in backups], "empty": why("backups", "no backup was made in the day")},
        {"title": "Open for tomorrow", "columns": ["what", "count", "detail"],
         "rows": [["open incidents", None, why("incidents", f"{NOT_AVAILABLE}: no incident records")],
                  ["unacknowledged alerts", len(alerts_open) if "alerts_open" not in unavailable else None,
                   ", ".join(sorted({alert.get("alertname", "?") for alert in alerts_open}))],
                  ["unverified backups", len(unverified) if "backups" not in unavailable else None,
                   ", ".join(backup["backup_id"] for backup in unverified)],
                  [f"payments pending over {targets['pending_max_minutes']} minutes",
                   db.get("pending_over") if "db" not in unavailable else None, ""]]},
    ]
    judged = [payops_report.kpi(item["name"], item["value"], item.get("unit", ""), item.get("target"),
                                item.get("op")) for item in kpis]
    missed = [item["name"] for item in judged if item["verdict"] == "missed"]
    money = ", ".join(f"{payops_report.format_value(cents, 'cents')} {currency}" for currency, cents in revenue.items())
    summary = (f"{counts.get('total', 0)} payments, success rate "
               f"{payops_report.format_value(success, '%')}, revenue {money or payops_report.NO_DATA}"
               + f"; {len(alerts_fired)} alerts fired. "
               + (f"Missed: {', '.join(missed)}." if missed else "Every target with data was met."))
    details = {"revenue_by_currency": revenue, "counts": counts, "test_payments": db.get("test_payments"),
               "unavailable": unavailable}
    return {"summary": summary, "kpis": kpis, "tables": tables, "charts": charts, "details": details}


def _side(side):
    if not side:
        return "-"
    return " ".join(str(side.get(key)) for key in ("status", "amount", "currency") if side.get(key) is not None)


def reconcile_tables(findings, settled, check_mode=False):
    """payment:reconcile's tables: what was settled, and the findings for a person."""
    lost = [item for item in findings if item["settle"]]
    others = [item for item in findings if not item["settle"]]
    done = [[item.get("transaction_reference"), item.get("paylink_id"), item.get("gateway_status"), item.get("result")]
            for item in settled]
    would = [[item["reference"], item["paylink_id"], _side(item["gateway"]), "check mode: not settled"]
             for item in lost] if check_mode else []
    return [
        {"title": "Lost callbacks (settled by reconciliation)",
         "columns": ["reference", "paylink", "gateway", "result"],
         "rows": done or would,
         "empty": "no lost callback"},
        {"title": "For a person", "columns": ["finding", "reference", "paylink", "here", "gateway", "detail"],
         "rows": [[item["kind"], item["reference"], item["paylink_id"], _side(item["here"]), _side(item["gateway"]),
                   item["detail"]] for item in others],
         "empty": "nothing to look at"},
    ]


def _round(value, digits):
    return None if value is None else round(value, digits)


def _performance_figures(answers, seconds):
    requests, errors = answers.get("requests"), answers.get("errors")
    return {
        "requests": None if requests is None else int(requests),
        "throughput": None if not requests else round(requests / seconds, 4),
        "error_rate": None if not requests else round(100.0 * (errors or 0.0) / requests, 3),
        "response_avg": _round(answers.get("response_avg"), 3),
        "response_p95": _round(answers.get("response_p95"), 3),
    }


def performance_report(answers, period, targets, previous=None):
    """The performance reports' parts {summary, kpis, tables, charts, details} from the answers of
    Prometheus (instant values over the window, by route, and range series); with `previous` (the
    same queries a week before), a comparison with it (performance:daily-review)."""
    from datetime import UTC, datetime

    requests, errors = answers.get("requests"), answers.get("errors")
    seconds = max(1.0, float(answers.get("window_seconds") or (
        datetime.fromisoformat(period["until"].replace("Z", "+00:00"))
        - datetime.fromisoformat(period["start"].replace("Z", "+00:00"))).total_seconds()))
    error_rate = None if not requests else round(100.0 * (errors or 0.0) / requests, 3)
    resource = {name: answers.get(name) for name in ("cpu", "memory", "disk")}
    no_node = "not available: no node exporter series in Prometheus (prometheus-node-exporter on the hosts)"
    kpis = [
        {"name": "response time (average)", "value": _round(answers.get("response_avg"), 3), "unit": "s",
         "target": targets["response_time_max_seconds"], "op": "<", "digits": 3,
         "detail": "" if answers.get("response_avg") is not None else "no request duration in Prometheus"},
        {"name": "response time p95", "value": _round(answers.get("response_p95"), 3), "unit": "s", "digits": 3,
         "detail": "" if answers.get("response_p95") is not None else "no request duration in Prometheus"},
        {"name": "throughput", "value": None if not requests else round(requests / seconds, 4), "unit": "req/s",
         "digits": 4, "detail": f"{int(requests)} requests in {int(seconds)} s" if requests else
         "no request was counted in Prometheus"},
        {"name": "error rate", "value": error_rate, "unit": "%", "target": targets["error_rate_max"], "op": "<",
         "digits": 2, "detail": f"{int(errors or 0)} of {int(requests)} requests answered 5xx" if requests else
         "no request was counted in Prometheus"},
    ]
    for name, value in resource.items():
        kpis.append({"name": f"{name} utilisation (highest host)", "value": _round(value, 1), "unit": "%",
                     "target": targets["resource_max_percent"], "op": "<",
                     "detail": "" if value is not None else no_node})
    kpis.append({"name": "user experience metrics", "value": None, "unit": "",
                 "detail": "not available: no real-user monitoring is collected"})
    routes = answers.get("by_route_requests") or {}
    route_errors = answers.get("by_route_errors") or {}
    route_p95 = answers.get("by_route_p95") or {}
    tables = [{
        "title": "Routes", "columns": ["route", "requests", "error rate (%)", "p95 (s)"],
        "rows": [[route, int(count), round(100.0 * route_errors.get(route, 0.0) / count, 2) if count else None,
                  _round(route_p95.get(route), 3)]
                 for route, count in sorted(routes.items(), key=lambda item: -item[1])],
        "empty": "no request was counted in Prometheus",
    }]

    zone = payops_time.zone(period["timezone"])

    def label(moment):
        return datetime.fromtimestamp(moment, tz=UTC).astimezone(zone).strftime("%m-%d %H:%M")

    charts = [
        {"title": "Response time p95 over the window", "x_label": f"time ({period['timezone']})",
         "y_label": "p95 response time (s)", "kind": "line", "target": targets["response_time_max_seconds"],
         "target_label": f"target < {targets['response_time_max_seconds']:g} s",
         "points": [[label(moment), value] for moment, value in answers.get("p95_series") or []]},
        {"title": "Error rate over the window", "x_label": f"time ({period['timezone']})",
         "y_label": "error rate (%)", "kind": "line", "target": targets["error_rate_max"],
         "target_label": f"target < {targets['error_rate_max']:g} %",
         "points": [[label(moment), None if value is None else 100.0 * value]
                    for moment, value in answers.get("error_series") or []]},
    ]
    details = {"window_seconds": int(seconds), "requests": requests, "errors": errors}
    if previous is not None:
        now, then = _performance_figures(answers, seconds), _performance_figures(previous, seconds)
        names = {"requests": ("requests", ""), "throughput": ("throughput", "req/s"),
                 "error_rate": ("error rate", "%"), "response_avg": ("response time (average)", "s"),
                 "response_p95": ("response time p95", "s")}
        rows = []
        for key, (name, _unit) in names.items():
            change = (None if now[key] is None or then[key] in (None, 0)
                      else round(100.0 * (now[key] - then[key]) / then[key], 1))
            rows.append([name, now[key], then[key], None if change is None else f"{change:+.1f} %"])
        tables.insert(0, {"title": "Against the same weekday a week before",
                          "columns": ["figure", "this day", "a week before", "change"], "rows": rows})
        for item in kpis:
            key = next((key for key, (name, _unit) in names.items() if name == item["name"]), None)
            if key is not None:
                earlier = payops_report.format_value(then[key], names[key][1], 3)
                item["detail"] = "; ".join(part for part in (item["detail"], f"a week before: {earlier}") if part)
        details["week_before"] = then
    judged = [payops_report.kpi(item["name"], item["value"], item.get("unit", ""), item.get("target"),
                                item.get("op")) for item in kpis]
    missed = [item["name"] for item in judged if item["verdict"] == "missed"]
    summary = (f"{int(requests or 0)} requests, error rate {payops_report.format_value(error_rate, '%', 2)}, "
               f"average response {payops_report.format_value(_round(answers.get('response_avg'), 3), 's', 3)}. "
               + (f"Missed: {', '.join(missed)}." if missed else "Every target with data was met."))
    return {"summary": summary, "kpis": kpis, "tables": tables, "charts": charts, "details": details}


def audit_runs(text, start, until):
    """The runs a file audit trail (JSON lines) ended in [start, until) - ISO times in UTC - as
    [{operator, what, runs, failed}], the most frequent first. Lines that do not parse are skipped."""
    import json

    counts = {}
    for line in str(text or "").splitlines():
        if '"run_end"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        moment = payops_time.parse_time(record.get("time"))
        if record.get("event") != "run_end" or moment is None:
            continue
        if not payops_time.parse_time(start) <= moment < payops_time.parse_time(until):
            continue
        key = (record.get("operator") or "unknown", record.get("command") or record.get("playbook") or "?")
        item = counts.setdefault(key, {"operator": key[0], "what": key[1], "runs": 0, "failed": 0})
        item["runs"] += 1
        item["failed"] += record.get("result") != "successful"
    return sorted(counts.values(), key=lambda item: (-item["runs"], item["what"], item["operator"]))


def operations_entry(entry, period, note_added):
    """logs:update-operational's report parts from the entry the database wrote."""
    summary = entry.get("summary") or {}
    runs, notes = summary.get("runs") or [], entry.get("notes") or []
    kpis = [
        {"name": "runs", "value": sum(item["runs"] for item in runs), "unit": "",
         "detail": f"from {summary.get('runs_from')}; {sum(item['failed'] for item in runs)} failed"},
        {"name": "switch changes", "value": len(summary.get("switches") or []), "unit": ""},
        {"name": "deployments", "value": len(summary.get("deployments") or []), "unit": ""},
        {"name": "security incidents", "value": summary.get("security_incidents"), "unit": "", "target": 0,
         "op": "=="},
        {"name": "open incidents", "value": None, "unit": "",
         "detail": "not available: no incident records in this environment"},
        {"name": "notes", "value": len(notes), "unit": "", "detail": f"{note_added} added by this run"},
    ]
    tables = [
        {"title": "Who ran what", "columns": ["operator", "command", "runs", "failed"],
         "rows": [[item["operator"], item["what"], item["runs"], item["failed"]] for item in runs],
         "empty": "nothing was run"},
        {"title": "Switches changed", "columns": ["time", "switch", "state", "by", "why"],
         "rows": [[item["at"], item["switch"], item["state"], item["by"], item["reason"]]
                  for item in summary.get("switches") or []], "empty": "no switch changed"},
        {"title": "Deployments", "columns": ["time", "kind", "release", "outcome", "by"],
         "rows": [[item["at"], item["kind"], item["release"], item["outcome"], item["by"]]
                  for item in summary.get("deployments") or []], "empty": "no deployment"},
        {"title": "Notes", "columns": ["time", "by", "note"],
         "rows": [[item["at"], item["by"], item["note"]] for item in notes], "empty": "no note"},
    ]
    text = (f"{kpis[0]['value']} runs, {kpis[1]['value']} switch changes, {kpis[2]['value']} deployments, "
            f"{len(notes)} notes in the operations log of {period['label']}.")
    return {"summary": text, "kpis": kpis, "tables": tables, "details": {"entry": entry}}


class FilterModule:
    def filters(self):
        return {
            "report_day": report_day,
            "report_window": report_window,
            "report_kpi_rows": report_kpi_rows,
            "prometheus_value": prometheus_value,
            "daily_summary": daily_summary,
            "reconcile_tables": reconcile_tables,
            "prometheus_vector": prometheus_vector,
            "prometheus_series": prometheus_series,
            "performance_report": performance_report,
            "audit_runs": audit_runs,
            "operations_entry": operations_entry,
        }
