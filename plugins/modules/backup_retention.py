#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_retention
short_description: Apply the daily/weekly/monthly retention rule to payops backups in S3
description:
  - Keeps the newest complete backup of each of the last O(keep_daily) days, O(keep_weekly) ISO
    weeks and O(keep_monthly) months, the newest backup, and always the newest backup whose last
    verification passed; removes the other complete backups of the kind.
  - A backup is removed manifest first, so that it stops being a backup before any of its objects
    goes. In a versioned bucket the removal leaves delete markers (a lifecycle rule expires the
    noncurrent versions); O(purge_versions=true) removes every version.
  - Backups whose manifest does not parse are never removed; they are reported.
  - With O(cleanup_incomplete=true), also removes incomplete backups (objects without a manifest)
    and aborts multipart uploads never completed, when older than O(incomplete_older_than_hours),
    so that a backup still running is left alone.
  - Check mode lists what would be removed and removes nothing.
author: payops contributors (!UNKNOWN)
options:
  environment:
    description: The environment whose backups are pruned.
    type: str
    required: true
  kinds:
    description: Kinds of backup to prune.
    type: list
    elements: str
    choices: [database, configuration, application]
    default: [database, configuration, application]
  prune:
    description: Apply the retention rule to complete backups.
    type: bool
    default: true
  keep_daily:
    description: Daily generations to keep.
    type: int
    default: 7
  keep_weekly:
    description: Weekly generations to keep.
    type: int
    default: 4
  keep_monthly:
    description: Monthly generations to keep.
    type: int
    default: 6
  cleanup_incomplete:
    description: Remove incomplete backups and abort stale multipart uploads.
    type: bool
    default: false
  incomplete_older_than_hours:
    description: Only incomplete backups and uploads older than this are removed.
    type: float
    default: 6
  purge_versions:
    description: Remove every version of the objects, not only the current one.
    type: bool
    default: false
extends_documentation_fragment:
  - betaskill.payops.payops_s3
"""

EXAMPLES = r"""
- name: Backup | Apply retention (check mode lists what would go)
  betaskill.payops.backup_retention:
    environment: "{{ payops_environment }}"
    bucket: "{{ payops_s3_bucket }}"
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 6
"""

RETURN = r"""
deleted:
  description: Backups removed (or that would be, in check mode), by kind.
  returned: always
  type: dict
  sample: {database: [20261001T020000Z-daily-000000]}
kept:
  description: Backups kept and why, by kind.
  returned: always
  type: dict
  sample: {database: {20261127T020000Z-daily-a1b2c3: [newest, daily 2026-11-27, newest verified]}}
incomplete_removed:
  description: Incomplete backups removed, by kind.
  returned: always
  type: dict
  sample: {database: [20261127T030000Z-daily-ffffff]}
uploads_aborted:
  description: Multipart uploads aborted.
  returned: always
  type: list
  elements: dict
  sample: [{key: payops/local/database/20261127T030000Z-daily-ffffff/dump.zst, upload_id: abc}]
"""

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_catalog import (
    list_multipart_uploads,
    load_backups,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import KINDS, MANIFEST, kind_prefix
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_retention import retention_plan
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import parse_time_strict, utcnow
from ansible_collections.betaskill.payops.plugins.module_utils.payops_s3 import (
    is_s3_error,
    s3_argument_spec,
    s3_client,
    s3_message,
    with_retries,
)


def remove_backup(client, params, prefix, names):
    """Manifest first: from then on it is no longer a backup, whatever happens to the rest."""
    ordered = sorted(names, key=lambda name: name != MANIFEST)
    for name in ordered:
        key = prefix + name
        if params["purge_versions"]:
            pages = with_retries(client.list_object_versions, attempts=params["retries"], Bucket=params["bucket"],
                                 Prefix=key)
            for version in pages.get("Versions", []) + pages.get("DeleteMarkers", []):
                if version["Key"] == key:
                    with_retries(client.delete_object, attempts=params["retries"], Bucket=params["bucket"], Key=key,
                                 VersionId=version["VersionId"])
        else:
            with_retries(client.delete_object, attempts=params["retries"], Bucket=params["bucket"], Key=key)


def all_names(entry):
    names = list(entry["objects"]) + list(entry["verifications"])
    if entry["has_manifest"]:
        names.append(MANIFEST)
    return names


def main():
    argument_spec = s3_argument_spec()
    argument_spec.update(
        environment=dict(type="str", required=True),
        kinds=dict(type="list", elements="str", choices=list(KINDS), default=list(KINDS)),
        prune=dict(type="bool", default=True),
        keep_daily=dict(type="int", default=7),
        keep_weekly=dict(type="int", default=4),
        keep_monthly=dict(type="int", default=6),
        cleanup_incomplete=dict(type="bool", default=False),
        incomplete_older_than_hours=dict(type="float", default=6),
        purge_versions=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    for name in ("keep_daily", "keep_weekly", "keep_monthly"):
        if params[name] < 0:
            module.fail_json(msg=f"{name} must be 0 or more")
    client = s3_client(module)
    result = {"changed": False, "deleted": {}, "kept": {}, "incomplete_removed": {}, "uploads_aborted": [],
              "unreadable": {}}
    cutoff = utcnow() - datetime.timedelta(hours=params["incomplete_older_than_hours"])
    try:
        for kind in params["kinds"]:
            entries = load_backups(client, params["bucket"], params["prefix"], params["environment"], kind,
                                   attempts=params["retries"])
            by_id = {entry["backup_id"]: entry for entry in entries}
            result["unreadable"][kind] = [e["backup_id"] for e in entries if e["state"] == "unreadable"]
            if params["prune"]:
                keep, delete = retention_plan(entries, params["keep_daily"], params["keep_weekly"],
                                              params["keep_monthly"])
                result["kept"][kind] = keep
                result["deleted"][kind] = delete
                for backup_id in delete:
                    if not module.check_mode:
                        remove_backup(client, params, by_id[backup_id]["prefix"], all_names(by_id[backup_id]))
                    result["changed"] = True
            if params["cleanup_incomplete"]:
                stale = [entry for entry in entries if entry["state"] == "incomplete" and all(
                    parse_time_strict(obj["last_modified"]) < cutoff for obj in entry["objects"].values())]
                result["incomplete_removed"][kind] = [entry["backup_id"] for entry in stale]
                for entry in stale:
                    if not module.check_mode:
                        remove_backup(client, params, entry["prefix"], all_names(entry))
                    result["changed"] = True
                uploads = list_multipart_uploads(client, params["bucket"],
                                                 kind_prefix(params["prefix"], params["environment"], kind),
                                                 attempts=params["retries"])
                for upload in uploads:
                    if parse_time_strict(upload["initiated"]) >= cutoff:
                        continue
                    if not module.check_mode:
                        with_retries(client.abort_multipart_upload, attempts=params["retries"],
                                     Bucket=params["bucket"], Key=upload["key"], UploadId=upload["upload_id"])
                    result["uploads_aborted"].append(upload)
                    result["changed"] = True
    except Exception as exc:
        if is_s3_error(exc):
            module.fail_json(msg=s3_message(exc, params, "apply retention"), **result)
        raise
    count = sum(len(ids) for ids in result["deleted"].values())
    verb = "would remove" if module.check_mode else "removed"
    result["msg"] = (f"{verb} {count} backups by retention, "
                     f"{sum(len(ids) for ids in result['incomplete_removed'].values())} incomplete backups and "
                     f"{len(result['uploads_aborted'])} unfinished uploads")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
