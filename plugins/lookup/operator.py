# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: operator
short_description: who runs this procedure, as the audit trail records it
description:
  - The person who launched the AWX job (C(awx_user_name)), else the AWX schedule or workflow that
    did; under C(payops run) its C(PAYOPS_OPERATOR); otherwise the local user, with who used sudo.
  - The same answer the C(betaskill.payops.audit) callback records, for modules that write the
    operator down (switch events, deployments, backups, hotfixes).
options: {}
"""

EXAMPLES = r"""
- name: Set the payment stop, naming who did it
  betaskill.payops.payops_switch:
    name: payments_stopped
    state: "on"
    reason: "{{ reason }}"
    operator: "{{ lookup('betaskill.payops.operator') }}"
"""

RETURN = r"""
_raw:
  description: The operator's name, one element.
  type: list
  elements: str
"""

from ansible.plugins.lookup import LookupBase
from ansible_collections.betaskill.payops.plugins.module_utils.payops_operator import identify


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [identify(variables or {})[1]]
