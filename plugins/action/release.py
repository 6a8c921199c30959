# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller half of betaskill.payops.release (documented in plugins/modules/release.py).

For state=unpacked the artefact is on the controller: it is copied into the host's temporary folder
and the module unpacks it from there, in the same module process that looks at the markers, links
the shared files and checks them (ansible.builtin.unarchive spends a remote stat and its own module
process on top of the copy). Over a local connection without become the controller's file is the
host's file: nothing is copied. state=current runs the module as it is.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

MODULE = "betaskill.payops.release"


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        source = args.get("src")
        local = self._connection.transport in ("local", "ansible.builtin.local") and not self._play_context.become
        remote_src = boolean(args.get("remote_src", False), strict=False)
        copy = args.get("state") == "unpacked" and bool(source) and not remote_src and not local
        try:
            if copy:
                source = os.path.expanduser(source)
                if not os.path.isfile(source):
                    raise AnsibleActionFail(f"the release's artefact {source} is not on the controller")
                if self._connection._shell.tmpdir is None:
                    self._make_tmp_path()
                remote = self._connection._shell.join_path(self._connection._shell.tmpdir, "artefact")
                self._transfer_file(source, remote)
                self._fixup_perms2((self._connection._shell.tmpdir, remote))
                args.update(src=remote, remote_src=True)
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
        finally:
            if copy:
                self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
