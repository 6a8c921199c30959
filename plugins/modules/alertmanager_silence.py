#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: alertmanager_silence
short_description: Acknowledge alerts as Alertmanager silences, or expire them
description:
  - "O(state=present) makes sure an active silence with these matchers by this author exists
    (Alertmanager API v2); an identical active silence is not created twice. A silence that would
    end too early is extended (Alertmanager replaces it with a new id)."
  - The matchers are given as O(matchers), or derived from O(alert_id) - an alert's fingerprint
    (all its labels are matched) or its alertname (C(alertname=<name>)). An O(alert_id) that no
    alert in Alertmanager has is an error naming the alerts that are there.
  - O(state=absent) expires the silence O(silence_id), or every active silence with these matchers
    by this author.
  - Check mode reads Alertmanager and reports what would be created or expired, and changes nothing.
author: payops contributors (!UNKNOWN)
options:
  alertmanager_url:
    description: Alertmanager's base URL. Default C(ALERTMANAGER_URL).
    type: str
    required: true
  state:
    description: C(present) to acknowledge, C(absent) to expire.
    type: str
    choices: [present, absent]
    default: present
  alert_id:
    description: The alert to acknowledge - a fingerprint or an alertname.
    type: str
  matchers:
    description: Label matchers, as Alertmanager's API takes them.
    type: list
    elements: dict
    suboptions:
      name:
        description: Label name.
        type: str
        required: true
      value:
        description: Label value (a regular expression when is_regex).
        type: str
        required: true
      is_regex:
        description: Match value as a regular expression.
        type: bool
        default: false
      is_equal:
        description: C(false) negates the matcher.
        type: bool
        default: true
  silence_id:
    description: The silence to expire (state=absent).
    type: str
  created_by:
    description: The author, recorded in the silence.
    type: str
    required: true
  comment:
    description: Why; recorded in the silence. Required for state=present.
    type: str
  duration:
    description: How long the silence lasts, from now (C(2h), C(30m), C(1d)).
    type: str
    default: 2h
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
- name: Alerts | Acknowledge the low success rate alert for two hours
  betaskill.payops.alertmanager_silence:
    alertmanager_url: "{{ payops_alertmanager_url }}"
    alert_id: PaymentSuccessRateLow
    created_by: jane@betaskill.com
    comment: "Investigating: iKhokha reports an incident (ticket OPS-123)"
    duration: 2h
  register: silence

- name: Alerts | Expire it
  betaskill.payops.alertmanager_silence:
    alertmanager_url: "{{ payops_alertmanager_url }}"
    state: absent
    silence_id: "{{ silence.silence_id }}"
    created_by: jane@betaskill.com
"""

RETURN = r"""
silence_id:
  description: The active silence (state=present; null in check mode when it would be created).
  returned: always
  type: str
  sample: 2b1e7f9c-1d4e-4c38-9e84-3b0b8f1d7a55
