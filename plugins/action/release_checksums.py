# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""betaskill.payops.release_checksums (documented in plugins/modules/release_checksums.py).

The release's files are on the controller: their SHA-256 is computed here, in the controller's
process, instead of one stat module process per file (ansible.builtin.stat in a loop). The
comparison with SHA256SUMS and the pins is published()/mismatch() below, unit-tested on their own.
"""

from __future__ import annotations

import hashlib
import os
import re

from ansible.plugins.action import ActionBase

SUMS = "SHA256SUMS"
ARGUMENT_SPEC = dict(
    dir=dict(type="path", required=True),
    files=dict(type="list", elements="str", required=True),
    pins=dict(type="dict", default={}),
    release=dict(type="str", required=True),
)


def sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def published(sums, name):
    """The checksum SHA256SUMS (sha256sum's format, text or binary mode) gives for name, lower-case, or ''."""
    match = re.search(r"^([0-9a-fA-F]{64}) [ *]" + re.escape(name) + r"\s*$", sums, re.MULTILINE)
    return match.group(1).lower() if match else ""


def mismatch(name, release, actual, sums, pins):
    """A sentence when the file's SHA-256 differs from SHA256SUMS or its pin, else ''."""
    expected = published(sums, name)
    pinned = str(pins.get(re.sub(r"\.tar\.gz$", "", name), "") or "").lower()
    if actual == expected and pinned in ("", actual):
        return ""
    if actual != expected:
        said = "SHA256SUMS says " + (expected or "nothing about it")
    else:
        said = "release_sha256 pins " + pinned
    return f"{name} of release {release} has SHA-256 {actual}, but {said}"


def check(folder, files, pins, release):
    result = dict(exists=os.path.isdir(folder), known=[], checksums={}, missing=[], mismatches=[])
    if not result["exists"]:
        parent = os.path.dirname(os.path.normpath(folder))
        if os.path.isdir(parent):
            result["known"] = sorted(name for name in os.listdir(parent) if os.path.isdir(os.path.join(parent, name)))
        result["missing"] = list(files)
        return result
    for name in files:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            result["checksums"][name] = sha256(path)
        else:
            result["missing"].append(name)
    if SUMS in result["checksums"]:
        with open(os.path.join(folder, SUMS), encoding="utf-8", errors="replace") as handle:
            sums = handle.read()
        for name in files:
            if name != SUMS and name in result["checksums"]:
                problem = mismatch(name, release, result["checksums"][name], sums, pins)
                if problem:
                    result["mismatches"].append(problem)
    return result


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            result.update(check(args["dir"], args["files"], args["pins"], args["release"]), changed=False)
        except OSError as exc:
            result.update(failed=True, msg=f"cannot read release {args['release']} in {args['dir']}: {exc}")
        return result
