#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: payment_metrics
short_description: Payment KPIs over a time window, from BetaSkill's payments tables
description:
  - Over the window (the last O(window), or from O(since)), counts payments by status and computes
    the success rate (completed among finished payments), the failure reasons
    (C(public.payment_errors) by category, and the gateway's C(responseCode)), the
    checkout-to-callback latency percentiles (C(payments.created_at) to the gateway result's
    receipt in C(payops.webhook_receipts)), the gateway error rate (checkouts for which iKhokha
    created no paylink), the payments still C(pending) older than O(pending_max_minutes), and the
    revenue (completed amounts, integer cents, by currency).
  - "RV(state) is C(degraded) when the success rate is under O(success_rate_min) (with at least
    O(min_finished) finished payments), the gateway error rate is over O(error_rate_max), the p95
    checkout-to-callback latency is over O(latency_p95_max_seconds), or old pending payments
    exist; C(down) when the database cannot be reached; else C(healthy)."
  - Read-only; check mode runs the same queries.
author: payops contributors (!UNKNOWN)
options:
  window:
    description: The window back from now, as a duration (C(24h), C(90m), C(7d)). Ignored when O(since) is set.
    type: str
    default: 24h
  since:
    description:
      - The start of the window instead - ISO 8601, C(HH:MM), C(yesterday 18:00) or a duration ago.
    type: str
  success_rate_min:
    description: The runbook's target, as a fraction (0.95 is 95 %).
    type: float
    default: 0.95
  error_rate_max:
    description: The highest acceptable share of checkouts that the gateway refused or failed, as a fraction.
    type: float
    default: 0.01
  latency_p95_max_seconds:
    description: The highest acceptable 95th percentile of checkout-to-callback latency.
    type: float
    default: 300
  pending_max_minutes:
    description: Pending payments older than this are reported (the customer left, or the callback is lost).
    type: int
    default: 30
  min_finished:
    description: The success rate is judged only over at least this many finished payments.
    type: int
    default: 1
extends_documentation_fragment:
  - betaskill.payops.payops_db
"""

EXAMPLES = r"""
- name: Payments | KPIs over the last day
  betaskill.payops.payment_metrics:
    window: 24h
    login_host: "{{ payops_db_host }}"
    login_port: "{{ payops_db_port | int }}"
    login_db: "{{ payops_db_name }}"
    login_user: "{{ payops_db_user }}"
    login_password: "{{ payops_db_password }}"
  register: payments

- name: Payments | KPIs since 18:00 yesterday, connection from the PG* environment
  betaskill.payops.payment_metrics:
    since: yesterday 18:00
"""

RETURN = r"""
state:
  description: healthy, degraded or down.
  returned: always
  type: str
  sample: healthy
message:
  description: One line an operator reads.
  returned: always
  type: str
  sample: "42 payments: 41 completed, 1 failed, 0 pending; success 97.6 %; p95 callback 2.1 s"
findings:
  description: Each breached target, in words.
  returned: always
  type: list
  elements: str
  sample: ["success rate 50 % is under 95 %"]
since:
  description: The window's start (UTC, ISO 8601).
  returned: when reachable
  type: str
  sample: "2024-05-01T16:00:00Z"
until:
  description: The window's end (now, UTC).
  returned: when reachable
  type: str
  sample: "2024-05-02T05:30:00Z"
window_seconds:
  description: The window's length.
  returned: when reachable
  type: int
  sample: 86400
counts:
  description: Payments created in the window by status, and in total.
  returned: when reachable
  type: dict
  sample: {total: 42, completed: 41, failed: 1, pending: 0}
success_rate:
  description: Completed among finished (completed + failed) payments, 0 to 1; null without finished payments.
  returned: when reachable
  type: float
  sample: 0.976
success_rate_percent:
  description: The same in percent, rounded to 0.1.
  returned: when reachable
  type: float
  sample: 97.6
gateway_error_rate:
  description: Share of checkouts for which the gateway created no paylink.
  returned: when reachable
  type: float
  sample: 0.0
failure_reasons:
  description: Failures in the window by category and gateway response code, most frequent first.
  returned: when reachable
  type: list
  elements: dict
  sample: [{category: payment_failed, response_code: "05", count: 1}]
callback_latency_seconds:
  description: Checkout-to-callback latency percentiles over the payments settled in the window.
  returned: when reachable
  type: dict
  sample: {count: 42, p50: 0.8, p90: 1.9, p95: 2.1, p99: 3.0, max: 3.4}
pending_old:
  description: Pending payments older than pending_max_minutes (all time), and the oldest one's age.
  returned: when reachable
  type: dict
  sample: {count: 0, oldest_seconds: null, minutes: 30}
revenue:
  description: Completed amounts in the window, in integer cents, by currency.
  returned: when reachable
  type: dict
  sample: {ZAR: 2097900}
