# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller half of betaskill.payops.edge_switch (documented in plugins/modules/edge_switch.py).

The module half runs on the web host: the rule file, the configuration test and the reload, one
module process. This half then observes the host's nginx from the controller, in this process
(an HTTP client, no module process of its own), reloads once more through the module when nginx
does not serve what the file says, and returns the host's verdict row; a host that does not hold
fails, named in the message.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.betaskill.payops.plugins.module_utils.payops_edge_probe import (
    ESSENTIALS,
    SWITCHES,
    observe,
)

MODULE = "betaskill.payops.edge_switch"
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
    known_absent=dict(type="list", elements="str", choices=list(SWITCHES), default=[]),
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

        if not args["enabled"] and name in args["known_absent"] and not self._task.check_mode:
            # An earlier step of this run found the file absent: nothing to write, only to observe.
            applied = {"changed": False, "reloaded": False, "absent": args["known_absent"],
                       "path": f"{args['directory']}/switch-{name}.conf"}
        else:
            applied = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        result["path"] = applied.get("path", "")
        result["absent"] = applied.get("absent", [])
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
            result["absent"] = again.get("absent", [])
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
            row["detail"] = "nginx served the previous state until it was reloaded a second time"
        return result

    def _observe(self, args, timeout, settle):
        return observe(args["url"], switch=args["name"], enabled=args["enabled"], timeout=timeout, settle=settle,
                       essentials=args["essentials"], host_header=args["host_header"])

    @staticmethod
    def _down(result, row, name, host, value, detail):
        row.update(state="down", value=value, detail=detail)
        result["failed"] = True
        result["msg"] = f"{name} is not {row['target']} at {host}: {value} {detail}".strip()
        return result
