# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Evidence packs, the one copy (betaskill.payops.evidence_pack writes and verifies them): a tar.gz
of named files, each masked by payops_mask, with manifest.json (every file's SHA-256 and size, what
was masked in it and why) and custody.json (who collected what, when, from where, why) inside it.

The archive is built deterministically (sorted members, fixed owner and times, gzip without a
name or time), so the same contents give the same bytes and the same SHA-256. Standard library and
payops_mask only, so that unit tests load it on its own.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

from ansible_collections.betaskill.payops.plugins.module_utils.payops_mask import KINDS, POLICY, mask_text

MANIFEST = "manifest.json"
CUSTODY = "custody.json"
FORMAT = "payops-evidence/1"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def _member(tar, name, data, mtime):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o600
    info.uid = info.gid = 0
    info.uname = info.gname = "payops"
    tar.addfile(info, io.BytesIO(data))


def safe_name(name):
    """A member name inside the pack: relative, no '..', no leading slash."""
    parts = [part for part in str(name).replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts or ".." in parts or "/".join(parts) in (MANIFEST, CUSTODY):
        raise ValueError(f"{name!r} cannot be a file of an evidence pack (a relative path, not {MANIFEST}/{CUSTODY})")
    return "/".join(parts)


def _masked_strings(value):
    """value with every string inside it (keys too) masked by payops_mask."""
    if isinstance(value, dict):
        return {_masked_strings(key): _masked_strings(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked_strings(item) for item in value]
    return mask_text(value)[0] if isinstance(value, str) else value


def build_pack(files, custody, collected_epoch, masked_at_source=None):
    """(pack bytes, manifest) for files [{name, content, description}] and the custody record.

    Every file is masked (card numbers, secrets, e-mail addresses) before it is packed; the manifest
    says, file by file, what was masked here, what was masked before (on the hosts: masked_at_source,
    by kind), and the policy says why."""
    entries = []
    payloads = {}
    totals = {kind: 0 for kind in KINDS}
    for item in sorted(files, key=lambda entry: safe_name(entry["name"])):
        name = safe_name(item["name"])
        if name in payloads:
            raise ValueError(f"{name} is in the pack twice")
        text, counts = mask_text(item.get("content") or "")
        data = text.encode("utf-8")
        payloads[name] = data
        for kind in KINDS:
            totals[kind] += counts[kind]
        entries.append({"name": name, "sha256": sha256(data), "bytes": len(data),
                        "description": item.get("description") or "", "masked": counts})
    # The custody record is free text too (the reason, who collected): masked like every file, as
    # an Object Lock keeps it unchangeable for its whole retention.
    custody_bytes = json.dumps(_masked_strings(custody), indent=2, sort_keys=True, default=str).encode("utf-8")
    manifest = {
        "format": FORMAT,
        "files": entries,
        "custody": {"name": CUSTODY, "sha256": sha256(custody_bytes), "bytes": len(custody_bytes)},
        "masking": {"policy": POLICY, "masked": totals,
                    "masked_at_source": {kind: int((masked_at_source or {}).get(kind, 0)) for kind in KINDS},
                    "note": "masked on the host before collection and again as packed; the originals stay "
                            "on the hosts, under their own retention"},
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _member(tar, MANIFEST, manifest_bytes, collected_epoch)
        _member(tar, CUSTODY, custody_bytes, collected_epoch)
        for name in sorted(payloads):
            _member(tar, name, payloads[name], collected_epoch)
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=int(collected_epoch), compresslevel=6) as zipped:
        zipped.write(raw.getvalue())
    return packed.getvalue(), manifest


def verify_pack(data, expected_sha256=None, expected_manifest=None):
    """Problems found in a pack's bytes ([] when it verifies): its SHA-256 against the one recorded
    at upload, every member against the manifest inside, that manifest against the one kept beside
    the pack, and members the manifest does not list."""
    problems = []
    if expected_sha256 and sha256(data) != expected_sha256:
        problems.append(f"the pack's SHA-256 is {sha256(data)}, not {expected_sha256} as recorded when it was made")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = {}
            for info in tar.getmembers():
                if not info.isfile():
                    problems.append(f"{info.name} is not a regular file")
                    continue
                handle = tar.extractfile(info)
                members[info.name] = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        return [*problems, f"the pack does not read as a tar.gz: {exc}"]
    if MANIFEST not in members:
        return [*problems, f"the pack has no {MANIFEST}"]
    try:
        manifest = json.loads(members[MANIFEST])
    except ValueError:
        return [*problems, f"{MANIFEST} is not JSON"]
    if expected_manifest is not None and manifest != expected_manifest:
        problems.append(f"the {MANIFEST} inside differs from the one kept beside the pack")
    listed = {entry["name"]: entry for entry in manifest.get("files", [])}
    custody = manifest.get("custody") or {}
    if custody.get("name"):
        listed[custody["name"]] = custody
    for name, entry in sorted(listed.items()):
        if name not in members:
            problems.append(f"{name} is listed in the manifest but missing from the pack")
        elif sha256(members[name]) != entry.get("sha256"):
            problems.append(f"{name} has SHA-256 {sha256(members[name])}, the manifest says {entry.get('sha256')}")
    for name in sorted(set(members) - set(listed) - {MANIFEST}):
        problems.append(f"{name} is in the pack but not in the manifest")
    return problems
