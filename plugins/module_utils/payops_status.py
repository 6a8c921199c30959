# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The incident screen's probes (status:emergency), all at once.

Four questions, asked concurrently, each with its own timeout, so the screen takes as long as the
slowest answer and not the sum of them: the site's health through the edge, the switches and the
payment queue from the database, Prometheus' readiness, Alertmanager's firing alerts. A probe that
gets no answer is a verdict ("down", with the reason), never an exception: an incident screen that
stops at the first component that is down shows nothing of the others.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.betaskill.payops.plugins.module_utils import payops_db
from ansible_collections.betaskill.payops.plugins.module_utils.payops_monitoring import MonitoringError, http_json

# The switches, the pending payments, the webhook backlog (pending payments with a paylink older
# than the backlog threshold: a callback that should have come) and the callbacks of the last hour.
SCREEN_SQL = """
SELECT 'switch' AS kind, name, enabled::text AS value, reason, set_by,
       to_char(set_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"') AS set_at
  FROM payops.switches
UNION ALL
SELECT 'pending', 'pending payments', count(*)::text, NULL, NULL,
       to_char(min(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"')
  FROM public.payments WHERE status = 'pending'
UNION ALL
SELECT 'backlog', 'webhook backlog', count(*)::text, NULL, NULL, NULL
  FROM public.payments
 WHERE status = 'pending' AND gateway_response ? 'paylinkID'
   AND created_at < now() - make_interval(mins => %(minutes)s)
UNION ALL
SELECT 'receipts', 'callbacks in the last hour', count(*)::text, NULL, NULL,
       to_char(max(received_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"')
  FROM payops.webhook_receipts WHERE received_at > now() - interval '1 hour'
"""


class _Params:
    """What payops_db.connect_or_error reads from a module: its params."""

    def __init__(self, params):
        self.params = params


def _timed(probe):
    started = time.monotonic()
    answer = probe()
    answer["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    return answer


def probe_http(url, timeout, validate_certs):
    """{status, json, msg}: status None when nothing answered."""
    try:
        status, body = http_json(url, timeout=timeout, validate_certs=validate_certs)
    except MonitoringError as exc:
        return {"status": None, "json": None, "msg": str(exc)}
    return {"status": status, "json": body, "msg": ""}


def probe_database(params, backlog_minutes):
    """{reachable, rows, msg}: the screen's rows, or why the database did not give them."""
    conn, error = payops_db.connect_or_error(_Params(params), autocommit=True, application_name="payops status")
    if error:
        return {"reachable": False, "rows": [], "msg": error}
    try:
        with conn:
            rows = conn.execute(SCREEN_SQL, {"minutes": backlog_minutes}).fetchall()
    except payops_db.psycopg.Error as exc:
        return {"reachable": False, "rows": [], "msg": payops_db.first_line(exc)}
    return {"reachable": True, "rows": [dict(row) for row in rows], "msg": ""}


def firing_alerts(answer):
    """The names of the alerts in Alertmanager's /api/v2/alerts answer, each once, sorted."""
    if not isinstance(answer, list):
        return []
    names = {alert.get("labels", {}).get("alertname") for alert in answer if isinstance(alert, dict)}
    return sorted(name for name in names if name)


def gather(params):
    """Every probe at once; {health, database, prometheus, alertmanager}, each with elapsed_ms."""
    timeout = params["timeout"]
    certs = params["validate_certs"]
    alerts_url = (params["alertmanager_url"].rstrip("/")
                  + "/api/v2/alerts?active=true&silenced=false&inhibited=false")
    probes = {
        "health": lambda: probe_http(params["public_url"].rstrip("/") + "/api/health", timeout, certs),
        "database": lambda: probe_database(params, params["backlog_minutes"]),
        "prometheus": lambda: probe_http(params["prometheus_url"].rstrip("/") + "/-/ready", timeout, certs),
        "alertmanager": lambda: probe_http(alerts_url, timeout, certs),
    }
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        futures = {name: pool.submit(_timed, probe) for name, probe in probes.items()}
        answers = {name: future.result() for name, future in futures.items()}
    alerts = answers["alertmanager"]
    alerts["firing"] = firing_alerts(alerts.pop("json")) if alerts["status"] == 200 else []
    answers["prometheus"].pop("json", None)
    return answers
