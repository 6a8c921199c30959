"""Judgements of the deployment pipelines (the pre-deployment pipeline, the production deployment
validator, the hotfix path and their stages) that Jinja expresses badly: the platform settings
against their types and the environment's rules (a secret's value is never put in a row), a host's
free space against a release's size, the alerts that are new since a deployment, error rate and
latency after a deployment against before it, and a deployment's record as a summary with the time
each phase took.

Every function returns plain data (verdict rows: component, state, value, target, detail) and reads
nothing but its arguments, so that tests/unit/test_pipeline_logic.py can load this file on its own.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import parse_time

# The settings validate:production-config requires: (name, kind, secret). The kinds are judged by
# _problem(); a secret's value is never shown, only whether it is there.
SETTINGS: tuple[tuple[str, str, bool], ...] = (
    ("payops_environment", "environment", False),
    ("payops_public_url", "url", False),
    ("payops_db_host", "host", False),
    ("payops_db_port", "port", False),
    ("payops_db_name", "text", False),
    ("payops_db_user", "text", False),
    ("payops_db_password", "text", True),
    ("payops_db_sslmode", "sslmode", False),
    ("payops_ikhokha_url", "url", False),
    ("payops_ikhokha_app_id", "text", False),
    ("payops_ikhokha_app_secret", "text", True),
    ("payops_s3_bucket", "bucket", False),
    ("payops_s3_region", "text", False),
    ("payops_s3_endpoint", "url_or_empty", False),
    ("payops_aws_access_key_id", "optional", True),
    ("payops_aws_secret_access_key", "optional", True),
    ("payops_notify_url", "url", True),
    ("payops_release_source", "release_source", False),
    ("release_source", "release_source", False),
)
KINDS = {name: (kind, secret) for name, kind, secret in SETTINGS}
# URLs that must be https in production (Prometheus and Alertmanager are internal, plain http).
HTTPS_IN_PRODUCTION = ("payops_public_url", "payops_ikhokha_url", "payops_notify_url", "payops_s3_endpoint")
ENVIRONMENTS = ("local", "staging", "production")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SSLMODES_ENCRYPTED = ("require", "verify-ca", "verify-full")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
EXPECTED = {
    "environment": "local, staging or production",
    "url": "an http(s) URL",
    "url_or_empty": "empty (AWS) or an http(s) URL",
    "host": "a host name or address",
    "port": "a port, 1-65535",
    "text": "present",
    "sslmode": "a libpq sslmode",
    "bucket": "an S3 bucket name",
    "optional": "both S3 keys or neither",
    "release_source": "a folder or s3://bucket/prefix",
}


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _shown(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _url_problem(value: Any, secret: bool) -> str | None:
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in text:
        return "not an http(s) URL" + ("" if secret else f": {_shown(value)}")
    return None


def _problem(name: str, value: Any, environment: str) -> str | None:
    """What is wrong with one setting, in words that never contain a secret's value."""
    kind, secret = KINDS[name]
    if kind == "optional":
        return None
    if _empty(value) and kind != "url_or_empty":
        return "missing (empty or not set)"
    if kind == "environment" and value not in ENVIRONMENTS:
        return f"{_shown(value)} is not one of {', '.join(ENVIRONMENTS)}"
    if kind == "url":
        return _url_problem(value, secret)
    if kind == "url_or_empty" and not _empty(value):
        return _url_problem(value, secret)
    if kind == "host":
        text = str(value).strip()
        if "://" in text or "/" in text or " " in text:
            return f"{_shown(value)} is not a host name (no scheme, path or spaces)"
    if kind == "port":
        try:
            port = int(str(value).strip())
        except ValueError:
            return f"{_shown(value)} is not a number"
        if not 1 <= port <= 65535:
            return f"{port} is not a port (1-65535)"
    if kind == "sslmode":
        if value not in SSLMODES:
            return f"{_shown(value)} is not one of {', '.join(SSLMODES)}"
        if environment != "local" and value not in SSLMODES_ENCRYPTED:
            return f"{value} does not encrypt: {environment} needs require, verify-ca or verify-full"
    if kind == "bucket" and not BUCKET.match(str(value)):
        return f"{_shown(value)} is not an S3 bucket name (3-63 lower-case letters, digits, '.', '-')"
    if kind == "release_source":
        text = str(value).strip()
        if not (text.startswith("/") or re.match(r"^s3://[a-z0-9][a-z0-9.-]+[a-z0-9](/.*)?$", text)):
            return f"{_shown(value)} is neither an absolute folder nor s3://bucket/prefix"
    return None


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return [str(item).strip() for item in value]


