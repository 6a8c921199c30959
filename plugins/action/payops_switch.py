# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller half of betaskill.payops.payops_switch (documented in
plugins/modules/payops_switch.py): the switch is set from the controller's own process, so the
first change an emergency command makes costs no module process."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.betaskill.payops.plugins.module_utils.payops_switches import (
    REQUIRED_IF,
    SwitchError,
    apply,
    argument_spec,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec(), required_if=REQUIRED_IF)
        try:
            result.update(apply(args, bool(self._task.check_mode)))
        except SwitchError as exc:
            result.update(failed=True, msg=str(exc))
        return result
