# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: audit_log
short_description: where the betaskill.payops.audit callback writes the audit trail
description:
  - Returns the audit callback's C(log_path) as the callback itself resolves it (C(PAYOPS_AUDIT_LOG),
    C([callback_payops_audit] log_path) or its default), so a preflight can check the trail before a
    mutating procedure starts.
  - C(ansible.builtin.config) cannot answer this for a collection's callback (it looks the options
    up under the short name while they are registered under the plugin's import path).
options: {}
"""

EXAMPLES = r"""
- name: Where the audit trail goes
  ansible.builtin.debug:
    msg: "{{ lookup('betaskill.payops.audit_log') }}"
"""

RETURN = r"""
_raw:
  description: The audit trail's path, one element.
  type: list
  elements: path
"""

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.loader import callback_loader
from ansible.plugins.lookup import LookupBase

CALLBACK = "betaskill.payops.audit"


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        callback = callback_loader.get(CALLBACK, class_only=True)
        if callback is None:
            raise AnsibleError(f"the {CALLBACK} callback cannot be loaded: is the collection installed?")
        path = C.config.get_config_value("log_path", plugin_type="callback", plugin_name=callback._load_name,
                                         variables=variables)
        return [path]