def control_selection(controls: list[str], checks: Any = None, skip_checks: Any = None,
                      subset: list[str] | None = None, subset_reason: str = "") -> dict[str, Any]:
    """Which controls run and, for each that does not, why - for the report to name it.

    A control runs when it is in subset (the hotfix's fast subset) and in checks when given, and
    not in skip_checks. Tags play no part: a control left out by --tags or --skip-tags is found
    afterwards from the absence of its result (not_run_rows)."""
    wanted, unwanted = _as_list(checks), _as_list(skip_checks)
    selected, skipped = [], {}
    for control in controls:
        if subset is not None and control not in subset:
            skipped[control] = subset_reason or "not in this procedure's subset"
        elif wanted and control not in wanted:
            skipped[control] = f"not in checks={','.join(wanted)}"
        elif control in unwanted:
            skipped[control] = "skip_checks asked for it"
        else:
            selected.append(control)
    unknown = sorted(set(wanted + unwanted) - set(controls))
    return {"selected": selected, "skipped": skipped, "unknown": unknown}


def skipped_rows(skipped: dict[str, str]) -> list[dict[str, Any]]:
    return [{"component": f"control {name}", "state": "info", "value": "skipped", "target": "-", "detail": why}
            for name, why in (skipped or {}).items()]


def not_run_rows(selected: list[str], ran: list[str]) -> list[dict[str, Any]]:
    """A selected control that left no result did not run: the run's --tags or --skip-tags left it
    out (each control is a block tagged with its name), or the run failed before it."""
    done = set(ran or [])
    return [{"component": f"control {name}", "state": "info", "value": "not run", "target": "-",
             "detail": "selected, but no result: left out by --tags/--skip-tags"}
            for name in selected or [] if name not in done]


STAGE_STATES = {
    "passed": ("healthy", "passed"),
    "failed": ("down", "failed"),
    "started": ("down", "did not complete"),
    "skipped": ("info", "skipped"),
    "not run": ("info", "not run"),
}


def pipeline_verdict(order: list[str], stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A pipeline's stages (as the pipeline role's stage entry point keeps them) as verdict rows, the stage it
    stopped at (the first failed, or started and never finished) and the verdict."""
    rows, stopped = [], None
    for stage in order:
        entry = (stages or {}).get(stage) or {"state": "not run"}
        state, value = STAGE_STATES.get(entry.get("state"), ("unknown", str(entry.get("state"))))
        rows.append({"component": stage, "state": state, "value": value, "target": "passed",
                     "detail": str(entry.get("detail") or "")})
        if stopped is None and entry.get("state") in ("failed", "started"):
            stopped = stage
    finished = all(((stages or {}).get(stage) or {}).get("state") in ("passed", "skipped", "failed")
                   for stage in order)
    verdict = "failed" if stopped else ("passed" if finished else "running")
    return {"rows": rows, "stopped_at": stopped, "verdict": verdict}


def setting_rows(values: dict[str, Any], environment: str) -> list[dict[str, Any]]:
    """The settings control: one row per missing or mistyped setting, and a summary row.

    values: {name: value} for names of SETTINGS (unknown names are ignored). The rows name the
    setting and say what is wrong; a secret's value never appears in them."""
    names = [name for name, _kind, _secret in SETTINGS if name in (values or {})]
    rows = []
    for name in names:
        problem = _problem(name, values[name], environment)
        if problem:
            rows.append({"component": f"setting {name}", "state": "down", "value": problem,
                         "target": EXPECTED[KINDS[name][0]],
                         "detail": "a secret: its value is never shown" if KINDS[name][1] else ""})
    keys = [values.get("payops_aws_access_key_id"), values.get("payops_aws_secret_access_key")]
    if "payops_aws_access_key_id" in values and _empty(keys[0]) != _empty(keys[1]):
        missing = "payops_aws_access_key_id" if _empty(keys[0]) else "payops_aws_secret_access_key"
        rows.append({"component": f"setting {missing}", "state": "down", "value": "missing (its pair is set)",
                     "target": EXPECTED["optional"], "detail": "a secret: its value is never shown"})
    secrets_present = [name for name in names if KINDS[name][1] and not _empty(values[name])]
    summary = {
        "component": "settings",
        "state": "info" if rows else "healthy",
        "value": f"{len(names) - len(rows)}/{len(names)} present and typed",
        "target": f"all, for {environment}",
        "detail": "secrets present (never shown): " + (", ".join(secrets_present) or "none"),
    }
    return [summary, *rows]


