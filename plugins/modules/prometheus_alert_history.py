#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: prometheus_alert_history
short_description: The alerts that fired over a past window, from Prometheus' ALERTS series
description:
  - Alertmanager forgets resolved alerts; Prometheus keeps the C(ALERTS{alertstate="firing"})
    series of every alerting rule. This module asks C(/api/v1/query_range) for it from O(since)
    to now and returns each alert (one per label set) with the first and last time it was seen
    firing, for how long, and whether it still fires.
  - Read-only; check mode reads the same.
author: payops contributors (!UNKNOWN)
options:
  prometheus_url:
    description: Prometheus' base URL. Default C(PROMETHEUS_URL).
    type: str
    required: true
  since:
    description:
      - The window's start - ISO 8601, C(HH:MM), C(yesterday 18:00) or a duration ago (C(12h)).
        Default 18:00 the day before, the overnight window of the morning checklist.
    type: str
  step_seconds:
    description: Resolution of the range query; default a step that keeps the answer under 2000 points per alert.
    type: int
  timeout:
    description: Seconds to wait for an answer.
    type: float
    default: 10
  validate_certs:
    description: Verify Prometheus' TLS certificate.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Alerts | Fired overnight
  betaskill.payops.prometheus_alert_history:
    prometheus_url: "{{ payops_prometheus_url }}"
  register: overnight

- name: Alerts | Fired in the last six hours
  betaskill.payops.prometheus_alert_history:
    prometheus_url: "{{ payops_prometheus_url }}"
    since: 6h
"""

RETURN = r"""
since:
  description: The window's start, UTC.
  returned: always
  type: str
  sample: "2024-05-01T16:00:00Z"
until:
  description: The window's end (now), UTC.
  returned: always
  type: str
  sample: "2024-05-02T05:30:00Z"
alerts:
  description: One entry per alert (label set) that fired in the window, the earliest first.
  returned: always
  type: list
  elements: dict
  sample: [{alertname: HighErrorRate, severity: critical, first_seen: "2024-05-01T21:04:00Z",
            last_seen: "2024-05-01T21:30:00Z", firing_seconds: 1560, firing_now: false,
            labels: {alertname: HighErrorRate, severity: critical}}]
count:
  description: Alerts that fired in the window.
  returned: always
  type: int
  sample: 1
still_firing:
  description: Of those, how many fire now.
  returned: always
  type: int
  sample: 0
"""

import math
from datetime import datetime, UTC

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_monitoring import (
    MonitoringError,
    prometheus_argument_spec,
    prometheus_query,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import (
    iso_seconds,
    local_now,
    parse_since,
)


def main():
    argument_spec = prometheus_argument_spec()
    argument_spec.update(since=dict(type="str"), step_seconds=dict(type="int"))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    now = local_now()
    try:
        start = parse_since(params["since"], now)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    span = max(1.0, (now - start).total_seconds())
    step = params["step_seconds"] or max(1, math.ceil(span / 2000))
    try:
        data = prometheus_query(params["prometheus_url"], "query_range", {
            "query": 'ALERTS{alertstate="firing"}', "start": f"{start.timestamp():.3f}",
            "end": f"{now.timestamp():.3f}", "step": f"{step}s"}, params["timeout"], params["validate_certs"])
    except MonitoringError as exc:
        module.fail_json(msg=str(exc))
    alerts = []
    for series in data.get("result", []):
        labels = {k: v for k, v in series.get("metric", {}).items() if k not in ("__name__", "alertstate")}
        stamps = [float(point[0]) for point in series.get("values", [])]
        if not stamps:
            continue
        first = datetime.fromtimestamp(min(stamps), UTC)
        last = datetime.fromtimestamp(max(stamps), UTC)
        alerts.append({
            "alertname": labels.get("alertname"), "severity": labels.get("severity"),
            "first_seen": iso_seconds(first), "last_seen": iso_seconds(last),
            # Each sample stands for one step of firing.
            "firing_seconds": int(len(stamps) * step),
            "firing_now": now.timestamp() - max(stamps) <= 2 * step + 1,
            "labels": labels,
        })
    alerts.sort(key=lambda a: a["first_seen"])
    module.exit_json(changed=False, since=iso_seconds(start), until=iso_seconds(now), alerts=alerts, count=len(alerts),
                     still_firing=sum(1 for a in alerts if a["firing_now"]), step_seconds=step)


if __name__ == "__main__":
    main()
