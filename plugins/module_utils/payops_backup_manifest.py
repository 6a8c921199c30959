# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manifest, a backup's commit marker: what it must hold, reading it, writing it, and an object
checked against its entry."""

from __future__ import annotations

import json
import re

from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import BackupError
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import iso, parse_time_strict

MANIFEST_FORMAT = "payops-backup/1"

REQUIRED_MANIFEST_KEYS = ("format", "backup_id", "kind", "environment", "started_at", "finished_at", "objects")


def parse_manifest(data, where="manifest"):
    """The manifest as a dict, or BackupError saying why it cannot be trusted."""
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{where} does not parse as JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BackupError(f"{where} is not a JSON object")
    missing = [key for key in REQUIRED_MANIFEST_KEYS if key not in manifest]
    if missing:
        raise BackupError(f"{where} lacks {', '.join(missing)}")
    if manifest["format"] != MANIFEST_FORMAT:
        raise BackupError(f"{where} has format {manifest['format']!r}, expected {MANIFEST_FORMAT!r}")
    objects = manifest["objects"]
    if not isinstance(objects, list) or not objects:
        raise BackupError(f"{where} lists no objects")
    for entry in objects:
        if not isinstance(entry, dict) or not {"name", "size", "sha256"} <= set(entry):
            raise BackupError(f"{where} has an object entry without name, size and sha256")
        if not re.fullmatch(r"[0-9a-f]{64}", str(entry["sha256"])):
            raise BackupError(f"{where}: {entry['name']} has no valid sha256")
    try:
        parse_time_strict(manifest["started_at"])
        parse_time_strict(manifest["finished_at"])
    except ValueError:
        raise BackupError(f"{where} has unreadable start or finish times") from None
    return manifest


def manifest_bytes(manifest):
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def base_manifest(backup_id, kind, environment, label, started, finished, objects, run_id=None, operator=None):
    """The manifest keys every kind of backup shares; a kind adds its own section."""
    import platform

    return {
        "format": MANIFEST_FORMAT,
        "backup_id": backup_id,
        "kind": kind,
        "environment": environment,
        "label": label,
        "started_at": iso(started),
        "finished_at": iso(finished),
        "seconds": round((finished - started).total_seconds(), 3),
        "objects": objects,
        "run_id": run_id,
        "operator": operator,
        "controller": platform.node(),
    }


def object_problems(expected, size, digest):
    problems = []
    if size != expected["size"]:
        problems.append(f"{expected['name']}: {size} bytes, manifest says {expected['size']}")
    if digest != expected["sha256"]:
        problems.append(f"{expected['name']}: SHA-256 {digest[:16]}... differs from the manifest's "
                        f"{expected['sha256'][:16]}...")
    return problems