def url_rows(values: dict[str, Any], environment: str) -> list[dict[str, Any]]:
    """The urls control: https where production needs it. A URL that does not parse is the
    settings control's finding; here it is left out."""
    rows, checked = [], []
    for name in HTTPS_IN_PRODUCTION:
        value = values.get(name)
        if _empty(value) or _url_problem(value, True):
            continue
        scheme = urlsplit(str(value).strip()).scheme
        checked.append(f"{name.removeprefix('payops_')}: {scheme}")
        if environment == "production" and scheme != "https":
            rows.append({"component": f"url {name}", "state": "down", "value": scheme,
                         "target": "https in production",
                         "detail": "a secret: only its scheme is shown" if KINDS[name][1] else ""})
    summary = {
        "component": "urls",
        "state": "info" if rows else "healthy",
        "value": ("https" if environment == "production" else "http allowed") if not rows
        else f"{len(rows)} not https",
        "target": "https in production",
        "detail": ", ".join(checked),
    }
    return [summary, *rows]


def path_ancestors(path: str) -> list[str]:
    """'/srv/betaskill/app' -> ['/srv/betaskill/app', '/srv/betaskill', '/srv', '/']: df reports
    the filesystem of the deepest one that exists (a release's folder may not exist yet)."""
    parts = [part for part in str(path).split("/") if part]
    found = ["/" + "/".join(parts[:index]) for index in range(len(parts), 0, -1)]
    return [*found, "/"]


def _mb(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} bytes"


def disk_row(host: str, df: dict[str, Any], needed: dict[str, Any], headroom: float) -> dict[str, Any]:
    """One host's free space where its releases go against what the release needs.

    df: the registered result of `df -Pk -- <path and its ancestors>`; needed: {component,
    artefact (bytes), unpacked (bytes), path}. The host needs headroom x (artefact + unpacked):
    unarchive copies the artefact over, then unpacks it."""
    component = f"disk {host}"
    target = f"free >= {headroom:g} x (artefact + unpacked)"
    if df.get("unreachable"):
        return {"component": component, "state": "down", "value": "unreachable", "target": target,
                "detail": str(df.get("msg") or "")[:160]}
    lines = [line for line in df.get("stdout_lines") or [] if line.strip()]
    if len(lines) < 2:
        return {"component": component, "state": "down", "value": "df gave no answer", "target": target,
                "detail": str(df.get("stderr") or df.get("msg") or "")[:160]}
    fields = lines[1].split()
    try:
        available = int(fields[3]) * 1024
    except (IndexError, ValueError):
        return {"component": component, "state": "down", "value": "df's answer does not parse", "target": target,
                "detail": lines[1][:160]}
    if not needed or needed.get("artefact") is None:
        return {"component": component, "state": "unknown", "value": f"{_mb(available)} free",
                "target": target, "detail": "the release's size is not known: the artefact was not found"}
    required = headroom * (int(needed["artefact"]) + int(needed["unpacked"]))
    return {
        "component": component,
        "state": "healthy" if available >= required else "down",
        "value": f"{_mb(available)} free, needs {_mb(required)}",
        "target": target,
        "detail": f"{needed.get('component')} release into {needed.get('path')} (filesystem {fields[-1]}): "
                  f"artefact {_mb(int(needed['artefact']))}, unpacked {_mb(int(needed['unpacked']))}",
    }


def disk_rows(hosts: list[str], rows: list[Any]) -> list[dict[str, Any]]:
    """Each web and app host's disk row; a host that has none failed before its df (an undefined
    deploy_root, a broken connection) and is down, not left out."""
    return [row if isinstance(row, dict) and row else
            {"component": f"disk {host}", "state": "down", "value": "not checked",
             "target": "room for the release", "detail": "the host failed before df ran: see its error above"}
            for host, row in zip(hosts, rows, strict=True)]


# --- after a deployment -------------------------------------------------------------------------

def _matches(labels: dict[str, Any], before: dict[str, Any]) -> bool:
    """An alert now is the one that fired before when it has the same name and every label the
    earlier one had (Alertmanager may add external labels)."""
    before = {k: v for k, v in (before or {}).items() if k not in ("__name__", "alertstate")}
    return bool(before) and all(labels.get(key) == value for key, value in before.items())


