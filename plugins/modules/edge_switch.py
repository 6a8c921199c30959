#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: edge_switch
short_description: Turn one switch on or off at a web host's nginx, reload it and observe it from outside
description:
  - One step that must be atomic and quick, done in order by one task, as
    M(ansible.builtin.deploy_helper) does for releases - write or remove the switch's rule file
    atomically (C(switch-<name>.conf) in O(directory), written to a temporary file beside it and
    renamed over it), test the whole nginx configuration, reload nginx gracefully, then ask nginx
    from outside, from the controller, which switches it serves, and return this host's verdict row.
  - On the web host it costs one module process; the observation runs in the controller's own
    process (the action half of this module), as a client would ask.
  - A configuration that fails the test puts the previous rule file back and fails the host;
    nginx keeps serving the previous configuration.
  - The action half first reads the rule file with one shell command (no module process); when it is
    already as wanted, the module does not run and the step only observes.
  - Idempotent - a rule file already as wanted is not written and nginx is not reloaded; when nginx
    does not serve what the file says (a run interrupted between writing and reloading) it is
    reloaded once more, and the verdict says so.
  - Fails the host, naming it, when nginx does not serve the wanted state before the deadline or
    refuses an essential path (health, webhooks) with its own page.
  - Check mode compares the file, writes, tests and reloads nothing, and the verdict says what would change.
author: payops contributors (!UNKNOWN)
options:
  name:
    description: The switch of the control model.
    type: str
    required: true
    choices: [payments_stopped, maintenance, lockdown]
  enabled:
    description: Whether the switch is to be on.
    type: bool
    required: true
  directory:
    description:
      - The folder of switch rules that nginx includes in its server block (the edge role's C(payops/server.d)).
    type: path
    required: true
  test_command:
    description: The command that tests the whole nginx configuration, as a list of arguments (C(nginx -t -q)).
    type: list
    elements: str
    required: true
  reload_command:
    description:
      - The command that reloads nginx gracefully, as a list of arguments (C(nginx -s reload),
        C(systemctl reload nginx)).
    type: list
    elements: str
    required: true
  url:
    description: The host's edge as the controller reaches it, for example C(http://web-1:80).
    type: str
    required: true
  essentials:
    description: Paths that must pass whatever the switches say, as C(METHOD /path), asked as an outsider.
    type: list
    elements: str
    default: ["GET /api/health", "POST /api/webhooks/ikhokha"]
  host_header:
    description: The Host header to send, when the site answers by name.
    type: str
  settle:
    description:
      - Seconds the wanted state must keep showing after a reload before it holds (old workers
        answer for a moment after a graceful reload). Without a reload the first answer is final.
    type: float
    default: 0.5
  timeout:
    description: Seconds to wait for nginx to serve the wanted state after a reload.
    type: float
    default: 10
  force_reload:
    description:
      - Test and reload even when the rule file is already as wanted. The action sets it itself on
        its second try, when nginx did not serve the file's state.
    type: bool
    default: false
notes:
  - The action half runs on the controller; the module half runs on the web host and does not observe.
"""

EXAMPLES = r"""
- name: Stop payments at this web host's nginx, verified from outside
  betaskill.payops.edge_switch:
    name: payments_stopped
    enabled: true
    directory: /etc/nginx/payops/server.d
    test_command: [/usr/sbin/nginx, -t, -q]
    reload_command: [systemctl, reload, nginx]
    url: "http://{{ ansible_host }}:80"
  register: edge_switch_result
"""

RETURN = r"""
row:
  description: This host's verdict, a row of the report role (component, state, value, target, detail).
  returned: always
  type: dict
  sample: {component: edge web-1, state: "on", value: "serves payments_stopped=1 after 0.21 s", target: "on",
           detail: ""}
path:
  description: The switch's rule file.
  returned: always
  type: str
  sample: /etc/nginx/payops/server.d/switch-payments_stopped.conf
reloads:
  description: How many times nginx was reloaded (0 when nothing changed, 2 when the first reload did not take).
  returned: always
  type: int
  sample: 1
observed:
  description:
    - What the controller saw - holds, seconds, blocked, essentials and switches
      (as M(betaskill.payops.edge_switch_probe) returns them).
  returned: unless in check mode
  type: dict
  sample: {holds: true, seconds: 0.21, blocked: [], essentials: {"GET /api/health": 200},
           switches: {payments_stopped: 1}}
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

SWITCHES = ["payments_stopped", "maintenance", "lockdown"]


def rule(name):
    """The rule file's content while the switch is on; the rules reading the variable are in nginx.conf."""
    return f"# Written by payops: {name} is on.\nset $payops_{name} 1;\n"


def read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write(module, path, content):
    """Atomically: a temporary file beside the rule, renamed over it."""
    descriptor, temporary = tempfile.mkstemp(prefix=".payops-", dir=os.path.dirname(path))
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(temporary, 0o644)
        module.atomic_move(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def put(module, path, content):
    if content is None:
        if os.path.exists(path):
            os.unlink(path)
    else:
        write(module, path, content)


def run(module, argv, what):
    rc, out, err = module.run_command(argv)
    if rc != 0:
        return f"{what} failed ({' '.join(argv)}): {(err or out).strip()}"
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True, choices=SWITCHES),
            enabled=dict(type="bool", required=True),
            directory=dict(type="path", required=True),
            test_command=dict(type="list", elements="str", required=True),
            reload_command=dict(type="list", elements="str", required=True),
            url=dict(type="str", required=True),
            essentials=dict(type="list", elements="str", default=["GET /api/health", "POST /api/webhooks/ikhokha"]),
            host_header=dict(type="str"),
            settle=dict(type="float", default=0.5),
            timeout=dict(type="float", default=10.0),
            force_reload=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    path = os.path.join(params["directory"], f"switch-{params['name']}.conf")
    before = read(path)
    after = rule(params["name"]) if params["enabled"] else None
    changed = before != after
    result = dict(changed=changed, path=path, reloaded=False)
    if changed:
        result["diff"] = dict(before=before or "", after=after or "", before_header=path, after_header=path)
    if module.check_mode or not (changed or params["force_reload"]):
        module.exit_json(**result)

    if changed:
        try:
            put(module, path, after)
        except OSError as exc:
            module.fail_json(msg=f"cannot write {path}: {exc.strerror}", **result)
    error = run(module, params["test_command"], "the nginx configuration test")
    if error:
        if changed:
            put(module, path, before)  # nginx keeps serving the previous configuration: so does the disk
        module.fail_json(msg=error + (f"; {path} is back as it was" if changed else ""), **result)
    error = run(module, params["reload_command"], "the reload of nginx")
    if error:
        module.fail_json(msg=error, **result)
    result["reloaded"] = True
    module.exit_json(**result)


if __name__ == "__main__":
    main()
