#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: alertmanager_alert_info
short_description: List the alerts Alertmanager holds, filtered by time, name and state
description:
  - Reads C(GET /api/v2/alerts) and returns each alert with its fingerprint, name, severity,
    state (C(active), C(suppressed) with the silences or inhibitions that hold it, C(unprocessed)),
    start time and summary.
  - Alertmanager keeps only the alerts that are firing now (and recently resolved ones until they
    expire); for alerts that fired and resolved over a past window, ask Prometheus
    (M(betaskill.payops.prometheus_alert_history)).
  - With O(alert_id), exactly the alerts whose fingerprint or alertname is O(alert_id) are
    returned, and the task fails with the names of the alerts that are there when none matches.
  - Read-only; check mode reads the same.
author: payops contributors (!UNKNOWN)
options:
  alertmanager_url:
    description: Alertmanager's base URL. Default C(ALERTMANAGER_URL).
    type: str
    required: true
  since:
    description:
      - Only alerts that started at or after this time - ISO 8601, C(HH:MM), C(yesterday 18:00) or a
        duration ago (C(12h)).
    type: str
  alert_id:
    description: An alert's fingerprint (as Alertmanager shows it) or its alertname.
    type: str
  alertname:
    description: Only alerts with this alertname.
    type: str
  severity:
    description: Only alerts with this severity label.
    type: str
  include_silenced:
    description: Include alerts held by a silence.
    type: bool
    default: true
  include_inhibited:
    description: Include alerts held by an inhibition.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for an answer.
    type: float
    default: 10
  validate_certs:
    description: Verify Alertmanager's TLS certificate.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Alerts | Firing since 18:00 yesterday
  betaskill.payops.alertmanager_alert_info:
    alertmanager_url: "{{ payops_alertmanager_url }}"
    since: yesterday 18:00
  register: alerts

- name: Alerts | The alert to acknowledge (by fingerprint or name)
  betaskill.payops.alertmanager_alert_info:
    alertmanager_url: "{{ payops_alertmanager_url }}"
    alert_id: PaymentSuccessRateLow
"""

RETURN = r"""
alerts:
  description: The matching alerts, oldest first.
  returned: always
  type: list
  elements: dict
  sample: [{fingerprint: 6f3e0e4b2c1a9d87, alertname: PaymentSuccessRateLow, severity: critical,
            state: active, silenced_by: [], starts_at: "2024-05-01T21:04:00Z", summary: "...",
            labels: {alertname: PaymentSuccessRateLow, severity: critical}}]
count:
  description: How many alerts matched.
  returned: always
  type: int
  sample: 1
firing:
  description: Matching alerts that are active (not silenced or inhibited).
  returned: always
  type: int
  sample: 1
since:
  description: The resolved start of the window, UTC, when since was given.
  returned: when since is given
  type: str
  sample: "2024-05-01T16:00:00Z"
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_monitoring import (
    MonitoringError,
    alertmanager_argument_spec,
    http_json,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import (
    iso_seconds,
    parse_since,
    parse_time,
)


def summarise(alert):
    labels = alert.get("labels") or {}
    status = alert.get("status") or {}
    annotations = alert.get("annotations") or {}
    return {
        "fingerprint": alert.get("fingerprint"),
        "alertname": labels.get("alertname"),
        "severity": labels.get("severity"),
        "state": status.get("state"),
        "silenced_by": status.get("silencedBy") or [],
        "inhibited_by": status.get("inhibitedBy") or [],
        "starts_at": alert.get("startsAt"),
        "updated_at": alert.get("updatedAt"),
        "summary": annotations.get("summary"),
        "description": annotations.get("description"),
        "labels": labels,
    }


def fetch_alerts(module):
    params = module.params
    url = (f"{params['alertmanager_url'].rstrip('/')}/api/v2/alerts?active=true"
           f"&silenced={str(params['include_silenced']).lower()}&inhibited={str(params['include_inhibited']).lower()}")
    try:
        status, answer = http_json(url, timeout=params["timeout"], validate_certs=params["validate_certs"])
    except MonitoringError as exc:
        module.fail_json(msg=str(exc))
    if status != 200 or not isinstance(answer, list):
        module.fail_json(msg=f"Alertmanager answered HTTP {status} to GET /api/v2/alerts")
    return [summarise(alert) for alert in answer]


def main():
    argument_spec = alertmanager_argument_spec()
    argument_spec.update(
        since=dict(type="str"),
        alert_id=dict(type="str"),
        alertname=dict(type="str"),
        severity=dict(type="str"),
        include_silenced=dict(type="bool", default=True),
        include_inhibited=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    start = None
    if params["since"]:
        try:
            start = parse_since(params["since"])
        except ValueError as exc:
            module.fail_json(msg=str(exc))

    everything = fetch_alerts(module)
    alerts = everything
    if params["alertname"]:
        alerts = [a for a in alerts if a["alertname"] == params["alertname"]]
    if params["severity"]:
        alerts = [a for a in alerts if a["severity"] == params["severity"]]
    if start is not None:
        alerts = [a for a in alerts if (parse_time(a["starts_at"]) or start) >= start]
    if params["alert_id"]:
        wanted = params["alert_id"].strip()
        alerts = [a for a in alerts if wanted in (a["fingerprint"], a["alertname"])]
        if not alerts:
            known = ", ".join(sorted({f"{a['alertname']} ({a['fingerprint']})" for a in everything})) or "none"
            module.fail_json(msg=f"no alert with fingerprint or alertname {wanted!r} in Alertmanager; "
                                 f"alerts there now: {known}")
    alerts.sort(key=lambda a: a["starts_at"] or "")
    result = dict(changed=False, alerts=alerts, count=len(alerts),
                  firing=sum(1 for a in alerts if a["state"] == "active"))
    if start is not None:
        result["since"] = iso_seconds(start)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