def alerts_since(active: list[dict[str, Any]], before: list[dict[str, Any]], start: str) -> dict[str, Any]:
    """Sort the alerts active now by whether they fired before the deployment started.

    active: alertmanager_alert_info's alerts (with starts_at, state, labels); before: Prometheus'
    ALERTS{alertstate="firing"} at the start (an instant query's result). An alert is new when it
    started at or after the start and no alert with its labels was firing then. Silenced new ones
    are listed apart: someone acknowledged them, but they are new all the same."""
    moment = parse_time(start)
    before_labels = [series.get("metric") or {} for series in before or []]
    found: dict[str, list[dict[str, Any]]] = {"new": [], "new_silenced": [], "before": []}
    for alert in active or []:
        labels = alert.get("labels") or {}
        began = parse_time(alert.get("starts_at"))
        was_firing = any(_matches(labels, old) for old in before_labels)
        entry = {"alertname": alert.get("alertname") or labels.get("alertname"),
                 "severity": alert.get("severity") or labels.get("severity"),
                 "starts_at": alert.get("starts_at"), "state": alert.get("state"),
                 "fingerprint": alert.get("fingerprint")}
        if was_firing or (began is not None and moment is not None and began < moment):
            found["before"].append(entry)
        elif alert.get("state") == "active":
            found["new"].append(entry)
        else:
            found["new_silenced"].append(entry)
    return found


def _kpis(result: list[dict[str, Any]]) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for series in result or []:
        name = (series.get("metric") or {}).get("kpi")
        try:
            number = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        values[name] = None if math.isnan(number) else number  # NaN: no data
    return values


def kpi_rows(before: list[dict[str, Any]], after: list[dict[str, Any]], window_seconds: float,
             tolerance: float, error_rate_slack: float, latency_slack_seconds: float,
             min_requests: float = 50) -> list[dict[str, Any]]:
    """Error rate and p95 latency over the window since the deployment against the same length
    before it. Worse than before beyond the tolerance is down (the validation fails); fewer than
    min_requests on either side is info: a rate or a p95 of a handful of requests says nothing.

    before/after: Prometheus instant-query results labelled kpi=requests|errors|p95. The error rate
    may rise by tolerance x its value before, and at least error_rate_slack (a fraction); p95 by
    tolerance x its value before plus latency_slack_seconds."""
    old, new = _kpis(before), _kpis(after)
    window = f"{window_seconds / 60:.1f} min"
    rows = []
    old_req, new_req = old.get("requests") or 0.0, new.get("requests") or 0.0
    if old_req < min_requests or new_req < min_requests:
        side = "since the deployment" if new_req < min_requests else "before the deployment"
        count = new_req if new_req < min_requests else old_req
        for name in ("http error rate", "response time p95"):
            rows.append({"component": f"{name} (after vs before)", "state": "info",
                         "value": f"too little traffic {side}", "target": "not worse than before",
                         "detail": f"{count:.0f} requests in {window}, fewer than min_requests={min_requests:g}: "
                                   "nothing to judge"})
        return rows
    old_rate, new_rate = (old.get("errors") or 0.0) / old_req, (new.get("errors") or 0.0) / new_req
    allowed_rate = old_rate + max(tolerance * old_rate, error_rate_slack)
    rows.append({
        "component": "http error rate (after vs before)",
        "state": "healthy" if new_rate <= allowed_rate else "down",
        "value": f"{new_rate * 100:.2f} % vs {old_rate * 100:.2f} %",
        "target": f"<= {allowed_rate * 100:.2f} %",
        "detail": f"5xx among {new_req:.0f} requests since the deployment and {old_req:.0f} in the {window} before",
    })
    old_p95, new_p95 = old.get("p95"), new.get("p95")
    if old_p95 is None or new_p95 is None:
        rows.append({"component": "response time p95 (after vs before)", "state": "info", "value": "no data",
                     "target": "not worse than before", "detail": f"windows of {window}"})
    else:
        allowed = old_p95 * (1 + tolerance) + latency_slack_seconds
        rows.append({
            "component": "response time p95 (after vs before)",
            "state": "healthy" if new_p95 <= allowed else "down",
            "value": f"{new_p95:.3f} s vs {old_p95:.3f} s",
            "target": f"<= {allowed:.3f} s",
            "detail": f"windows of {window}; tolerance {tolerance * 100:g} % + {latency_slack_seconds:g} s",
        })
    return rows


def _seconds(start: Any, end: Any) -> float | None:
    first, last = parse_time(start), parse_time(end)
    if first is None or last is None:
        return None
    return round((last - first).total_seconds(), 1)


