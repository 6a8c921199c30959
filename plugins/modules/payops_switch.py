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
  - Controller-side - the action half of this module sets the switch from the controller's own
    process (no module process - the emergency commands make this change first, and it costs them
    milliseconds instead of a second); run as a plain module it does the same on the target.
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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_switches import (
    REQUIRED_IF,
    SwitchError,
    apply,
    argument_spec,
)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, required_if=REQUIRED_IF)
    try:
        result = apply(module.params, module.check_mode)
    except SwitchError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
