#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: report_json
short_description: Keep a procedure's verdict rows as a JSON file on the controller
description:
  - Writes C({title, time, rows, details}) to O(path) atomically (a temporary file beside it,
    renamed over it), mode C(0640), creating its folder with mode C(0750).
  - Controller-side bookkeeping - the action half of this module writes the file in the
    controller's own process, so a report costs no module process; the report role uses it.
  - The report is the run's own artefact, not a change to the platform - written in check mode
    too, and never reported as changed.
author: payops contributors (!UNKNOWN)
options:
  path:
    description: The JSON file, on the controller.
    type: path
    required: true
  title:
    description: The report's heading.
    type: str
    default: payops report
  rows:
    description: The verdict rows (component, state, value, target, detail).
    type: list
    elements: dict
    default: []
  details:
    description: More facts kept with the rows.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Keep the verdicts as JSON
  betaskill.payops.report_json:
    path: "{{ payops_report_dir }}/switch-payments_stopped-on.json"
    title: payments_stopped on in production
    rows: "{{ rows }}"
"""

RETURN = r"""
path:
  description: The file written.
  returned: always
  type: str
  sample: /srv/payops/.payops/runs/20261203-072800-ab12/switch-payments_stopped-on.json
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_report import document, write_report

ARGUMENT_SPEC = dict(
    path=dict(type="path", required=True),
    title=dict(type="str", default="payops report"),
    rows=dict(type="list", elements="dict", default=[]),
    details=dict(type="dict", default={}),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    try:
        write_report(params["path"], document(params["title"], params["rows"], params["details"]))
    except OSError as exc:
        module.fail_json(msg=f"cannot write {params['path']}: {exc.strerror}")
    module.exit_json(changed=False, path=params["path"])


if __name__ == "__main__":
    main()
