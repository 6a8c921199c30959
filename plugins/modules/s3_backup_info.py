#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_backup_info
short_description: List payops backups in S3 - complete, incomplete, verified - and their state against the RPO
description:
  - For each kind of backup, lists the backups (newest first) with their manifests and last
    verification, the newest complete and the newest verified one, the newest's age against the
    RPO target, incomplete backups (objects without a manifest) and multipart uploads never
    completed, and what the retention rule would keep and remove.
  - Read-only; runs in check mode too.
author: payops contributors (!UNKNOWN)
options:
  environment:
    description: The environment whose backups are listed.
    type: str
    required: true
  kinds:
    description: Kinds of backup to list.
    type: list
    elements: str
    choices: [database, configuration, application]
    default: [database, configuration, application]
  rpo_hours:
    description: The recovery point objective; the newest complete backup must be younger.
    type: float
    default: 24
  keep_daily:
    description: Daily generations the retention rule keeps.
    type: int
    default: 7
  keep_weekly:
    description: Weekly generations the retention rule keeps.
    type: int
    default: 4
  keep_monthly:
    description: Monthly generations the retention rule keeps.
    type: int
    default: 6
extends_documentation_fragment:
  - betaskill.payops.payops_s3
"""

EXAMPLES = r"""
- name: Backup | Newest backups against the RPO
  betaskill.payops.s3_backup_info:
    environment: "{{ payops_environment }}"
    bucket: "{{ payops_s3_bucket }}"
    rpo_hours: 24
  register: backups
"""

RETURN = r"""
kinds:
  description: Per kind of backup, its state.
  returned: always
  type: dict
  sample:
    database:
      newest: 20261127T020000Z-daily-a1b2c3
      newest_age_hours: 7.1
      within_rpo: true
      newest_verified: 20261127T020000Z-daily-a1b2c3
      last_verification: {result: passed, verified_at: "2026-11-27T04:00:00Z"}
      complete: 12
      incomplete: []
      multipart_uploads: []
      retention: {keep: 10, would_delete: [20261001T020000Z-daily-000000]}
      backups: []
rows:
  description:
    - One row per kind for the report role.
    - C(down) when the newest is older than the RPO or failed its verification.
  returned: always
  type: list
  elements: dict
  sample: [{component: database backup, state: healthy, value: "7.1 h old", target: "< 24 h"}]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_catalog import (
    is_verified,
    list_multipart_uploads,
    load_backups,
    select_backup,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import KINDS, kind_prefix
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_retention import retention_plan
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import parse_time_strict, utcnow
from ansible_collections.betaskill.payops.plugins.module_utils.payops_s3 import (
    is_s3_error,
    s3_argument_spec,
    s3_client,
    s3_message,
)


def summary(entry):
    manifest = entry.get("manifest") or {}
    return {
        "backup_id": entry["backup_id"],
        "state": entry["state"],
        "label": manifest.get("label"),
        "started_at": manifest.get("started_at"),
        "finished_at": manifest.get("finished_at"),
        "size": sum(obj.get("size", 0) for obj in manifest.get("objects", [])) or
        sum(obj["size"] for obj in entry["objects"].values()),
        "verified": is_verified(entry),
        "last_verification": entry.get("last_verification"),
        "error": entry.get("error"),
    }


def kind_state(module, client, kind):
    params = module.params
    entries = load_backups(client, params["bucket"], params["prefix"], params["environment"], kind,
                           attempts=params["retries"])
    uploads = list_multipart_uploads(client, params["bucket"], kind_prefix(params["prefix"], params["environment"],
                                                                           kind), attempts=params["retries"])
    latest = select_backup(entries, kind, required=False)
    verified = select_backup(entries, kind, verified_only=True, required=False)
    keep, delete = retention_plan(entries, params["keep_daily"], params["keep_weekly"], params["keep_monthly"])
    state = {
        "newest": latest["backup_id"] if latest else None,
        "newest_started_at": latest["manifest"]["started_at"] if latest else None,
        "newest_age_hours": None,
        "within_rpo": False,
        "rpo_hours": params["rpo_hours"],
        "newest_verified": verified["backup_id"] if verified else None,
        "last_verification": latest.get("last_verification") if latest else None,
        "complete": sum(1 for entry in entries if entry["state"] == "complete"),
        "unreadable": [summary(entry) for entry in entries if entry["state"] == "unreadable"],
        "incomplete": [summary(entry) for entry in entries if entry["state"] == "incomplete"],
        "multipart_uploads": uploads,
        "retention": {"keep": len(keep), "would_delete": delete, "reasons": keep},
        "backups": [summary(entry) for entry in entries],
    }
    if latest:
        age = (utcnow() - parse_time_strict(latest["manifest"]["started_at"])).total_seconds() / 3600
        state["newest_age_hours"] = round(age, 2)
        state["within_rpo"] = age <= params["rpo_hours"]
    return state


def main():
    argument_spec = s3_argument_spec()
    argument_spec.update(
        environment=dict(type="str", required=True),
        kinds=dict(type="list", elements="str", choices=list(KINDS), default=list(KINDS)),
        rpo_hours=dict(type="float", default=24),
        keep_daily=dict(type="int", default=7),
        keep_weekly=dict(type="int", default=4),
        keep_monthly=dict(type="int", default=6),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    client = s3_client(module)
    try:
        kinds = {kind: kind_state(module, client, kind) for kind in module.params["kinds"]}
    except Exception as exc:
        if is_s3_error(exc):
            module.fail_json(msg=s3_message(exc, module.params, "list backups"))
        raise
    module.exit_json(changed=False, kinds=kinds, rows=[status_row(kind, state) for kind, state in kinds.items()])


def status_row(kind, state):
    verification = state["last_verification"] or {}
    problems = []
    if state["newest"] is None:
        verdict, value = "down", "no complete backup"
    else:
        value = f"{state['newest_age_hours']:.1f} h old"
        verdict = "healthy"
        if not state["within_rpo"]:
            verdict = "down"
            problems.append(f"older than the RPO of {state['rpo_hours']} h")
        if verification.get("result") == "failed":
            verdict = "down"
            problems.append("its last verification failed: " + "; ".join(verification.get("problems", [])[:2]))
        elif verification.get("result") != "passed" and verdict == "healthy":
            verdict = "degraded"
            problems.append("not verified yet")
    if state["incomplete"] or state["multipart_uploads"] or state["unreadable"]:
        if verdict == "healthy":
            verdict = "degraded"
        problems.append(f"{len(state['incomplete'])} incomplete backups, {len(state['multipart_uploads'])} "
                        f"unfinished uploads, {len(state['unreadable'])} unreadable manifests")
    problems.append(f"{state['complete']} kept, retention would remove {len(state['retention']['would_delete'])}")
    return {"component": f"{kind} backup {state['newest'] or ''}".strip(), "state": verdict, "value": value,
            "target": f"< {state['rpo_hours']:g} h, verified", "detail": "; ".join(problems)}


if __name__ == "__main__":
    main()
