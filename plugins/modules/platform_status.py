#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: platform_status
short_description: Ask the edge, the database, Prometheus and Alertmanager for the incident screen, all at once
description:
  - The probes of C(status:emergency) - the site's health through the edge (C(/api/health)), the
    switches and the payment queue from the database, Prometheus' readiness (C(/-/ready)) and
    Alertmanager's firing alerts - asked concurrently, each with its own timeout, so the screen
    takes as long as the slowest answer, not the sum.
  - Controller-side - the action half of this module asks them from the controller's own process
    (no module process); run as a plain module it does the same on the target.
  - A component that does not answer is a verdict (C(status) null, C(reachable) false, with the
    reason in C(msg)), never a task failure.
  - Read-only; runs in check mode too.
author: payops contributors (!UNKNOWN)
options:
  public_url:
    description: The site as users reach it (C(payops_public_url)).
    type: str
    required: true
  prometheus_url:
    description: Prometheus' base URL.
    type: str
    required: true
  alertmanager_url:
    description: Alertmanager's base URL.
    type: str
    required: true
  backlog_minutes:
    description: A pending payment with a paylink older than this is webhook backlog.
    type: int
    default: 5
  timeout:
    description: Seconds each HTTP probe waits for its answer.
    type: float
    default: 5.0
  validate_certs:
    description: Check the TLS certificates of the HTTP probes.
    type: bool
    default: true
  login_host:
    description: The database host (default C(PGHOST)).
    type: str
    default: 127.0.0.1
  login_port:
    description: The database port (default C(PGPORT)).
    type: int
    default: 5432
  login_db:
    description: The database (default C(PGDATABASE)).
    type: str
    default: postgres
    aliases: [db]
  login_user:
    description: The database user (default C(PGUSER)).
    type: str
    default: postgres
  login_password:
    description: Its password (default C(PGPASSWORD)).
    type: str
  ssl_mode:
    description: libpq's sslmode (default C(PGSSLMODE)).
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  connect_timeout:
    description: Seconds to wait for the database connection.
    type: int
    default: 10
"""

EXAMPLES = r"""
- name: Ask every component at once
  betaskill.payops.platform_status:
    public_url: "{{ payops_public_url }}"
    prometheus_url: "{{ payops_prometheus_url }}"
    alertmanager_url: "{{ payops_alertmanager_url }}"
    connect_timeout: 5
  register: status
"""

RETURN = r"""
health:
  description: The edge's answer to C(/api/health) - C(status) (null without an answer), C(json), C(msg), C(elapsed_ms).
  returned: always
  type: dict
database:
  description: C(reachable), the screen's C(rows) (kind, name, value, reason, set_by, set_at), C(msg), C(elapsed_ms).
  returned: always
  type: dict
prometheus:
  description: C(status) of C(/-/ready), C(msg), C(elapsed_ms).
  returned: always
  type: dict
alertmanager:
  description: C(status), the names of the C(firing) alerts (sorted, each once), C(msg), C(elapsed_ms).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_db import db_argument_spec
from ansible_collections.betaskill.payops.plugins.module_utils.payops_status import gather

ARGUMENT_SPEC = dict(
    public_url=dict(type="str", required=True),
    prometheus_url=dict(type="str", required=True),
    alertmanager_url=dict(type="str", required=True),
    backlog_minutes=dict(type="int", default=5),
    timeout=dict(type="float", default=5.0),
    validate_certs=dict(type="bool", default=True),
    **db_argument_spec(),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(changed=False, **gather(module.params))


if __name__ == "__main__":
    main()
