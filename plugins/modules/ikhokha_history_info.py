#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ikhokha_history_info
short_description: Match a window's payments against iKhokha's payments history
description:
  - Reads the payments created in [O(since), O(before)) that have an iKhokha paylink, and the
    gateway's C(payments/history) (signed C(GET), the window's UTC days and one either side), and
    matches them by paylink id, else by external transaction id.
  - "Findings - C(lost_callback) (settled at the gateway, pending here: safe to settle, see
    M(betaskill.payops.ikhokha_reconcile)), C(completed_not_paid) (completed here, failed, pending or
    unknown at the gateway), C(failed_but_paid), C(amount_mismatch), C(currency_mismatch),
    C(unknown_at_gateway) and C(unknown_here). Only lost callbacks are safe to settle; the rest is
    for a person."
  - Pending payments younger than O(min_age_seconds) are in flight, not lost.
  - Read-only; check mode reads the same.
author: payops contributors (!UNKNOWN)
options:
  since:
    description: The window's start, ISO 8601 with a time zone.
    type: str
    required: true
  before:
    description: The window's end (not in it), ISO 8601 with a time zone.
    type: str
    required: true
  min_age_seconds:
    description: A pending payment younger than this is in flight (its callback may be on its way).
    type: int
    default: 60
extends_documentation_fragment:
  - betaskill.payops.payops_db
  - betaskill.payops.ikhokha
"""

EXAMPLES = r"""
- name: Match yesterday's payments against the gateway
  betaskill.payops.ikhokha_history_info:
    since: "2026-12-01T22:00:00Z"
    before: "2026-12-02T22:00:00Z"
  register: matched
"""

RETURN = r"""
counts:
  description: Payments checked, matched, in flight, and each kind of finding.
  returned: always
  type: dict
  sample: {checked: 120, matched: 117, in_flight: 0, lost_callback: 1, completed_not_paid: 1, amount_mismatch: 1,
           currency_mismatch: 0, failed_but_paid: 0, unknown_at_gateway: 0, unknown_here: 0}
findings:
  description: One entry per finding.
  returned: always
  type: list
  elements: dict
  sample: [{kind: lost_callback, settle: true, reference: SKILL-1-abc, paylink_id: PL12,
            here: {status: pending, amount: 49900, currency: ZAR}, gateway: {status: SUCCESS, amount: 49900,
            currency: ZAR}, detail: "SUCCESS at the gateway, pending here"}]
lost_callbacks:
  description: The transaction references of the lost callbacks (what is safe to settle).
  returned: always
  type: list
  elements: str
  sample: [SKILL-1-abc]
gateway_payments:
  description: How many payments the gateway's history listed.
  returned: always
  type: int
  sample: 131
"""

from datetime import timedelta

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
from ansible_collections.betaskill.payops.plugins.module_utils.payops_reconcile import compare, strangers
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import iso_seconds, parse_time

OURS_SQL = """
SELECT transaction_reference AS reference, gateway_response ->> 'paylinkID' AS paylink_id, status, amount, currency,
       (status = 'pending' AND created_at > now() - make_interval(secs => %(min_age)s)) AS in_flight
  FROM public.payments
 WHERE created_at >= %(since)s::timestamptz AND created_at < %(before)s::timestamptz
   AND gateway_response ? 'paylinkID'
 ORDER BY created_at
"""


# The gateway's paylinks that no payment of the day has, looked up on every other day.
ELSEWHERE_SQL = """
SELECT gateway_response ->> 'paylinkID' AS paylink_id
  FROM public.payments
 WHERE gateway_response ->> 'paylinkID' = ANY (%(paylinks)s::text[])
"""


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(ikhokha_argument_spec())
    argument_spec.update(
        since=dict(type="str", required=True),
        before=dict(type="str", required=True),
        min_age_seconds=dict(type="int", default=60),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_REQUESTS:
        module.fail_json(msg="the python library requests is needed on the controller")
    params = module.params
    since, until = parse_time(params["since"]), parse_time(params["before"])
    for name, value in (("since", since), ("before", until)):
        if value is None:
            module.fail_json(msg=f"{name}={params[name]!r} is not a time (ISO 8601 with a time zone)")
    if until <= since:
        module.fail_json(msg=f"before={params['before']!r} is not after since={params['since']!r}")

    client = Client(params["api_url"], params["app_id"], params["app_secret"],
                    params["timeout"], params["validate_certs"])
    query = {"startDate": (since - timedelta(days=1)).date().isoformat(),
             "endDate": (until + timedelta(days=1)).date().isoformat()}
    try:
        status, data, _elapsed = client.request("GET", "payments/history", params=query)
    except IkhokhaError as exc:
        module.fail_json(msg=f"iKhokha's payments history could not be read: {exc}")
    if status != 200 or not isinstance(data, dict) or not isinstance(data.get("payments"), list):
        message = data.get("message") if isinstance(data, dict) else None
        module.fail_json(msg=f"iKhokha's payments history answered HTTP {status}" + (f": {message}" if message else ""))

    conn = connect(module, autocommit=True, application_name="ikhokha_history_info")
    try:
        with conn.cursor() as cur:
            cur.execute(OURS_SQL, {"since": params["since"], "before": params["before"],
                                   "min_age": params["min_age_seconds"]})
            ours = [dict(row) for row in cur.fetchall()]
            cur.execute(ELSEWHERE_SQL, {"paylinks": strangers(ours, data["payments"])})
            elsewhere = {row["paylink_id"] for row in cur.fetchall()}
    except psycopg.Error as exc:
        module.fail_json(msg=f"cannot read the payments from {describe(params)}: {first_line(exc)}")
    finally:
        conn.close()

    findings, counts = compare(ours, data["payments"], window=(iso_seconds(since), iso_seconds(until)),
                               in_flight={row["reference"] for row in ours if row["in_flight"]},
                               known_elsewhere=elsewhere)
    module.exit_json(changed=False, counts=counts, findings=findings, gateway_payments=len(data["payments"]),
                     lost_callbacks=[item["reference"] for item in findings if item["settle"]],
                     msg=f"{counts['checked']} payments matched against {len(data['payments'])} at the gateway: "
                         f"{counts['matched']} agree, {len(findings)} findings")


if __name__ == "__main__":
    main()
