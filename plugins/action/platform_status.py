# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller half of betaskill.payops.platform_status (documented in
plugins/modules/platform_status.py): the incident screen's probes asked from the controller's own
process, concurrently, so the screen costs no module process."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.betaskill.payops.plugins.module_utils.payops_status import gather
from ansible_collections.betaskill.payops.plugins.modules.platform_status import ARGUMENT_SPEC


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        result.update(changed=False, **gather(args))
        return result
