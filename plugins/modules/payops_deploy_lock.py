#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: payops_deploy_lock
short_description: Take, keep and give back an environment's deployment lock
description:
  - One deployment per environment at a time. The lock is a row of C(payops.deploy_locks) in the
    environment's own database, so operators on different machines and AWX see the same lock.
  - O(state=acquired) takes a free lock, or fails naming who holds it, for which release, since
    when and when it last showed signs of life. Taking it again with the holder's own O(run_id) is
    a heartbeat.
  - A lock whose holder sent no heartbeat for O(stale_after) seconds is reported as stale, and
    still refused - a deployment that was killed may have left hosts half-way. It is taken over only
    when O(break_stale) names its run id.
  - O(state=heartbeat) refreshes the holder's time and fails when the lock is no longer this run's
    (someone broke it). O(state=released) gives it back; it never removes another run's lock.
  - Check mode reports whether the lock could be taken and writes nothing.
  - The table belongs to the payops schema (C(schema/migrations), installed by C(payops:install));
    the module creates nothing.
author: payops contributors (!UNKNOWN)
options:
  environment:
    description: The environment the lock guards.
    type: str
    required: true
  state:
    description: C(acquired), C(heartbeat), C(released), or C(query) to only read.
    type: str
    choices: [acquired, heartbeat, released, query]
    default: query
  run_id:
    description: The run that holds (or wants) the lock.
    type: str
  release:
    description: The release being deployed, recorded with the lock.
    type: str
  operator:
    description: Who, recorded with the lock.
    type: str
    default: unknown
  controller:
    description: The machine the deployment runs from, recorded with the lock.
    type: str
  stale_after:
    description: Seconds without a heartbeat after which a lock counts as stale.
    type: int
    default: 900
  break_stale:
    description: The run id of a stale lock to take over. A lock that is not stale is never broken.
    type: str
extends_documentation_fragment:
  - betaskill.payops.payops_db
"""

EXAMPLES = r"""
- name: Take the deploy lock
  betaskill.payops.payops_deploy_lock:
    environment: production
    state: acquired
    run_id: "{{ lookup('ansible.builtin.env', 'PAYOPS_RUN_ID') }}"
    release: "1.1.0"
    operator: alice

- name: Give it back
  betaskill.payops.payops_deploy_lock:
    environment: production
    state: released
    run_id: "{{ lookup('ansible.builtin.env', 'PAYOPS_RUN_ID') }}"
"""

RETURN = r"""
holder:
  description: The lock's row after the task (or before, when it was refused), or null when free.
  returned: always
  type: dict
  sample: {run_id: "20261127T101500Z-ab12", release: "1.1.0", operator: alice, controller: ops-1,
           acquired_at: "2026-11-27T10:15:00+00:00", heartbeat_at: "2026-11-27T10:16:40+00:00",
           heartbeat_age_seconds: 3.2}
stale:
  description: Whether the lock found was stale.
  returned: always
  type: bool
broken:
  description: The stale lock this task took over.
  returned: when O(break_stale) took a lock over
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_db import (
    connect,
    db_argument_spec,
    describe,
    first_line,
    psycopg,
)

SELECT = ("SELECT run_id, release, operator, controller, acquired_at, heartbeat_at,"
          " extract(epoch FROM now() - heartbeat_at)::float AS heartbeat_age_seconds"
          " FROM payops.deploy_locks WHERE environment = %s")


def as_dict(row):
    if row is None:
        return None
    out = dict(row)
    for key in ("acquired_at", "heartbeat_at"):
        out[key] = out[key].isoformat()
    out["heartbeat_age_seconds"] = round(out["heartbeat_age_seconds"], 1)
    return out


def describe_holder(env, holder):
    since = holder["acquired_at"][:19].replace("T", " ") + " UTC"
    return (f"the deploy lock of {env} is held by {holder['operator']} (run {holder['run_id']}, release "
            f"{holder['release']}, from {holder['controller'] or 'an unnamed machine'}) since {since}; "
            f"last heartbeat {holder['heartbeat_age_seconds']:.0f} s ago")


