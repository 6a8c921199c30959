#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ikhokha_reconcile
short_description: Settle pending payments from iKhokha's status endpoint, exactly once
description:
  - Finds the payments still C(pending) that have an iKhokha paylink, asks the gateway for each
    paylink's status with a signed C(getStatus), and applies every settled result (C(SUCCESS) or
    C(FAILURE)) as its callback would have, through C(payops.apply_gateway_result) with source
    C(reconcile). A callback that arrives later for the same paylink and status is then a duplicate,
    and a result already recorded by a callback is not applied again.
  - Payments younger than O(min_age_seconds) are left alone - their callback may be in flight.
  - Check mode asks the gateway and reports what would be applied, and writes nothing.
author: payops contributors (!UNKNOWN)
options:
  since:
    description:
      - Only payments created at or after this time (ISO 8601, with a time zone). Default - all
        pending payments.
    type: str
  before:
    description:
      - Only payments created before this time (ISO 8601, with a time zone) - the end of
        payment:reconcile's day. Default - no end.
    type: str
  references:
    description:
      - Only the payments with these transaction references (payment:reconcile's lost callbacks).
        Default - every pending payment of the window.
    type: list
    elements: str
  min_age_seconds:
    description: Leave payments younger than this.
    type: int
    default: 60
  limit:
    description: At most this many payments in one run, oldest first.
    type: int
    default: 1000
  workers:
    description: Gateway calls made at once.
    type: int
    default: 8
  fail_on_gateway_error:
    description: Fail the task when the gateway could not be asked about some payment.
    type: bool
    default: true
extends_documentation_fragment:
  - betaskill.payops.payops_db
  - betaskill.payops.ikhokha
"""

EXAMPLES = r"""
- name: Reconcile payments left pending since the payment stop
  betaskill.payops.ikhokha_reconcile:
    since: "{{ switch_window_start }}"
    login_host: "{{ payops_db_host }}"
    login_password: "{{ payops_db_password }}"
    api_url: "{{ payops_ikhokha_url }}"
    app_id: "{{ payops_ikhokha_app_id }}"
    app_secret: "{{ payops_ikhokha_app_secret }}"
  register: reconciled
"""

RETURN = r"""
checked:
  description: Pending payments asked about.
  returned: always
  type: int
  sample: 12
applied:
  description: Results applied now (or that would be, in check mode).
  returned: always
  type: int
  sample: 3
duplicates:
  description: Results the database already had (a callback came first).
  returned: always
  type: int
  sample: 1
still_pending:
  description: Payments the gateway still reports as pending.
  returned: always
  type: int
  sample: 8
errors:
  description: Payments the gateway could not be asked about, with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{transaction_reference: SKILL-1-abc, error: "no answer within 10 s"}]
payments:
  description: One entry per payment asked about.
  returned: always
  type: list
  elements: dict
  sample: [{transaction_reference: SKILL-1-abc, paylink_id: PL123, gateway_status: SUCCESS, result: applied}]
"""

import json
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.ikhokha import (
    HAS_REQUESTS,
    Client,
    IkhokhaError,
    ikhokha_argument_spec,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_db import (
    connect,
    db_argument_spec,
    describe,
    first_line,
    psycopg,
)

PENDING_SQL = """
SELECT id::text, transaction_reference, gateway_response ->> 'paylinkID' AS paylink_id
  FROM public.payments
 WHERE status = 'pending'
   AND gateway_response ? 'paylinkID'
   AND created_at <= now() - make_interval(secs => %(min_age)s)
   AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
   AND (%(before)s::timestamptz IS NULL OR created_at < %(before)s::timestamptz)
   AND (%(references)s::text[] IS NULL OR transaction_reference = ANY (%(references)s::text[]))
 ORDER BY created_at
 LIMIT %(limit)s
"""


def ask(client, payment):
    try:
        status, data, _elapsed = client.get_status(payment["paylink_id"])
    except IkhokhaError as exc:
        return payment, None, str(exc)
    if status != 200 or not isinstance(data, dict):
        return payment, None, f"getStatus answered HTTP {status}"
    return payment, data, None


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(ikhokha_argument_spec())
    argument_spec.update(
        since=dict(type="str"),
        before=dict(type="str"),
        references=dict(type="list", elements="str"),
        min_age_seconds=dict(type="int", default=60),
        limit=dict(type="int", default=1000),
        workers=dict(type="int", default=8),
        fail_on_gateway_error=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_REQUESTS:
        module.fail_json(msg="the python library requests is needed on the controller")
    params = module.params

    conn = connect(module, autocommit=True, application_name="ikhokha_reconcile")
    result = dict(changed=False, checked=0, applied=0, duplicates=0, still_pending=0, errors=[], payments=[])
    try:
        with conn.cursor() as cur:
            try:
                cur.execute(
                    PENDING_SQL,
                    {"min_age": params["min_age_seconds"], "since": params["since"], "before": params["before"],
                     "references": params["references"], "limit": params["limit"]},
                )
            except psycopg.errors.InvalidDatetimeFormat:
                module.fail_json(msg=f"since={params['since']!r} or before={params['before']!r} is not a time"
                                     " (ISO 8601 with a time zone)")
            pending = cur.fetchall()
        client = Client(params["api_url"], params["app_id"], params["app_secret"],
                        params["timeout"], params["validate_certs"])
        with ThreadPoolExecutor(max_workers=max(1, params["workers"])) as pool:
            answers = list(pool.map(lambda payment: ask(client, payment), pending))
        for payment, data, error in answers:
            result["checked"] += 1
            entry = {"transaction_reference": payment["transaction_reference"], "paylink_id": payment["paylink_id"]}
            if error:
                result["errors"].append({**entry, "error": error})
                continue
            gateway_status = str(data.get("status", "")).upper()
            entry["gateway_status"] = gateway_status
            if gateway_status not in ("SUCCESS", "FAILURE"):
                result["still_pending"] += 1
                entry["result"] = "pending"
            elif module.check_mode:
                entry["result"] = "would apply"
                result["applied"] += 1
            else:
                body = {
                    "paylinkID": payment["paylink_id"],
                    "status": gateway_status,
                    "externalTransactionID": data.get("externalTransactionID") or payment["transaction_reference"],
                    "responseCode": data.get("responseCode"),
                }
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT payops.apply_gateway_result(%s, %s, %s, %s::jsonb, 'reconcile') AS outcome",
                        (payment["paylink_id"], gateway_status, payment["transaction_reference"], json.dumps(body)),
                    )
                    outcome = cur.fetchone()["outcome"]
                entry["result"] = outcome
                if outcome == "applied":
                    result["applied"] += 1
                else:
                    result["duplicates"] += 1
            result["payments"].append(entry)
    except psycopg.Error as exc:
        module.fail_json(msg=f"reconciliation against {describe(params)} failed: {first_line(exc)}", **result)
    finally:
        conn.close()
    result["changed"] = result["applied"] > 0
    result["msg"] = (
        f"{result['checked']} pending payments asked about: {result['applied']} "
        f"{'would be ' if module.check_mode else ''}settled, {result['duplicates']} already recorded, "
        f"{result['still_pending']} still pending, {len(result['errors'])} not answered"
    )
    if result["errors"] and params["fail_on_gateway_error"]:
        module.fail_json(**{**result, "msg": result["msg"] + ": " + result["errors"][0]["error"]})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
