#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: edge_switch_probe
short_description: Observe from outside which switches a web host's nginx serves
description:
  - Asks a web host's nginx, as a client would, for the switch states it has loaded
    (C(/.payops/switches), answered to operators only) and waits until the wanted state shows or
    the deadline passes - a graceful reload takes effect when the new workers answer, not when
    the reload command returns.
  - Then asks, as a client outside the operator allowlist (the header C(X-Payops-Probe) set to C(outside)),
    for the essentials that no switch may block - the health endpoint and the webhook path - and
    reports any that nginx refused with its own page.
  - One module run polls in-process; an C(until) loop around C(uri) would cost a module run per try.
  - Read-only; in check mode it observes as well.
author: payops contributors (!UNKNOWN)
options:
  url:
    description: The host's edge, for example C(http://web-1:80).
    type: str
    required: true
  switch:
    description: The switch to wait for. Omit to only read the states.
    type: str
    choices: [payments_stopped, maintenance, lockdown]
  enabled:
    description: The state to wait for.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the state to show.
    type: float
    default: 10
  settle:
    description:
      - Seconds the wanted state must keep showing, without an answer in the old state, before it
        holds. After a graceful reload the old workers still accept connections for a moment, so a
        first answer in the new state is not yet proof. C(0) takes the first answer (no reload
        happened).
    type: float
    default: 0.5
  essentials:
    description: Paths that must pass whatever the switches say, as C(METHOD /path).
    type: list
    elements: str
    default: ["GET /api/health", "POST /api/webhooks/ikhokha"]
  host_header:
    description: The Host header to send, when the site answers by name.
    type: str
"""

EXAMPLES = r"""
- name: Wait until web-1 serves the payment stop
  betaskill.payops.edge_switch_probe:
    url: "http://{{ ansible_host }}:80"
    switch: payments_stopped
    enabled: true
  delegate_to: localhost
"""

RETURN = r"""
switches:
  description: The switch states nginx serves (1 on, 0 off), as last seen.
  returned: when the host answered
  type: dict
  sample: {payments_stopped: 1, maintenance: 0, lockdown: 0}
holds:
  description: Whether the wanted state showed before the deadline.
  returned: always
  type: bool
  sample: true
seconds:
  description: How long it took until the wanted state showed for good (or the time waited).
  returned: always
  type: float
  sample: 0.21
blocked:
  description: Essentials that nginx refused with its own page (never expected).
  returned: always
  type: list
  elements: str
  sample: []
essentials:
  description: The HTTP status of each essential, as an outsider sees it.
  returned: always
  type: dict
  sample: {"GET /api/health": 200, "POST /api/webhooks/ikhokha": 401}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_edge_probe import (
    ESSENTIALS,
    SWITCHES,
    observe,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            switch=dict(type="str", choices=list(SWITCHES)),
            enabled=dict(type="bool", default=True),
            timeout=dict(type="float", default=10.0),
            settle=dict(type="float", default=0.5),
            essentials=dict(type="list", elements="str", default=list(ESSENTIALS)),
            host_header=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result, error = observe(params["url"], switch=params["switch"], enabled=params["enabled"],
                            timeout=params["timeout"], settle=params["settle"],
                            essentials=params["essentials"], host_header=params["host_header"])
    if error:
        module.fail_json(msg=error, changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
