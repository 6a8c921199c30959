#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_fetch
short_description: Fetch a configuration or application backup from S3, check it, and stage it per host
description:
  - Chooses the backup (O(backup_id), else the newest verified one, else the newest complete one),
    downloads its object into O(dest) while hashing it, and compares size and SHA-256 with the
    manifest before anything is unpacked. A backup that does not match is refused and nothing is staged.
  - Unpacks it per host and section - C(<dest>/<host>-<section>.tar) (members relative to the section's
    origin, symlinks kept) and, for configuration, the files themselves under C(<dest>/<host>/<section>/) -
    and checks every file's SHA-256 against the manifest on the way.
  - Files stored with their secrets redacted (the app configuration) get them back from O(current), the
    file as it is on the host now. A file whose secrets cannot be filled is not staged and is reported
    in C(unfilled).
  - Only the controller's O(dest) is written; hosts are the playbook's business. Runs in check mode
    too (staging is what lets check mode show the differences).
author: payops contributors (!UNKNOWN)
options:
  environment:
    description: The environment whose backups are used.
    type: str
    required: true
  kind:
    description: The kind of backup.
    type: str
    choices: [configuration, application]
    required: true
  backup_id:
    description: The backup to fetch; default the newest verified, else the newest complete.
    type: str
  dest:
    description: A private folder on the controller to stage into (created, mode 0700).
    type: path
    required: true
  hosts:
    description: Stage these hosts only (default every host of the backup).
    type: list
    elements: str
    default: []
  current:
    description:
      - The current content (base64, as C(ansible.builtin.slurp) returns it) of redacted files,
        keyed C(<host>:<path>); their secrets are taken from it.
    type: dict
    default: {}
extends_documentation_fragment:
  - betaskill.payops.payops_s3
"""

EXAMPLES = r"""
- name: Recovery | Fetch the newest configuration backup and check it
  betaskill.payops.backup_fetch:
    environment: "{{ payops_environment }}"
    kind: configuration
    dest: "{{ stage_dir }}"
    bucket: "{{ payops_s3_bucket }}"
  register: fetched
"""

RETURN = r"""
backup_id:
  description: The backup staged.
  returned: always
  type: str
  sample: 20261127T020000Z-daily-a1b2c3
verified:
  description: Whether the chosen backup had passed its last verification.
  returned: always
  type: bool
  sample: true
staged:
  description:
    - Per host and section, where it came from, its release id, its tar, and its files (src on the
      controller, path on the host).
  returned: always
  type: dict
  sample:
    web-1:
      nginx:
        origin: /etc/nginx
        archive: /tmp/x/web-1-nginx.tar
        files: [{src: /tmp/x/web-1/nginx/nginx.conf, path: /etc/nginx/nginx.conf}]
unfilled:
  description: Redacted files not staged because their secrets could not be filled, with the places missing.
  returned: always
  type: list
  elements: dict
  sample: [{host: app-1, path: /srv/app/config.json, missing: [dsn]}]
