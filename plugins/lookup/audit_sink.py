# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: audit_sink
short_description: where the betaskill.payops.audit callback records this run, and whether it can
description:
  - Resolves the audit callback's options as the callback itself does (C(PAYOPS_AUDIT_DSN) or
    C([callback_payops_audit] postgres_dsn) for the PostgreSQL sink; otherwise C(PAYOPS_AUDIT_LOG),
    C([callback_payops_audit] log_path) or its default for the file) and checks, on the controller,
    without a module process and without writing, that the sink can take this run's events.
  - For the file, that it exists (the callback creates it when the run starts) and is writable; for
    PostgreSQL, that the database answers and the DSN's role may execute C(payops.audit_append).
  - The mutating procedures' preflight (the role betaskill.payops.preflight) refuses to start on a
    sink that cannot be written, except the switches that turn a protection on, which go ahead and
    say so.
  - C(ansible.builtin.config) cannot answer this for a collection's callback (it looks the options
    up under the short name while they are registered under the plugin's import path).
options: {}
"""

EXAMPLES = r"""
- name: Where this run is audited
  ansible.builtin.debug:
    msg: "{{ lookup('betaskill.payops.audit_sink') }}"
"""

RETURN = r"""
_raw:
  description: One mapping.
  type: list
  elements: dict
  contains:
    sink:
      description: C(file) or C(postgres).
      type: str
    where:
      description: The file's path, or the database as user@host:port/db (never the password).
      type: str
    enabled:
      description: Whether the callback is in C(callbacks_enabled).
      type: bool
    writable:
      description: Whether the run's events can be recorded there.
      type: bool
    state:
      description: C(writable), C(missing), C(not-installed), C(refused), C(unreachable) or C(disabled).
      type: str
    problem:
      description: What is wrong, in one sentence, or null.
      type: str
"""

import os

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.loader import callback_loader
from ansible.plugins.lookup import LookupBase
from ansible_collections.betaskill.payops.plugins.module_utils.payops_audit import describe_dsn, probe_sink

CALLBACK = "betaskill.payops.audit"


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        callback = callback_loader.get(CALLBACK, class_only=True)
        if callback is None:
            raise AnsibleError(f"the {CALLBACK} callback cannot be loaded: is the collection installed?")

        def option(name):
            return C.config.get_config_value(name, plugin_type="callback", plugin_name=callback._load_name,
                                             variables=variables)

        enabled = CALLBACK in (C.CALLBACKS_ENABLED or [])
        dsn = option("postgres_dsn")
        if dsn:
            answer = {"sink": "postgres", "where": describe_dsn(dsn)}
            state, problem = probe_sink(dsn)
        else:
            path = os.path.expanduser(option("log_path"))
            answer = {"sink": "file", "where": path}
            if not os.path.exists(path):
                state, problem = "missing", f"{path} does not exist (the callback could not create it)"
            elif not os.access(path, os.W_OK) or not os.path.isfile(path):
                state, problem = "refused", f"{path} is not a writable file"
            else:
                state, problem = "writable", None
        if not enabled:
            state, problem = "disabled", (f"the {CALLBACK} callback is not enabled (callbacks_enabled = {CALLBACK} "
                                          "in ansible.cfg)")
        return [{**answer, "enabled": enabled, "writable": state == "writable", "state": state, "problem": problem}]
