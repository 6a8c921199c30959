#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: report_document
short_description: Write a report as one self-contained HTML page, its JSON and a Markdown summary
description:
  - Judges each KPI against its target (C(met), C(missed), C(no data) when its value is null, never
    0; C(info) without a target), and writes three files to O(dir) on the controller -
    C(<name>.html) (a Jinja2 template, inline CSS, charts as inline SVG drawn by matplotlib's Agg
    backend with a title, axes with units and the target as a line; no script, font or image
    loaded from anywhere), C(<name>.json) (the same numbers, with the verdict rows the report role
    prints) and C(<name>.md).
  - Every string of the report is scrubbed first - card numbers (13 to 19 digits passing the Luhn
    check), e-mail addresses, and the values of the play's secret-named variables are replaced by
    C(<redacted>).
  - With O(upload), the three files are then uploaded to C(s3://<bucket>/<key_prefix>/), encrypted
    server-side (AES256), with retries on transient errors - not in check mode.
  - Controller-side - the action half writes (and uploads) in the controller's own process, no
    module process. The files are the run's own artefacts - written in check mode too; the task is
    changed when it uploaded. The report role's C(document) entry point uses it and announces the report.
author: payops contributors (!UNKNOWN)
options:
  dir:
    description: The folder the three files are written to, on the controller.
    type: path
    required: true
  name:
    description: The files' name, without extension (C(daily-summary)).
    type: str
    required: true
  title:
    description: The report's heading.
    type: str
    required: true
  period:
    description: What the report covers - C(label), C(start), C(end), C(timezone).
    type: dict
    default: {}
  summary:
    description: One paragraph, shown first and sent to the team.
    type: str
    default: ""
  kpis:
    description: The key figures, each judged against its target.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: What is measured.
        type: str
        required: true
      value:
        description: The measurement (a number), or null when the source has nothing (shown as no data).
        type: raw
      unit:
        description: Its unit (C(%), C(s), C(ZAR cents)).
        type: str
        default: ""
      target:
        description: The runbook's target, in the same unit.
        type: float
      op:
        description: How the value must compare with the target.
        type: str
        choices: [">", ">=", "<", "<=", "=="]
      detail:
        description: One line of explanation (why there is no data, what was counted).
        type: str
        default: ""
      digits:
        description: Decimals shown for a fraction.
        type: int
        default: 1
  tables:
    description:
      - Tables - C(title), C(columns) (a list of names), C(rows) (lists of cells, null is no data),
        C(empty) (what to say without rows).
    type: list
    elements: dict
    default: []
  charts:
    description:
      - Charts - C(title), C(x_label), C(y_label) (with its unit in brackets), C(points) (a list of C([x, y])),
        C(target) (drawn as a dashed line), optional C(target_label), C(kind) (C(bar) or C(line)), C(y_min), C(y_max).
    type: list
    elements: dict
    default: []
  details:
    description: More facts kept in the JSON only.
    type: dict
    default: {}
  upload:
    description: Where to upload the three files; not given, nothing is uploaded.
    type: dict
    suboptions:
      bucket:
        description: The bucket.
        type: str
        required: true
      key_prefix:
        description: The objects' prefix (C(reports/daily-summary/2026-12-02/<run id>)).
        type: str
        required: true
      endpoint_url:
        description: The S3 endpoint (empty for AWS).
        type: str
      region:
        description: The bucket's region.
        type: str
        default: us-east-1
      access_key:
        description: The access key id (empty - boto3's own chain).
        type: str
      secret_key:
        description: The secret access key.
        type: str
      encrypt:
        description: Server-side encryption (AES256).
        type: bool
        default: true
  html_template:
    description: The page's Jinja2 template (the report role's C(report.html.j2)).
    type: path
    required: true
  markdown_template:
    description: The summary's Jinja2 template (the report role's C(report.md.j2)).
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Write the daily summary
  betaskill.payops.report_document:
    dir: "{{ payops_report_dir }}"
    name: daily-summary
    title: Daily summary of 2026-12-02
    period:
      label: "2026-12-02"
      start: "2026-12-01T22:00:00Z"
      end: "2026-12-02T22:00:00Z"
      timezone: Africa/Johannesburg
    kpis:
      - {name: payment success rate, value: 97.5, unit: "%", target: 95, op: ">"}
      - {name: security incidents, value: null, target: 0, op: "==", detail: "public.security_events is empty"}
    html_template: "{{ role_path }}/templates/report.html.j2"
    markdown_template: "{{ role_path }}/templates/report.md.j2"
"""

RETURN = r"""
html:
  description: The page written.
  returned: always
  type: str
  sample: /srv/payops/.payops/runs/20261203-180000-ab12/daily-summary.html
json:
  description: The JSON written.
  returned: always
  type: str
  sample: /srv/payops/.payops/runs/20261203-180000-ab12/daily-summary.json
markdown:
  description: The Markdown summary written.
  returned: always
  type: str
  sample: /srv/payops/.payops/runs/20261203-180000-ab12/daily-summary.md
markdown_text:
  description: The Markdown summary itself (for the notification).
  returned: always
  type: str
  sample: "# Daily summary of 2026-12-02 ..."
verdicts:
  description: How many KPIs have each verdict.
  returned: always
  type: dict
  sample: {met: 5, missed: 1, "no data": 2, info: 3}
uploaded:
  description: The objects uploaded (none in check mode or without O(upload)).
  returned: always
  type: list
  elements: str
  sample: [reports/daily-summary/2026-12-02/20261203-180000-ab12/daily-summary.html]
missed:
  description: The KPIs that missed their target.
  returned: always
  type: list
  elements: str
  sample: [payment success rate]
"""

from ansible.module_utils.basic import AnsibleModule

KPI_SPEC = dict(
    name=dict(type="str", required=True),
    value=dict(type="raw"),
    unit=dict(type="str", default=""),
    target=dict(type="float"),
    op=dict(type="str", choices=[">", ">=", "<", "<=", "=="]),
    detail=dict(type="str", default=""),
    digits=dict(type="int", default=1),
)

ARGUMENT_SPEC = dict(
    dir=dict(type="path", required=True),
    name=dict(type="str", required=True),
    title=dict(type="str", required=True),
    period=dict(type="dict", default={}),
    summary=dict(type="str", default=""),
    kpis=dict(type="list", elements="dict", default=[], options=KPI_SPEC),
    tables=dict(type="list", elements="dict", default=[]),
    charts=dict(type="list", elements="dict", default=[]),
    details=dict(type="dict", default={}),
    upload=dict(type="dict", options=dict(
        bucket=dict(type="str", required=True),
        key_prefix=dict(type="str", required=True, no_log=False),
        endpoint_url=dict(type="str"),
        region=dict(type="str", default="us-east-1"),
        access_key=dict(type="str", no_log=True),
        secret_key=dict(type="str", no_log=True),
        encrypt=dict(type="bool", default=True),
    )),
    html_template=dict(type="path", required=True),
    markdown_template=dict(type="path", required=True),
)


def main():
    # The action plugin of the same name does the work on the controller; this runs only when the
    # module is called without it (it cannot be: the action is always found first).
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(msg="betaskill.payops.report_document runs on the controller (its action plugin)")


if __name__ == "__main__":
    main()
