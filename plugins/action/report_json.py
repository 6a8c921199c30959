# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller half of betaskill.payops.report_json (documented in plugins/modules/report_json.py):
the report's JSON is written here, in the controller's own process, whatever host the task is for."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.betaskill.payops.plugins.module_utils.payops_report import document, write_report
from ansible_collections.betaskill.payops.plugins.modules.report_json import ARGUMENT_SPEC


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            write_report(args["path"], document(args["title"], args["rows"], args["details"]))
        except OSError as exc:
            result.update(failed=True, msg=f"cannot write {args['path']}: {exc.strerror}")
            return result
        result.update(changed=False, path=args["path"])
        return result
