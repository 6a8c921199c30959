#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: payops_switch
short_description: Turn one of the platform's switches on or off in the database
description:
  - Sets the app's side of a switch of the control model (C(payments_stopped), C(maintenance),
    C(lockdown)) in C(payops.switches), and records the change with who, when, why and the run in
    C(payops.switch_events), in one transaction.
  - Idempotent - a switch already in the wanted state is left as it is, with its original
    reason, operator and time, and nothing is recorded.
  - Check mode reports what would change and writes nothing.
  - Returns the state of all three switches after the change, so the edge can be made to match.
author: payops contributors (!UNKNOWN)
options:
  name:
    description: The switch. Omit with O(state=query) to read them all.
    type: str
    choices: [payments_stopped, maintenance, lockdown]
  state:
    description: C(on), C(off), or C(query) to only read.
    type: str
    choices: ["on", "off", query]
    default: query
  reason:
    description: Why. Required to turn a switch on; recorded when turning it off too.
    type: str
  operator:
    description: Who. Recorded with the change.
    type: str
    default: unknown
  run_id:
    description: The run that made the change (payops' run id, or AWX's job id).
    type: str
  environment:
    description: The environment, recorded with the change.
    type: str
extends_documentation_fragment:
  - betaskill.payops.payops_db
"""

EXAMPLES = r"""
- name: Stop new payments in the app
  betaskill.payops.payops_switch:
    name: payments_stopped
    state: "on"
    reason: "iKhokha reports double charges, INC-4711"
    operator: "{{ payops_operator }}"
    login_host: "{{ payops_db_host }}"
    login_password: "{{ payops_db_password }}"

- name: Read every switch
  betaskill.payops.payops_switch:
    state: query
  register: switches
"""

RETURN = r"""
switch:
  description: The switch as it is after the task (or would be, in check mode).
  returned: when O(name) is given
  type: dict
  sample: {name: payments_stopped, enabled: true, reason: "INC-4711", set_by: alice,
           set_at: "2026-11-27T08:00:00+00:00"}
switches:
  description: All switches after the task, by name.
  returned: always
  type: dict
  sample: {payments_stopped: {enabled: true}, maintenance: {enabled: false}, lockdown: {enabled: false}}
previous:
  description: The switch before the task.
  returned: when O(name) is given
  type: dict
  sample: {name: payments_stopped, enabled: false}
"""

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_db import (
    connect,
    db_argument_spec,
    describe,
    first_line,
    psycopg,
)

SWITCHES = ("payments_stopped", "maintenance", "lockdown")


def _as_dict(row):
    return {
        "name": row["name"],
        "enabled": bool(row["enabled"]),
        "reason": row["reason"],
        "set_by": row["set_by"],
        "set_at": row["set_at"].isoformat() if row["set_at"] else None,
    }


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(
        name=dict(type="str", choices=list(SWITCHES)),
        state=dict(type="str", choices=["on", "off", "query"], default="query"),
        reason=dict(type="str"),
        operator=dict(type="str", default="unknown"),
        run_id=dict(type="str"),
        environment=dict(type="str"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("state", "on", ("name", "reason")), ("state", "off", ("name",))],
    )
    params = module.params
    if params["state"] == "on" and not params["reason"].strip():
        module.fail_json(msg="reason must not be empty: say why the switch goes on")

    conn = connect(module, application_name="payops_switch")
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT * FROM payops.switches ORDER BY name FOR UPDATE")
            current = {row["name"]: _as_dict(row) for row in cur.fetchall()}
            missing = [name for name in SWITCHES if name not in current]
            if missing:
                module.fail_json(
                    msg=f"payops.switches in {describe(params)} lacks {', '.join(missing)}: "
                    "install payops' schema first"
                )
            result = {"changed": False, "switches": current}
            name = params["name"]
            if params["state"] == "query" or name is None:
                module.exit_json(**result)
            wanted = params["state"] == "on"
            previous = current[name]
            result["previous"] = previous
            if previous["enabled"] == wanted:
                result["switch"] = previous
                result["msg"] = f"{name} is already {'on' if wanted else 'off'}"
                module.exit_json(**result)
            now = datetime.datetime.now(datetime.UTC)
            after = {
                "name": name,
                "enabled": wanted,
                "reason": params["reason"],
                "set_by": params["operator"],
                "set_at": now.isoformat(),
            }
            if not module.check_mode:
                cur.execute(
                    "UPDATE payops.switches SET enabled = %s, reason = %s, set_by = %s, set_at = %s,"
                    " environment = %s WHERE name = %s",
                    (wanted, params["reason"], params["operator"], now, params["environment"], name),
                )
                cur.execute(
                    "INSERT INTO payops.switch_events (name, enabled, reason, set_by, set_at, run_id)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (name, wanted, params["reason"], params["operator"], now, params["run_id"]),
                )
            current[name] = after
            result.update(
                changed=True,
                switch=after,
                switches=current,
                msg=f"{name} {'would be' if module.check_mode else 'is'} now {'on' if wanted else 'off'}",
                diff={"before": {name: previous["enabled"]}, "after": {name: wanted}},
            )
    except psycopg.Error as exc:
        module.fail_json(msg=f"cannot change the switch in {describe(params)}: {first_line(exc)}")
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