class Refused(Exception):
    """The lock cannot be taken or kept; the message says why, the result what was found."""

    def __init__(self, msg, result):
        super().__init__(msg)
        self.result = result


def decide(conn, params, check_mode):
    """Read the lock and change it as asked, in the caller's transaction: the result, or Refused."""
    env, run_id, state = params["environment"], params["run_id"], params["state"]
    result = {"changed": False, "holder": None, "stale": False}
    conn.execute("SELECT 1 FROM payops.deploy_locks WHERE environment = %s FOR UPDATE", (env,))
    row = conn.execute(SELECT, (env,)).fetchone()
    holder = as_dict(row)
    stale = bool(holder) and holder["heartbeat_age_seconds"] > params["stale_after"]
    result.update(holder=holder, stale=stale)
    ours = bool(holder) and holder["run_id"] == run_id
    if state == "query":
        return result
    if state == "released":
        if holder and not ours:
            result["msg"] = f"not released: {describe_holder(env, holder)}, not this run's"
            return result
        if holder and not check_mode:
            conn.execute("DELETE FROM payops.deploy_locks WHERE environment = %s AND run_id = %s", (env, run_id))
        result.update(changed=bool(holder), holder=None,
                      msg=f"the deploy lock of {env} {'is released' if holder else 'was not held'}")
        return result
    if state == "heartbeat" or ours:
        if not ours:
            raise Refused(f"this run ({run_id}) no longer holds the deploy lock of {env}: "
                          + (describe_holder(env, holder) if holder else "nobody holds it")
                          + "; stop and find out who took it over", result)
        if not check_mode:
            conn.execute("UPDATE payops.deploy_locks SET heartbeat_at = now() WHERE environment = %s", (env,))
            result["holder"] = as_dict(conn.execute(SELECT, (env,)).fetchone())
        result["msg"] = f"this run holds the deploy lock of {env}"
        return result
    # acquired, held by nobody or by another run
    if holder:
        if not (stale and params["break_stale"] == holder["run_id"]):
            if stale:
                advice = (f"; it looks stale (no heartbeat for more than {params['stale_after']} s): the "
                          "deployment may have been killed half-way. Check the hosts' releases, then take "
                          f"the lock over with break_lock={holder['run_id']}")
            elif params["break_stale"]:
                advice = "; it is not stale, so it is not broken: a deployment is running"
            else:
                advice = f"; a deployment is running: wait for it or ask {holder['operator']}"
            raise Refused(describe_holder(env, holder) + advice, result)
        result["broken"] = holder
    if not check_mode:
        conn.execute("DELETE FROM payops.deploy_locks WHERE environment = %s", (env,))
        conn.execute(
            "INSERT INTO payops.deploy_locks (environment, run_id, release, operator, controller)"
            " VALUES (%s, %s, %s, %s, %s)",
            (env, run_id, params["release"], params["operator"], params["controller"]))
        result["holder"] = as_dict(conn.execute(SELECT, (env,)).fetchone())
    result.update(changed=True, msg=f"the deploy lock of {env} "
                  + ("would be taken" if check_mode else "is taken")
                  + (f", taking over stale run {holder['run_id']}" if holder else ""))
    return result


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(
        environment=dict(type="str", required=True),
        state=dict(type="str", choices=["acquired", "heartbeat", "released", "query"], default="query"),
        run_id=dict(type="str"),
        release=dict(type="str"),
        operator=dict(type="str", default="unknown"),
        controller=dict(type="str"),
        stale_after=dict(type="int", default=900),
        break_stale=dict(type="str"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("state", "acquired", ("run_id",)), ("state", "heartbeat", ("run_id",)),
                     ("state", "released", ("run_id",))],
    )
    params = module.params
    if params["stale_after"] < 0:
        module.fail_json(msg="stale_after must be 0 or more seconds")
    conn = connect(module, application_name="payops_deploy_lock")
    try:
        with conn.transaction():
            result = decide(conn, params, module.check_mode)
    except Refused as exc:
        module.fail_json(msg=str(exc), **exc.result)
    except psycopg.Error as exc:
        module.fail_json(msg=f"cannot use the deploy lock in {describe(params)}: {first_line(exc)}")
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