rows:
  description:
    - The verdicts, one per KPI, in the report role's row shape (component, state, value, target and
      sometimes detail), judged against the thresholds given; hand them to the report as they are.
    - Only the success rate row (state C(down)) when the database cannot be reached.
  returned: always
  type: list
  elements: dict
  sample:
    - {component: payment success rate, state: healthy, value: "97.6 % (41/42)", target: "> 95.0 %",
       detail: "42 payments: 41 completed, 1 failed, 0 pending; success 97.6 %"}
    - {component: pending payments (old), state: healthy, value: "0 older than 30 min", target: "0"}
"""

from datetime import timedelta, UTC

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_rows import number, truncate
from ansible_collections.betaskill.payops.plugins.module_utils.payops_db import (
    connect_or_error,
    db_argument_spec,
    describe,
    first_line,
    psycopg,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_monitoring import (
    percentile,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import (
    iso_seconds,
    local_now,
    parse_duration,
    parse_since,
)

# Latencies are only computed over the newest rows: enough for percentiles, bounded for the controller.
LATENCY_SAMPLE = 20000


def window_bounds(params):
    now = local_now()
    if params["since"]:
        start = parse_since(params["since"], now)
    else:
        start = now.replace(microsecond=0) - timedelta(seconds=parse_duration(params["window"]))
    return start.astimezone(UTC), now.astimezone(UTC)


def success_rate_target(params):
    return f"> {params['success_rate_min'] * 100} %"


def down_rows(params, message):
    return [{"component": "payment success rate", "state": "down", "value": "no answer",
             "target": success_rate_target(params), "detail": truncate(message)}]


def verdict_rows(params, breached, counts, success_rate, gateway_error_rate, reasons, latency, pending_old, revenue,
                 message):
    """One row per KPI, its state taken from the judgement made once in main()."""
    finished = counts["completed"] + counts["failed"]
    if success_rate is None:
        rate_state, rate_value = "info", "no finished payments"
    else:
        rate_state = "degraded" if breached["success_rate"] else "healthy"
        rate_value = f"{round(success_rate * 100, 1)} % ({counts['completed']}/{finished})"
    categories = list(dict.fromkeys(reason["category"] for reason in reasons))
    p95 = latency["p95"]
    return [
        {"component": "payment success rate", "state": rate_state, "value": rate_value,
         "target": success_rate_target(params), "detail": message},
        {"component": "payment gateway errors",
         "state": "degraded" if breached["gateway_errors"] else "healthy",
         "value": f"{round(round(gateway_error_rate, 4) * 100, 1)} % of checkouts",
         "target": f"< {params['error_rate_max'] * 100} %", "detail": ", ".join(str(c) for c in categories)},
        {"component": "callback latency p95",
         "state": "info" if p95 is None else ("degraded" if breached["latency"] else "healthy"),
         "value": "-" if p95 is None else f"{p95} s (p50 {latency['p50']} s)",
         "target": f"< {number(params['latency_p95_max_seconds'])} s"},
        {"component": "pending payments (old)", "state": "degraded" if breached["pending"] else "healthy",
         "value": f"{pending_old['count']} older than {params['pending_max_minutes']} min", "target": "0"},
        {"component": "payment revenue", "state": "info",
         "value": ", ".join(f"{currency} {int(cents or 0) / 100:.2f}" for currency, cents in revenue.items()) or "0",
         "target": "-"},
    ]


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(
        window=dict(type="str", default="24h"),
        since=dict(type="str"),
        success_rate_min=dict(type="float", default=0.95),
        error_rate_max=dict(type="float", default=0.01),
        latency_p95_max_seconds=dict(type="float", default=300.0),
        pending_max_minutes=dict(type="int", default=30),
        min_finished=dict(type="int", default=1),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    try:
        start, end = window_bounds(params)
    except ValueError as exc:
        module.fail_json(msg=f"the time window does not parse: {exc}")
    if not 0 <= params["success_rate_min"] <= 1 or not 0 <= params["error_rate_max"] <= 1:
        module.fail_json(msg="success_rate_min and error_rate_max are fractions between 0 and 1 (0.95 is 95 %)")

    conn, error = connect_or_error(module, autocommit=True, application_name="payops payment_metrics")
    if conn is None:
        module.exit_json(changed=False, state="down", message=error, findings=[error],
                         rows=down_rows(params, error))
    window = {"start": start, "end": end}
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status, count(*) AS n FROM public.payments"
                        " WHERE created_at >= %(start)s AND created_at < %(end)s GROUP BY status", window)
            counts = {"completed": 0, "failed": 0, "pending": 0}
            counts.update({row["status"]: row["n"] for row in cur.fetchall()})
            counts["total"] = sum(counts.values())
            cur.execute(
                "SELECT e.error_category AS category,"
                " coalesce(e.details ->> 'responseCode', p.gateway_response ->> 'responseCode') AS response_code,"
                " count(*) AS count, left(max(e.message), 200) AS example"
                " FROM public.payment_errors e LEFT JOIN public.payments p ON p.id = e.payment_id"
                " WHERE e.created_at >= %(start)s AND e.created_at < %(end)s"
                " GROUP BY 1, 2 ORDER BY count(*) DESC, 1", window)
            reasons = cur.fetchall()
            cur.execute(
                "SELECT count(*) AS n FROM public.payments p"
                " WHERE p.created_at >= %(start)s AND p.created_at < %(end)s AND p.status = 'failed'"
                " AND NOT p.gateway_response ? 'paylinkID'", window)
            gateway_errors = cur.fetchone()["n"]
            cur.execute(
                "SELECT extract(epoch FROM r.received_at - p.created_at)::float AS seconds"
                " FROM payops.webhook_receipts r JOIN public.payments p ON p.id = r.payment_id"
                " WHERE p.created_at >= %(start)s AND p.created_at < %(end)s AND r.received_at >= p.created_at"
                " ORDER BY p.created_at DESC LIMIT %(limit)s", {**window, "limit": LATENCY_SAMPLE})
            latencies = [row["seconds"] for row in cur.fetchall()]
            cur.execute(
                "SELECT count(*) AS count,"
                " round(extract(epoch FROM now() - min(created_at))::numeric, 0)::float AS oldest_seconds"
                " FROM public.payments WHERE status = 'pending'"
                " AND created_at < now() - make_interval(mins => %(minutes)s)",
                {"minutes": params["pending_max_minutes"]})
            pending_old = {**cur.fetchone(), "minutes": params["pending_max_minutes"]}
            cur.execute("SELECT currency, sum(amount)::bigint AS cents FROM public.payments"
                        " WHERE status = 'completed' AND created_at >= %(start)s AND created_at < %(end)s"
                        " GROUP BY currency", window)
            revenue = {row["currency"]: row["cents"] for row in cur.fetchall()}
    except psycopg.Error as exc:
        error = f"payment queries on {describe(params)} failed: {first_line(exc)}"
        module.exit_json(changed=False, state="down", message=error, findings=[first_line(exc)],
                         rows=down_rows(params, error))
    finally:
        conn.close()

    finished = counts["completed"] + counts["failed"]
    success_rate = counts["completed"] / finished if finished else None
    gateway_error_rate = gateway_errors / counts["total"] if counts["total"] else 0.0
    latency = {"count": len(latencies)}
    for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
        value = percentile(latencies, fraction)
        latency[name] = round(value, 3) if value is not None else None
    latency["max"] = round(max(latencies), 3) if latencies else None

    # Each threshold is judged here once; the findings, the state and the rows all read these.
    breached = {
        "success_rate": (success_rate is not None and finished >= params["min_finished"]
                         and success_rate < params["success_rate_min"]),
        "gateway_errors": gateway_error_rate > params["error_rate_max"],
        "latency": latency["p95"] is not None and latency["p95"] > params["latency_p95_max_seconds"],
        "pending": bool(pending_old["count"]),
    }
    findings = []
    if breached["success_rate"]:
        findings.append(f"success rate {success_rate * 100:.1f} % ({counts['completed']} of {finished}) is under "
                        f"{params['success_rate_min'] * 100:g} %")
    if breached["gateway_errors"]:
        findings.append(f"gateway errors on {gateway_error_rate * 100:.1f} % of checkouts (over "
                        f"{params['error_rate_max'] * 100:g} %)")
    if breached["latency"]:
        findings.append(f"p95 checkout-to-callback latency {latency['p95']:g} s is over "
                        f"{params['latency_p95_max_seconds']:g} s")
    if breached["pending"]:
        findings.append(f"{pending_old['count']} payments pending for more than {params['pending_max_minutes']} min")

    rate_text = f"{success_rate * 100:.1f} %" if success_rate is not None else "n/a (no finished payments)"
    message = (f"{counts['total']} payments: {counts['completed']} completed, {counts['failed']} failed, "
               f"{counts['pending']} pending; success {rate_text}")
    if latency["p95"] is not None:
        message += f"; p95 callback {latency['p95']:g} s"
    module.exit_json(
        changed=False, state="degraded" if findings else "healthy", message=message, findings=findings,
        since=iso_seconds(start), until=iso_seconds(end), window_seconds=int((end - start).total_seconds()),
        counts=counts,
        success_rate=round(success_rate, 4) if success_rate is not None else None,
        success_rate_percent=round(success_rate * 100, 1) if success_rate is not None else None,
        gateway_error_rate=round(gateway_error_rate, 4), failure_reasons=reasons,
        callback_latency_seconds=latency, pending_old=pending_old, revenue=revenue,
        rows=verdict_rows(params, breached, counts, success_rate, gateway_error_rate, reasons, latency,
                          pending_old, revenue, message),
    )


if __name__ == "__main__":
    main()
