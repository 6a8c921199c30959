# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which backups exist and which one to use: listing a kind's objects in S3, grouping them into
backups with their manifest and last verification, and select_backup(), the one way to pick "the
newest", "the newest verified" or "the one with this id"."""

from __future__ import annotations

import json

from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import (
    MANIFEST,
    VERIFICATION_RE,
    BackupError,
    kind_prefix,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_manifest import parse_manifest
from ansible_collections.betaskill.payops.plugins.module_utils.payops_s3 import list_keys, with_retries
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import iso


def list_multipart_uploads(client, bucket, prefix, attempts=4):
    """Multipart uploads started and never completed or aborted under prefix."""
    found = []
    kwargs = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = with_retries(client.list_multipart_uploads, attempts=attempts, **kwargs)
        for item in page.get("Uploads", []):
            found.append({"key": item["Key"], "upload_id": item["UploadId"], "initiated": iso(item["Initiated"])})
        if not page.get("IsTruncated"):
            return found
        kwargs["KeyMarker"] = page.get("NextKeyMarker")
        kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")


def read_object(client, bucket, key, attempts=4):
    def read():
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    return with_retries(read, attempts=attempts)


def group_backups(keys, kind_root):
    """{backup id: {objects: {name: {key, size}}, has_manifest, verifications: [names, oldest first]}}."""
    backups = {}
    for item in keys:
        rest = item["key"][len(kind_root):]
        if "/" not in rest:
            continue
        backup_id, name = rest.split("/", 1)
        entry = backups.setdefault(backup_id, {"backup_id": backup_id, "objects": {}, "has_manifest": False,
                                               "verifications": []})
        if name == MANIFEST:
            entry["has_manifest"] = True
            entry["manifest_key"] = item["key"]
        elif VERIFICATION_RE.match(name):
            entry["verifications"].append(name)
        else:
            entry["objects"][name] = {"key": item["key"], "size": item["size"],
                                      "last_modified": iso(item["last_modified"])}
    for entry in backups.values():
        entry["verifications"].sort()
    return backups


def load_backups(client, bucket, prefix, environment, kind, attempts=4, with_verifications=True):
    """Every backup of a kind, newest first, complete ones with their parsed manifest and last verdict.

    A manifest that does not parse makes the backup `unreadable` (never complete): it is reported,
    never trusted, never deleted by retention."""
    root = kind_prefix(prefix, environment, kind)
    grouped = group_backups(list_keys(client, bucket, root, attempts), root)
    result = []
    for backup_id in sorted(grouped, reverse=True):
        entry = grouped[backup_id]
        entry["kind"] = kind
        entry["prefix"] = f"{root}{backup_id}/"
        entry["last_verification"] = None
        if not entry["has_manifest"]:
            entry["state"] = "incomplete"
            result.append(entry)
            continue
        try:
            entry["manifest"] = parse_manifest(read_object(client, bucket, entry["manifest_key"], attempts),
                                               where=f"s3://{bucket}/{entry['manifest_key']}")
            entry["state"] = "complete"
        except BackupError as exc:
            entry["state"] = "unreadable"
            entry["error"] = str(exc)
        if with_verifications and entry["verifications"]:
            name = entry["verifications"][-1]
            try:
                record = json.loads(read_object(client, bucket, entry["prefix"] + name, attempts))
                entry["last_verification"] = {
                    "name": name, "result": record.get("result"), "verified_at": record.get("verified_at"),
                    "deep": bool(record.get("deep")), "problems": record.get("problems", []),
                }
            except ValueError:
                entry["last_verification"] = {"name": name, "result": "unreadable"}
        result.append(entry)
    return result


def is_verified(entry):
    return entry.get("state") == "complete" and (entry.get("last_verification") or {}).get("result") == "passed"


USABLE = ("complete",)
WITH_MANIFEST = ("complete", "unreadable")
ANY_STATE = ("complete", "unreadable", "incomplete")


def select_backup(entries, kind, backup_id=None, verified_only=False, prefer_verified=False, states=USABLE,
                  required=True, hint=None):
    """The backup to use from entries (newest first, as load_backups returns them).

    With backup_id: that backup, whose state must be one of states. Without: the newest backup in
    one of states; the newest verified one if verified_only; the newest verified one if there is
    one, else the newest, if prefer_verified. When nothing matches, BackupError naming what was asked
    and what exists (hint: what the operator can do next), or None when not required."""
    if backup_id:
        for entry in entries:
            if entry["backup_id"] == backup_id:
                if entry.get("state") not in states:
                    raise BackupError(f"backup {backup_id} is {entry.get('state')}: "
                                      f"{entry.get('error') or 'it has no manifest'}")
                return entry
        known = ", ".join(e["backup_id"] for e in entries[:5]) or "none"
        raise BackupError(f"backup {backup_id} does not exist (newest: {known})")
    usable = [entry for entry in entries if entry.get("state") in states]
    verified = [entry for entry in usable if is_verified(entry)]
    if verified_only or (prefer_verified and verified):
        usable = verified
    if usable:
        return usable[0]
    if not required:
        return None
    asked = "verified" if verified_only else "complete" if states == USABLE else "/".join(states)
    message = f"there is no {asked} {kind} backup ({backup_summary(entries)})".replace("  ", " ")
    raise BackupError(f"{message}: {hint}" if hint else message)


def backup_summary(entries):
    """What exists, for a message: '3 complete, 1 verified, 1 incomplete' or 'no backups at all'."""
    if not entries:
        return "no backups at all"
    counts = {}
    for entry in entries:
        counts[entry.get("state")] = counts.get(entry.get("state"), 0) + 1
    parts = [f"{counts.pop('complete', 0)} complete", f"{sum(1 for e in entries if is_verified(e))} verified"]
    parts += [f"{number} {state}" for state, number in sorted(counts.items(), key=lambda item: str(item[0]))]
    return ", ".join(parts)