expired:
  description: Silences expired (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: []
matchers:
  description: The matchers used.
  returned: always
  type: list
  elements: dict
  sample: [{name: alertname, value: PaymentSuccessRateLow, isRegex: false, isEqual: true}]
alerts:
  description: Alertmanager alerts that the matchers select (fingerprint and alertname).
  returned: always
  type: list
  elements: dict
  sample: [{fingerprint: 6f3e0e4b2c1a9d87, alertname: PaymentSuccessRateLow}]
ends_at:
  description: When the silence ends (state=present).
  returned: always
  type: str
  sample: "2024-05-02T09:30:00Z"
msg:
  description: What was done.
  returned: always
  type: str
  sample: created silence 2b1e7f9c-... for alertname=PaymentSuccessRateLow until 2024-05-02T09:30:00Z
"""

from datetime import timedelta

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_monitoring import (
    MonitoringError,
    alertmanager_argument_spec,
    http_json,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import (
    iso_seconds,
    local_now,
    parse_duration,
    parse_time,
)


class Api:
    def __init__(self, module):
        self.module = module
        self.base = module.params["alertmanager_url"].rstrip("/") + "/api/v2"

    def call(self, method, path, payload=None, ok=(200,)):
        params = self.module.params
        try:
            status, answer = http_json(self.base + path, method=method, payload=payload, timeout=params["timeout"],
                                       validate_certs=params["validate_certs"])
        except MonitoringError as exc:
            self.module.fail_json(msg=str(exc))
        if status not in ok:
            detail = answer if isinstance(answer, str) else (answer or {}).get("message", "") if isinstance(
                answer, dict) else ""
            self.module.fail_json(msg=f"Alertmanager answered HTTP {status} to {method} {path} {detail}".strip())
        return answer


def normalise(matchers):
    return sorted(
        ({"name": m["name"], "value": m["value"], "isRegex": bool(m.get("is_regex", m.get("isRegex", False))),
          "isEqual": bool(m.get("is_equal", m.get("isEqual", True)))} for m in matchers),
        key=lambda m: (m["name"], m["value"], m["isRegex"], m["isEqual"]))


def selects(matchers, labels):
    import re

    for m in matchers:
        value = labels.get(m["name"], "")
        hit = re.fullmatch(m["value"], value) is not None if m["isRegex"] else value == m["value"]
        if hit != m["isEqual"]:
            return False
    return True


def main():
    argument_spec = alertmanager_argument_spec()
    argument_spec.update(
        state=dict(type="str", choices=["present", "absent"], default="present"),
        alert_id=dict(type="str"),
        matchers=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            value=dict(type="str", required=True),
            is_regex=dict(type="bool", default=False),
            is_equal=dict(type="bool", default=True),
        )),
        silence_id=dict(type="str"),
        created_by=dict(type="str", required=True),
        comment=dict(type="str"),
        duration=dict(type="str", default="2h"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[("alert_id", "matchers")],
        required_if=[("state", "present", ("alert_id", "matchers"), True), ("state", "present", ("comment",))],
    )
    params = module.params
    api = Api(module)
    try:
        seconds = parse_duration(params["duration"])
    except ValueError as exc:
        module.fail_json(msg=f"duration: {exc}")

    alerts = api.call("GET", "/alerts?active=true&silenced=true&inhibited=true")
    if params["alert_id"]:
        wanted = params["alert_id"].strip()
        by_fingerprint = [a for a in alerts if a.get("fingerprint") == wanted]
        by_name = [a for a in alerts if (a.get("labels") or {}).get("alertname") == wanted]
        if by_fingerprint:
            matchers = normalise({"name": k, "value": v} for k, v in by_fingerprint[0]["labels"].items())
        elif by_name:
            matchers = normalise([{"name": "alertname", "value": wanted}])
        else:
            known = ", ".join(sorted({f"{a['labels'].get('alertname')} ({a.get('fingerprint')})" for a in alerts}))
            module.fail_json(msg=f"no alert with fingerprint or alertname {wanted!r} in Alertmanager; alerts there "
                                 f"now: {known or 'none'}")
    else:
        matchers = normalise(params["matchers"] or [])
    selected = [{"fingerprint": a.get("fingerprint"), "alertname": (a.get("labels") or {}).get("alertname")}
                for a in alerts if matchers and selects(matchers, a.get("labels") or {})]

    silences = api.call("GET", "/silences")
    active = [s for s in silences if (s.get("status") or {}).get("state") == "active"]
    now = local_now()
    result = dict(changed=False, silence_id=None, expired=[], matchers=matchers, alerts=selected, ends_at=None)

    if params["state"] == "absent":
        if params["silence_id"]:
            targets = [s for s in silences if s.get("id") == params["silence_id"]]
            if not targets:
                module.fail_json(msg=f"no silence {params['silence_id']!r} in Alertmanager")
            targets = [s for s in targets if (s.get("status") or {}).get("state") != "expired"]
        else:
            if not matchers:
                module.fail_json(msg="state=absent needs silence_id, alert_id or matchers")
            targets = [s for s in active if normalise(s.get("matchers") or []) == matchers
                       and s.get("createdBy") == params["created_by"]]
        for silence in targets:
            if not module.check_mode:
                api.call("DELETE", f"/silence/{silence['id']}")
            result["expired"].append(silence["id"])
        result["changed"] = bool(result["expired"])
        verb = "would expire" if module.check_mode else "expired"
        result["msg"] = f"{verb} {len(result['expired'])} silence(s)" if result["expired"] else "nothing to expire"
        module.exit_json(**result)

    ends = now + timedelta(seconds=seconds)
    result["ends_at"] = iso_seconds(ends)
    described = ", ".join(f"{m['name']}{'=' if m['isEqual'] else '!='}{'~' if m['isRegex'] else ''}{m['value']}"
                          for m in matchers)
    same = [s for s in active if normalise(s.get("matchers") or []) == matchers
            and s.get("createdBy") == params["created_by"]]
    # Already acknowledged by the same author, for long enough (a minute's slack): nothing to do.
    lasting = [s for s in same if (parse_time(s.get("endsAt")) or now) >= ends - timedelta(minutes=1)]
    if lasting:
        result.update(silence_id=lasting[0]["id"], ends_at=lasting[0]["endsAt"],
                      msg=f"silence {lasting[0]['id']} for {described} is already active until {lasting[0]['endsAt']}")
        module.exit_json(**result)
    body = {"matchers": matchers, "startsAt": iso_seconds(now), "endsAt": iso_seconds(ends),
            "createdBy": params["created_by"], "comment": params["comment"]}
    if same:
        body["id"] = same[0]["id"]  # Alertmanager replaces it: the same acknowledgement, extended
    result["changed"] = True
    if module.check_mode:
        result["msg"] = f"would {'extend' if same else 'create'} a silence for {described} until {iso_seconds(ends)}"
        module.exit_json(**result)
    answer = api.call("POST", "/silences", payload=body)
    result["silence_id"] = (answer or {}).get("silenceID")
    result["msg"] = (f"{'extended' if same else 'created'} silence {result['silence_id']} for {described} "
                     f"until {iso_seconds(ends)} ({len(selected)} alert(s) held)")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
