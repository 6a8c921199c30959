# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The retention rule: which complete backups to keep (grandfather-father-son) and which to delete."""

from __future__ import annotations

from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_catalog import select_backup
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import parse_time_strict


def retention_plan(entries, keep_daily, keep_weekly, keep_monthly, keep_last=1):
    """Grandfather-father-son over complete backups (newest first).

    Keeps the newest backup of each of the last keep_daily days, keep_weekly ISO weeks and
    keep_monthly months that have backups, the keep_last newest backups, and always the newest
    verified backup. Incomplete and unreadable backups are not this rule's business.
    Returns (keep: {backup id: [reasons]}, delete: [backup ids])."""
    complete = [entry for entry in entries if entry.get("state") == "complete"]
    complete.sort(key=lambda entry: entry["backup_id"], reverse=True)
    keep = {}

    def mark(entry, reason):
        keep.setdefault(entry["backup_id"], []).append(reason)

    for entry in complete[:max(keep_last, 0)]:
        mark(entry, "newest")
    for count, name, period in (
        (keep_daily, "daily", lambda t: t.strftime("%Y-%m-%d")),
        (keep_weekly, "weekly", lambda t: f"{t.isocalendar()[0]}-W{t.isocalendar()[1]:02d}"),
        (keep_monthly, "monthly", lambda t: t.strftime("%Y-%m")),
    ):
        seen = []
        for entry in complete:
            key = period(parse_time_strict(entry["manifest"]["started_at"]))
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            mark(entry, f"{name} {key}")
    verified = select_backup(complete, "", verified_only=True, required=False)
    if verified:
        mark(verified, "newest verified")
    delete = [entry["backup_id"] for entry in complete if entry["backup_id"] not in keep]
    return keep, delete