"""

import base64
import hashlib
import io
import json
import os
import subprocess
import tarfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_catalog import (
    is_verified,
    load_backups,
    select_backup,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import BackupError
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_manifest import object_problems
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_stream import (
    safe_member_name,
    stream_object,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_redact import fill_redacted
from ansible_collections.betaskill.payops.plugins.module_utils.payops_s3 import (
    is_s3_error,
    s3_argument_spec,
    s3_client,
    s3_message,
)


def choose(entries, kind, backup_id):
    """O(backup_id), else the newest verified backup, else the newest complete one."""
    return select_backup(entries, kind, backup_id=backup_id, prefer_verified=True)


class Stager:
    def __init__(self, params, manifest):
        self.params = params
        self.manifest = manifest
        self.expected = {item["name"]: (host, item) for host, entry in manifest.get("hosts", {}).items()
                         for item in entry.get("files", [])}
        self.staged = {}
        self.unfilled = []
        self.problems = []
        self.tars = {}

    def section(self, host, section):
        hosts = self.staged.setdefault(host, {})
        if section not in hosts:
            origin = ((self.manifest["hosts"].get(host) or {}).get("sections") or {}).get(section) or {}
            archive = os.path.join(self.params["dest"], f"{host}-{section}.tar")
            hosts[section] = {"origin": origin.get("origin"), "release_id": origin.get("release_id"),
                              "archive": archive, "files": []}
            self.tars[(host, section)] = tarfile.open(  # noqa: SIM115 - closed in unpack()
                archive, mode="w", format=tarfile.PAX_FORMAT)
        return hosts[section]

    def unpack(self, stream):
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                self.member(archive, member)
        for tar in self.tars.values():
            tar.close()

    def member(self, archive, member):
        name = safe_member_name(member.name)
        parts = name.split("/")
        host = parts[0]
        if self.params["hosts"] and host not in self.params["hosts"]:
            return
        if len(parts) < 3:  # <host>/variables.json: kept in the backup, not put back on hosts
            return
        section, relative = parts[1], "/".join(parts[2:])
        entry = self.section(host, section)
        info = tarfile.TarInfo(relative)
        info.mode, info.mtime, info.type, info.linkname = member.mode, member.mtime, member.type, member.linkname
        if not member.isfile():
            self.tars[(host, section)].addfile(info)
            return
        data = archive.extractfile(member).read()
        digest = hashlib.sha256(data).hexdigest()
        expected = self.expected.get(name, (None, None))[1]
        if expected is None or expected["sha256"] != digest:
            self.problems.append(f"{name}: not as the manifest lists it")
            return
        path = os.path.join(entry["origin"] or "/", relative)
        if expected.get("redacted"):
            data = self.fill(host, path, data, expected["redacted"])
            if data is None:
                return
        info.size = len(data)
        self.tars[(host, section)].addfile(info, io.BytesIO(data))
        if self.params["kind"] == "configuration":
            src = os.path.join(self.params["dest"], host, section, relative)
            os.makedirs(os.path.dirname(src), mode=0o700, exist_ok=True)
            with open(src, "wb") as handle:
                handle.write(data)
            entry["files"].append({"src": src, "path": path, "relative": relative, "mode": f"{member.mode:04o}",
                                   "redacted": bool(expected.get("redacted"))})
        else:
            entry["files"].append({"path": path, "relative": relative})

    def fill(self, host, path, data, places):
        current = self.params["current"].get(f"{host}:{path}")
        if not current:
            self.unfilled.append({"host": host, "path": path, "missing": places,
                                  "why": "the file is not on the host to take its secrets from"})
            return None
        try:
            live = json.loads(base64.b64decode(current))
            merged, missing = fill_redacted(json.loads(data), live)
        except ValueError:
            self.unfilled.append({"host": host, "path": path, "missing": places,
                                  "why": "the file on the host is not JSON"})
            return None
        if missing:
            self.unfilled.append({"host": host, "path": path, "missing": missing,
                                  "why": "the file on the host lacks these secrets"})
            return None
        if merged == live:  # the same settings: keep the host's file byte for byte
            return base64.b64decode(current)
        return (json.dumps(merged, indent=2, sort_keys=True) + "\n").encode()


def main():
    argument_spec = s3_argument_spec()
    argument_spec.update(
        environment=dict(type="str", required=True),
        kind=dict(type="str", choices=["configuration", "application"], required=True),
        backup_id=dict(type="str"),
        dest=dict(type="path", required=True),
        hosts=dict(type="list", elements="str", default=[]),
        current=dict(type="dict", default={}, no_log=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    client = s3_client(module)
    os.umask(0o077)
    os.makedirs(params["dest"], mode=0o700, exist_ok=True)
    result = {"changed": False, "backup_id": None, "staged": {}, "unfilled": []}
    try:
        entries = load_backups(client, params["bucket"], params["prefix"], params["environment"], params["kind"],
                               attempts=params["retries"])
        entry = choose(entries, params["kind"], params["backup_id"])
        manifest = entry["manifest"]
        result.update(backup_id=entry["backup_id"], verified=is_verified(entry), started_at=manifest["started_at"],
                      hosts=sorted(manifest.get("hosts", {})))
        expected = manifest["objects"][0]
        local = os.path.join(params["dest"], expected["name"])
        with open(local, "wb") as handle:
            size, digest, _sink_error = stream_object(client, params["bucket"], entry["prefix"] + expected["name"],
                                                      sink=handle.write, attempts=params["retries"])
        problems = object_problems(expected, size, digest)
        if problems:
            os.unlink(local)
            raise BackupError(f"backup {entry['backup_id']} does not match its manifest, nothing was restored: "
                              + "; ".join(problems))
        result["checksum"] = {"size": size, "sha256": digest, "matches_manifest": True}
        stager = Stager(params, manifest)
        # pylint: disable-next=ansible-bad-function  # zstd streams into the unpacker: run_command cannot stream
        decoder = subprocess.Popen(["zstd", "-d", "-q", "-c", local], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        try:
            stager.unpack(decoder.stdout)
        finally:
            decoder.stdout.close()
            code = decoder.wait()
            os.unlink(local)
        if code != 0:
            raise BackupError(f"zstd could not decompress {expected['name']} (exit {code})")
        if stager.problems:
            raise BackupError(f"backup {entry['backup_id']}: " + "; ".join(stager.problems[:5]))
        result.update(staged=stager.staged, unfilled=stager.unfilled)
    except (BackupError, tarfile.TarError) as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:
        if is_s3_error(exc):
            module.fail_json(msg=s3_message(exc, params, "fetch the backup"), **result)
        raise
    files = sum(len(section["files"]) for host in result["staged"].values() for section in host.values())
    result["msg"] = (f"{params['kind']} backup {result['backup_id']} matches its manifest (SHA-256); {files} files "
                     f"of {len(result['staged'])} hosts staged")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
