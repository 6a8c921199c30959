# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a backup lives and what it is called: the object layout, backup ids, and BackupError.

Layout: <prefix>/<environment>/<kind>/<backup id>/{<objects>, manifest.json, verification-<time>.json}
A backup exists once manifest.json exists; objects without one are an incomplete backup.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC

MANIFEST = "manifest.json"

KINDS = ("database", "configuration", "application")

VERIFICATION_RE = re.compile(r"^verification-(\d{8}T\d{6}(?:\d+)?Z)\.json$")

BACKUP_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[a-z0-9][a-z0-9-]{0,62}$")


class BackupError(Exception):
    """A failure with an operator-facing message; modules turn it into fail_json."""


def stamp(moment):
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def slug(text):
    cleaned = re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")
    return cleaned[:40].strip("-")


def new_backup_id(moment, label=""):
    """Sorts by time; the label is visible in listings; the random tail keeps parallel runs apart."""
    parts = [stamp(moment)]
    if slug(label):
        parts.append(slug(label))
    parts.append(secrets.token_hex(3))
    return "-".join(parts)


def kind_prefix(prefix, environment, kind):
    return "/".join(part.strip("/") for part in (prefix, environment, kind) if part.strip("/")) + "/"


def backup_prefix(prefix, environment, kind, backup_id):
    return f"{kind_prefix(prefix, environment, kind)}{backup_id}/"


def check_backup_id(backup_id):
    if not BACKUP_ID_RE.match(backup_id or ""):
        raise BackupError(f"backup id {backup_id!r} is not of the form 20261127T020000Z-<label>-<hex>")
