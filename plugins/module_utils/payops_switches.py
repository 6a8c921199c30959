# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The app's side of a switch (payops.switches, payops.switch_events), set in one transaction.

One implementation for betaskill.payops.payops_switch, whether it runs as a module process or in
the controller's own process (its action half, which the switch procedures use: the database
switch is the first change an emergency command makes, and a module process would cost it a
second of Python start-up and imports).
"""

from __future__ import annotations

import datetime

from ansible_collections.betaskill.payops.plugins.module_utils import payops_db
from ansible_collections.betaskill.payops.plugins.module_utils.payops_edge_probe import SWITCHES


class SwitchError(Exception):
    """The switch could not be read or set; the message names the database, never its password."""


def argument_spec():
    spec = payops_db.db_argument_spec()
    spec.update(
        name=dict(type="str", choices=list(SWITCHES)),
        state=dict(type="str", choices=["on", "off", "query"], default="query"),
        reason=dict(type="str"),
        operator=dict(type="str", default="unknown"),
        run_id=dict(type="str"),
        environment=dict(type="str"),
    )
    return spec


REQUIRED_IF = [("state", "on", ("name", "reason")), ("state", "off", ("name",))]


class _Params:
    """What payops_db.connect_or_error reads from a module: its params."""

    def __init__(self, params):
        self.params = params


def _as_dict(row):
    return {
        "name": row["name"],
        "enabled": bool(row["enabled"]),
        "reason": row["reason"],
        "set_by": row["set_by"],
        "set_at": row["set_at"].isoformat() if row["set_at"] else None,
    }


def apply(params, check_mode):
    """The task's result: every switch after the change, the switch before and after, a diff."""
    if params["state"] == "on" and not params["reason"].strip():
        raise SwitchError("reason must not be empty: say why the switch goes on")
    if not payops_db.HAS_PSYCOPG:
        raise SwitchError("psycopg (version 3) is required on the controller: pip install 'psycopg[binary]'")
    conn, error = payops_db.connect_or_error(_Params(params), autocommit=False, application_name="payops_switch")
    if error:
        raise SwitchError(error)
    where = payops_db.describe(params)
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT * FROM payops.switches ORDER BY name FOR UPDATE")
            current = {row["name"]: _as_dict(row) for row in cur.fetchall()}
            missing = [name for name in SWITCHES if name not in current]
            if missing:
                raise SwitchError(
                    f"payops.switches in {where} lacks {', '.join(missing)}: install payops' schema first"
                )
            result = {"changed": False, "switches": current}
            name = params["name"]
            if params["state"] == "query" or name is None:
                return result
            wanted = params["state"] == "on"
            previous = current[name]
            result["previous"] = previous
            if previous["enabled"] == wanted:
                result.update(switch=previous, msg=f"{name} is already {'on' if wanted else 'off'}")
                return result
            now = datetime.datetime.now(datetime.UTC)
            after = {
                "name": name,
                "enabled": wanted,
                "reason": params["reason"],
                "set_by": params["operator"],
                "set_at": now.isoformat(),
            }
            if not check_mode:
                cur.execute(
                    "UPDATE payops.switches SET enabled = %s, reason = %s, set_by = %s, set_at = %s,"
                    " environment = %s WHERE name = %s",
                    (wanted, params["reason"], params["operator"], now, params["environment"], name),
                )
                cur.execute(
                    "INSERT INTO payops.switch_events (name, enabled, reason, set_by, set_at, run_id)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (name, wanted, params["reason"], params["operator"], now, params["run_id"]),
                )
            current[name] = after
            result.update(
                changed=True,
                switch=after,
                switches=current,
                msg=f"{name} {'would be' if check_mode else 'is'} now {'on' if wanted else 'off'}",
                diff={"before": {name: previous["enabled"]}, "after": {name: wanted}},
            )
            return result
    except payops_db.psycopg.Error as exc:
        raise SwitchError(f"cannot change the switch in {where}: {payops_db.first_line(exc)}") from None
    finally:
        conn.close()
