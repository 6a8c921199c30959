#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: evidence_pack
short_description: Write an evidence pack to S3 under Object Lock, or verify one
description:
  - C(create) packs the files given (each masked - card numbers, secrets, e-mail addresses) into one
    C(tar.gz) with C(manifest.json) (each file's SHA-256 and size, what was masked in it and why) and
    C(custody.json) (who collected it, when, from where, why, for which window), and uploads it to
    C(<prefix>/evidence/<pack_id>/pack.tar.gz) under S3 Object Lock until O(retention_days) from now,
    with the manifest beside it (C(manifest.json), locked the same). A locked version cannot be
    deleted or overwritten before then; S3 keeps every version.
  - A pack id already in the bucket is never written again - the same content (same SHA-256) is
    reported unchanged, other content is refused.
  - C(verify) reads a pack (from the bucket, or a local O(path)) and checks its SHA-256 against the
    one recorded at upload, every file against the manifest inside, and that manifest against the
    one kept beside it; one changed byte is found.
  - Check mode builds the pack in memory and reports its files, size and SHA-256, and uploads nothing.
author: payops contributors (!UNKNOWN)
options:
  action:
    description: C(create) a pack, or C(verify) one.
    type: str
    choices: [create, verify]
    default: create
  pack_id:
    description: The pack's id, part of its key (letters, digits, C(.), C(_), C(-)).
    type: str
    required: true
  files:
    description: (create) The pack's files.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The path inside the pack (C(logs/web-1.jsonl)).
        type: str
        required: true
      content:
        description: The text (masked again here before it is packed).
        type: str
        required: true
      description:
        description: What it is, written in the manifest.
        type: str
  files_from:
    description:
      - (create) A JSON file on the controller holding the files as O(files) takes them - a list of
        C({name, content, description}) - instead of O(files), so that large contents stay out of the
        task's arguments (and so out of the audit trail).
    type: path
  custody:
    description:
      - (create) The chain-of-custody record - who (C(collected_by)), from where (C(collected_from)),
        why (C(reason)), the run, the window, the sources. C(collected_at) and the pack's key are added.
    type: dict
    default: {}
  masked_at_source:
    description:
      - (create) What was masked before the files reached this module (on the hosts, by
        betaskill.payops.log_search), by kind (C(card), C(secret), C(email)); written in the manifest.
    type: dict
    default: {}
  retention_days:
    description: (create) How long Object Lock keeps the pack.
    type: int
    default: 365
  lock_mode:
    description: The Object Lock mode; C(COMPLIANCE) cannot be shortened or lifted by anyone.
    type: str
    choices: [COMPLIANCE, GOVERNANCE]
    default: COMPLIANCE
  path:
    description:
      - (verify) A local copy of the pack to verify instead of the bucket's object; it is held to the
        SHA-256 and manifest recorded in the bucket.
    type: path
  version_id:
    description: (verify) The object version to read (default the current one).
    type: str
extends_documentation_fragment:
  - betaskill.payops.payops_s3
notes:
  - Takes the bucket and connection of C(group/betaskill.payops.s3); packs go under O(prefix)C(/evidence/).
"""

EXAMPLES = r"""
- name: Pack the collected evidence
  betaskill.payops.evidence_pack:
    pack_id: "20261203T120000Z-inc-4711"
    files:
      - name: logs/web-1.jsonl
        content: "{{ web_lines }}"
        description: the edge's log lines of the window, masked
    custody:
      collected_by: jane
      collected_from: controller-1
      reason: INC-4711
    retention_days: 365

- name: Verify a pack
  betaskill.payops.evidence_pack:
    action: verify
    pack_id: "20261203T120000Z-inc-4711"
"""

RETURN = r"""
key:
  description: The pack's object key.
  returned: always
  type: str
  sample: payops/evidence/20261203T120000Z-inc-4711/pack.tar.gz
manifest_key:
  description: The manifest's object key (the same manifest is inside the pack).
  returned: always
  type: str
  sample: payops/evidence/20261203T120000Z-inc-4711/manifest.json
sha256:
  description: The pack's SHA-256.
  returned: success
  type: str
  sample: 9f2c...
bytes:
  description: The pack's size.
  returned: success
  type: int
  sample: 48213
version_id:
  description: The pack's object version (create - the one written or found; verify - the one read).
  returned: success
  type: str
  sample: 3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY
retain_until:
  description: Until when Object Lock keeps the pack (ISO 8601).
  returned: action is create
  type: str
  sample: "2027-12-03T12:00:00Z"
manifest:
  description: The manifest - files with SHA-256, size and what was masked; the masking policy.
  returned: success
  type: dict
  sample: {format: payops-evidence/1, files: [], masking: {}}
verified:
  description: (verify) Whether the pack verifies.
  returned: action is verify
  type: bool
  sample: true
problems:
  description: (verify) What does not match, one sentence each.
  returned: action is verify
  type: list
  elements: str
  sample: ["logs/app-1.jsonl has SHA-256 1f.., the manifest says 9c.."]
"""

import json
import re
import socket
from datetime import UTC, datetime, timedelta

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_evidence import (
    MANIFEST,
    build_pack,
    sha256,
    verify_pack,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_s3 import (
    error_code,
    is_s3_error,
    s3_argument_spec,
    s3_client,
    s3_message,
    with_retries,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import iso

PACK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MISSING = ("404", "NoSuchKey", "NotFound")


class Packs:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.client = s3_client(module)
        folder = f"{self.params['prefix'].strip('/')}/evidence/{self.params['pack_id']}"
        self.key = f"{folder}/pack.tar.gz"
        self.manifest_key = f"{folder}/{MANIFEST}"

    def s3(self, call, doing, **kwargs):
        try:
            return with_retries(call, attempts=self.params["retries"], Bucket=self.params["bucket"], **kwargs)
        except Exception as exc:
            if is_s3_error(exc):
                self.module.fail_json(msg=s3_message(exc, self.params, doing), key=self.key,
                                      manifest_key=self.manifest_key)
            raise

    def head(self, key):
        try:
            return with_retries(self.client.head_object, attempts=self.params["retries"],
                                Bucket=self.params["bucket"], Key=key)
        except Exception as exc:
            if is_s3_error(exc) and error_code(exc) in MISSING:
                return None
            if is_s3_error(exc):
                self.module.fail_json(msg=s3_message(exc, self.params, f"look for {key}"))
            raise

    def put_locked(self, key, body, content_type, retain_until, metadata):
        return self.s3(self.client.put_object, f"write {key}", Key=key, Body=body, ContentType=content_type,
                       ChecksumAlgorithm="SHA256", ObjectLockMode=self.params["lock_mode"],
                       ObjectLockRetainUntilDate=retain_until, Metadata=metadata)

    def create(self):
        now = datetime.now(UTC)
        retain_until = now + timedelta(days=self.params["retention_days"])
        custody = dict(self.params["custody"] or {})
        custody.setdefault("collected_from", socket.getfqdn())
        custody.update({"collected_at": iso(now), "pack_id": self.params["pack_id"],
                        "bucket": self.params["bucket"], "key": self.key, "object_lock": {
                            "mode": self.params["lock_mode"], "retain_until": iso(retain_until, "seconds")}})
        files = self.params["files"]
        if self.params["files_from"]:
            try:
                with open(self.params["files_from"], encoding="utf-8") as handle:
                    files = json.load(handle)
            except (OSError, ValueError) as exc:
                self.module.fail_json(msg=f"files_from={self.params['files_from']}: cannot read it as JSON: {exc}")
            if not isinstance(files, list) or not all(isinstance(item, dict) and "name" in item for item in files):
                self.module.fail_json(msg=f"files_from={self.params['files_from']}: must hold a list of "
                                          "{name, content, description}")
        try:
            data, manifest = build_pack(files, custody, now.timestamp(), self.params["masked_at_source"])
        except ValueError as exc:
            self.module.fail_json(msg=f"files: {exc}")
        digest = sha256(data)
        result = dict(key=self.key, manifest_key=self.manifest_key, sha256=digest, bytes=len(data),
                      manifest=manifest, retain_until=iso(retain_until, "seconds"))
        found = self.head(self.key)
        if found is not None:
            # custody.collected_at differs run to run: a pack id is written once, whatever it holds.
            self.module.fail_json(msg=f"evidence pack {self.params['pack_id']} exists already ({self.key}, "
                                      f"SHA-256 {found.get('Metadata', {}).get('sha256')}): Object Lock keeps it; "
                                      "give another pack_id", **result)
        if self.module.check_mode:
            self.module.exit_json(changed=True, version_id=None, **result)
        metadata = {"sha256": digest, "pack-id": self.params["pack_id"]}
        # The manifest first: a pack without one beside it is never taken for a whole one.
        self.put_locked(self.manifest_key, json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"),
                        "application/json", retain_until, metadata)
        answer = self.put_locked(self.key, data, "application/gzip", retain_until, metadata)
        # Read back what S3 now holds before saying it is kept.
        stored = self.s3(self.client.get_object, f"read back {self.key}", Key=self.key,
                         VersionId=answer.get("VersionId")) if answer.get("VersionId") else \
            self.s3(self.client.get_object, f"read back {self.key}", Key=self.key)
        problems = verify_pack(stored["Body"].read(), digest, manifest)
        if problems:
            self.module.fail_json(msg=f"the pack {self.key} does not read back as written: {'; '.join(problems)}",
                                  **result)
        self.module.exit_json(changed=True, version_id=answer.get("VersionId"), **result)

    def verify(self):
        # The SHA-256 recorded when the pack was made is the manifest object's (locked like the pack):
        # a version put on top of the pack later cannot bring its own.
        manifest_head = self.head(self.manifest_key)
        if manifest_head is None or self.head(self.key) is None:
            self.module.fail_json(msg=f"no evidence pack {self.params['pack_id']} in the bucket ({self.key})",
                                  key=self.key, manifest_key=self.manifest_key)
        recorded = manifest_head.get("Metadata", {}).get("sha256")
        manifest_object = self.s3(self.client.get_object, f"read {self.manifest_key}", Key=self.manifest_key)
        try:
            manifest = json.loads(manifest_object["Body"].read())
        except ValueError:
            manifest = None
        if self.params["path"]:
            try:
                with open(self.params["path"], "rb") as handle:
                    data = handle.read()
            except OSError as exc:
                self.module.fail_json(msg=f"path={self.params['path']}: cannot read it: {exc.strerror}")
            version = None
        else:
            extra = {"VersionId": self.params["version_id"]} if self.params["version_id"] else {}
            stored = self.s3(self.client.get_object, f"read {self.key}", Key=self.key, **extra)
            data = stored["Body"].read()
            version = stored.get("VersionId")
        problems = [] if manifest is not None else [f"{self.manifest_key} is not JSON"]
        if not recorded:
            problems.append(f"{self.manifest_key} carries no recorded SHA-256 (metadata sha256)")
        if not self.params["path"] and not stored.get("ObjectLockMode"):
            problems.append(f"the version read ({version}) is not under Object Lock: "
                            "it was put on top of the pack later")
        problems += verify_pack(data, recorded, manifest)
        self.module.exit_json(changed=False, verified=not problems, problems=problems, key=self.key,
                              manifest_key=self.manifest_key, sha256=sha256(data), bytes=len(data),
                              version_id=version, manifest=manifest or {})


def main():
    argument_spec = s3_argument_spec()
    argument_spec.update(
        action=dict(type="str", choices=["create", "verify"], default="create"),
        pack_id=dict(type="str", required=True),
        files=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            content=dict(type="str", required=True),
            description=dict(type="str"),
        )),
        files_from=dict(type="path"),
        custody=dict(type="dict", default={}),
        masked_at_source=dict(type="dict", default={}),
        retention_days=dict(type="int", default=365),
        lock_mode=dict(type="str", choices=["COMPLIANCE", "GOVERNANCE"], default="COMPLIANCE"),
        path=dict(type="path"),
        version_id=dict(type="str"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("files", "files_from")])
    params = module.params
    if not PACK_ID.match(params["pack_id"]):
        module.fail_json(msg=f"pack_id={params['pack_id']!r}: use letters, digits, '.', '_' and '-' (128 at most)")
    if params["action"] == "create" and params["retention_days"] < 1:
        module.fail_json(msg=f"retention_days={params['retention_days']} must be 1 or more")
    packs = Packs(module)
    if params["action"] == "create":
        packs.create()
    else:
        packs.verify()


if __name__ == "__main__":
    main()
