# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller half of betaskill.payops.edge_switch (documented in plugins/modules/edge_switch.py).

The module half runs on the web host: the rule file, the configuration test and the reload, one
module process, spent only when the file is not as wanted already (read first with one shell
command). This half then observes the host's nginx from the controller, in this process
(an HTTP client, no module process of its own), reloads once more through the module when nginx
does not serve what the file says, and returns the host's verdict row; a host that does not hold
fails, named in the message.
"""

from __future__ import annotations

import shlex

from ansible.plugins.action import ActionBase
from ansible_collections.betaskill.payops.plugins.module_utils.payops_edge_probe import (
    ESSENTIALS,
    SWITCHES,
    observe,
)
from ansible_collections.betaskill.payops.plugins.modules.edge_switch import rule

MODULE = "betaskill.payops.edge_switch"
UNKNOWN = object()  # the rule file could not be read: the module finds out
ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True, choices=list(SWITCHES)),
    enabled=dict(type="bool", required=True),
    directory=dict(type="path", required=True),
    test_command=dict(type="list", elements="str", required=True),
    reload_command=dict(type="list", elements="str", required=True),
    url=dict(type="str", required=True),
    essentials=dict(type="list", elements="str", default=list(ESSENTIALS)),
    host_header=dict(type="str"),
    settle=dict(type="float", default=0.5),
    timeout=dict(type="float", default=10.0),
    force_reload=dict(type="bool", default=False),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        host = (task_vars or {}).get("inventory_hostname", "?")
        name = args["name"]
        wanted = "on" if args["enabled"] else "off"
        row = dict(component=f"edge {host}", state=wanted, value="", target=wanted, detail="")
        result.update(row=row, reloads=0)

        path = f"{args['directory'].rstrip('/')}/switch-{name}.conf"
        if not args["force_reload"] and self._rule_on_host(path) == (rule(name) if args["enabled"] else None):
            # Already as wanted on disk (read with one shell command): nothing to write, only to observe.
            applied = {"changed": False, "reloaded": False, "path": path}
        else:
            applied = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        result["path"] = applied.get("path", "")
        if "diff" in applied:
            result["diff"] = applied["diff"]
        if applied.get("failed"):
            return self._down(result, row, name, host, "failed", applied.get("msg", "the module failed"))
        changed = bool(applied.get("changed"))
        result["changed"] = changed
        if self._task.check_mode:
            row["value"] = ("would turn " if changed else "already ") + wanted
            return result

        reloads = 1 if applied.get("reloaded") else 0
        # Without a reload the first answer is final; after one, old workers answer for a moment
        # (a busy host takes longer to start the new ones: 3 s before trying a second reload).
        observed, error = self._observe(args, timeout=min(3.0, args["timeout"]) if reloads else 0.0,
                                        settle=args["settle"] if reloads else 0.0)
        repaired = False
        if error is None and not observed["holds"]:
            # nginx does not serve what the file says (a run interrupted between writing and
            # reloading, or a reload that did not take): reload once more, then look again.
            again = self._execute_module(module_name=MODULE, module_args={**args, "force_reload": True},
                                         task_vars=task_vars)
            if again.get("failed"):
                result["reloads"] = reloads
                return self._down(result, row, name, host, "failed", again.get("msg", "the reload failed"))
            reloads += 1
            repaired = True
            result["changed"] = True
            observed, error = self._observe(args, timeout=args["timeout"], settle=args["settle"])
        result.update(observed=observed, reloads=reloads)
        if error is not None:
            return self._down(result, row, name, host, "unreachable", error)
        row["value"] = (f"serves {name}={observed.get('switches', {}).get(name, '?')}"
                        f" after {observed['seconds']} s")
        if observed["blocked"]:
            return self._down(result, row, name, host, row["value"],
                              "essentials blocked: " + ", ".join(observed["blocked"]))
        if not observed["holds"]:
            return self._down(result, row, name, host, row["value"],
                              "nginx did not take the switch within the deadline")
        if repaired:
            row["detail"] = ("nginx served the previous state until it was reloaded a second time" if reloads > 1
                             else "nginx did not serve the file until it was reloaded (an earlier run did not reload)")
        return result

    def _rule_on_host(self, path):
        """The rule file's content on the host, None when it is absent, UNKNOWN when it cannot be told."""
        command = f"test -e {shlex.quote(path)} || exit 3; cat -- {shlex.quote(path)}"
        answer = self._low_level_execute_command(command, sudoable=True)
        if answer.get("rc") == 3:
            return None
        if answer.get("rc") == 0:
            return answer.get("stdout", "")
        return UNKNOWN

    def _observe(self, args, timeout, settle):
        return observe(args["url"], switch=args["name"], enabled=args["enabled"], timeout=timeout, settle=settle,
                       essentials=args["essentials"], host_header=args["host_header"])

    @staticmethod
    def _down(result, row, name, host, value, detail):
        row.update(state="down", value=value, detail=detail)
        result["failed"] = True
        result["msg"] = f"{name} is not {row['target']} at {host}: {value} {detail}".strip()
        return result