def deployment_summary(row: dict[str, Any], verdicts: list[dict[str, Any]] | None = None,
                       rollbacks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A payops.deployments row as the summary the report and the notification show.

    verdicts: the validator's, newest last ({stage, verdict, summary, checked_at}); one per stage
    is kept, the newest. rollbacks: later rows of kind rollback for this environment."""
    phases = []
    for phase in row.get("phases") or []:
        phases.append({"phase": phase.get("phase"), "started": phase.get("started"),
                       "finished": phase.get("finished"),
                       "seconds": _seconds(phase.get("started"), phase.get("finished"))})
    latest: dict[str, dict[str, Any]] = {}
    for verdict in verdicts or []:
        latest[str(verdict.get("stage"))] = dict(verdict)
    outcome = row.get("outcome") or "unknown"
    later = [{"run_id": r.get("run_id"), "release": r.get("release"), "started_at": r.get("started_at"),
              "outcome": r.get("outcome"), "operator": r.get("operator"), "reason": r.get("reason")}
             for r in rollbacks or []]
    return {
        "run_id": row.get("run_id"),
        "environment": row.get("environment"),
        "kind": row.get("kind"),
        "title": {"deploy": "Deployment", "hotfix": "Hotfix", "rollback": "Rollback"}.get(
            str(row.get("kind")), str(row.get("kind") or "Deployment").capitalize()),
        "release": row.get("release"),
        "version": row.get("version"),
        "operator": row.get("operator"),
        "reason": row.get("reason") or "",
        "started_at": row.get("started_at"),
        "finished_at": row.get("finished_at"),
        "seconds": _seconds(row.get("started_at"), row.get("finished_at")),
        "outcome": outcome,
        "detail": row.get("detail") or "",
        "phases": phases,
        "hosts": list(row.get("hosts") or []),
        "migrations": row.get("migrations") or {},
        "verdicts": list(latest.values()),
        "rollback": {
            "automatic": outcome == "rolled back",
            "detail": (row.get("detail") or "") if outcome == "rolled back" else "",
            "later": later,
        },
    }


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary as verdict rows: the deployment, each phase, each host, each verdict, rollbacks."""
    outcome = summary["outcome"]
    rows = [{
        "component": "deployment",
        "state": "healthy" if outcome == "deployed" else "down" if outcome == "rolled back" else "info",
        "value": f"{summary['release']} {outcome}",
        "target": "deployed",
        "detail": f"{summary['kind']} run {summary['run_id']} by {summary['operator']}"
                  + (f" ({summary['reason']})" if summary["reason"] else "")
                  + (f"; {summary['detail']}" if summary["detail"] else ""),
    }, {
        "component": "time",
        "state": "info",
        "value": "-" if summary["seconds"] is None else f"{summary['seconds']:g} s",
        "target": "-",
        "detail": f"{summary['started_at']} to {summary['finished_at'] or 'not finished'}",
    }]
    for phase in summary["phases"]:
        rows.append({"component": f"phase {phase['phase']}", "state": "info",
                     "value": "-" if phase["seconds"] is None else f"{phase['seconds']:g} s", "target": "-"})
    for host in summary["hosts"]:
        rows.append({"component": f"host {host.get('component', '?')}", "state": host.get("state") or "info",
                     "value": host.get("value"), "target": host.get("target") or "-",
                     "detail": str(host.get("detail") or "")[:200]})
    for verdict in summary["verdicts"]:
        state = {"passed": "healthy", "failed": "down"}.get(verdict.get("verdict"), "info")
        rows.append({"component": f"validation {verdict.get('stage')}", "state": state,
                     "value": verdict.get("verdict"), "target": "passed",
                     "detail": str(verdict.get("summary") or "")[:200]})
    if not summary["verdicts"]:
        rows.append({"component": "validation", "state": "info", "value": "not run", "target": "passed",
                     "detail": "the production deployment validator has not run for this deployment"})
    rollback = summary["rollback"]
    later = ", ".join(f"{r['run_id']} ({r['outcome']})" for r in rollback["later"])
    rows.append({"component": "rollback", "state": "info",
                 "value": "automatic" if rollback["automatic"] else ("later" if later else "none"),
                 "target": "-", "detail": "; ".join(filter(None, [rollback["detail"], later]))})
    return rows


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "control_selection": control_selection,
            "pipeline_verdict": pipeline_verdict,
            "skipped_rows": skipped_rows,
            "not_run_rows": not_run_rows,
            "setting_rows": setting_rows,
            "url_rows": url_rows,
            "path_ancestors": path_ancestors,
            "disk_row": disk_row,
            "disk_rows": disk_rows,
            "alerts_since": alerts_since,
            "kpi_rows": kpi_rows,
            "deployment_summary": deployment_summary,
            "summary_rows": summary_rows,
        }
