#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: files_backup
short_description: Stream files gathered from hosts into one tar.zst in S3, with a manifest written last
description:
  - Backs up host files (kind C(configuration) or C(application)) with the same scheme as database
    backups - C(<prefix>/<environment>/<kind>/<backup id>/), the manifest written last as the commit
    marker.
  - The inputs are plain tar archives the playbook fetched from each host into a private folder on
    the controller (O(sources)). Their members are re-emitted under C(<host>/<section>/) into one tar
    stream that goes through C(zstd) and SHA-256 into an S3 multipart upload; nothing else is staged.
  - The manifest lists each host, its sections (where they came from, the release id) and every file
    with its size and SHA-256.
  - Secrets never reach the bucket. O(variables) (each host's inventory variables) lose every
    secret-named variable (the audit callback's notion, plus O(secret_names)), and the values of those
    variables are replaced wherever else they appear. Members of a section with
    O(sources[].redact_json=true) are parsed as JSON and their secret-named keys replaced by
    C(<redacted>). Members of a section with O(sources[].scan_secrets=true) that contain a known secret
    value fail the backup, naming the file, rather than store it.
  - Check mode reads every source and reaches the bucket; it uploads nothing.
author: payops contributors (!UNKNOWN)
options:
  environment:
    description: The environment; part of the object keys.
    type: str
    required: true
  kind:
    description: The kind of backup.
    type: str
    choices: [configuration, application]
    required: true
  label:
    description: A label kept in the manifest and the backup id.
    type: str
    default: ""
  sources:
    description: The staged archives, one per host and section.
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: The inventory host the files came from.
        type: str
        required: true
      section:
        description: What the files are (C(nginx), C(app_config), C(release)); the folder under the host.
        type: str
        required: true
      archive:
        description: A plain tar on the controller holding the files, relative to O(sources[].origin).
        type: path
        required: true
      origin:
        description: The folder on the host the members are relative to.
        type: str
        required: true
      release_id:
        description: The release the files belong to (the name the C(current) symlink points at).
        type: str
      redact_json:
        description: Parse every member as JSON and replace its secret-named keys.
        type: bool
        default: false
      scan_secrets:
        description: Fail when a member contains the value of a secret variable.
        type: bool
        default: true
  variables:
    description:
      - Per host, its inventory variables, secrets included; only what is not secret is stored, as
        C(<host>/variables.json). The secret values are learnt from them.
    type: dict
    default: {}
  secret_names:
    description: More variable or key names to treat as secret.
    type: list
    elements: str
    default: []
  notes:
    description: Per host, lines kept in the manifest (a section skipped, and why).
    type: dict
    default: {}
  compression_level:
    description: zstd's level.
    type: int
    default: 3
extends_documentation_fragment:
  - betaskill.payops.payops_backup_upload
  - betaskill.payops.payops_s3
"""

EXAMPLES = r"""
- name: Backup | Stream the hosts' configuration to S3
  betaskill.payops.files_backup:
    environment: "{{ payops_environment }}"
    kind: configuration
    sources:
      - {host: web-1, section: nginx, archive: /tmp/payops-backup/web-1-nginx.tar, origin: /etc/nginx}
      - {host: app-1, section: app_config, archive: /tmp/payops-backup/app-1-app.tar,
         origin: /srv/betaskill/api/shared, redact_json: true}
    variables: "{{ collected_variables }}"
    bucket: "{{ payops_s3_bucket }}"
  register: backup
"""

RETURN = r"""
backup_id:
  description: The new backup's id (in check mode, the id it would have had).
  returned: always
  type: str
  sample: 20261127T020000Z-daily-a1b2c3
manifest_key:
  description: Where the manifest is.
  returned: success, not in check mode
  type: str
  sample: payops/production/configuration/20261127T020000Z-daily-a1b2c3/manifest.json
hosts:
  description: Per host, its sections, files (name, path, size, sha256, redacted keys) and notes.
  returned: always
  type: dict
  sample: {web-1: {sections: {nginx: {origin: /etc/nginx, files: 9}}, files: [], notes: []}}
size:
  description: Bytes stored (compressed).
  returned: success, not in check mode
  type: int
  sample: 10240
files:
  description: Files stored, over all hosts.
  returned: always
  type: int
  sample: 12
"""

import hashlib
import io
import json
import os
import tarfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import (
    MANIFEST,
    BackupError,
    backup_prefix,
    new_backup_id,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_manifest import (
    base_manifest,
    manifest_bytes,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_stream import (
    UPLOAD_REQUIRED_IF,
    MultipartWriter,
    check_upload_params,
    put_small,
    safe_member_name,
    upload_argument_spec,
    upload_compressed,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_pgtools import tool_version
from ansible_collections.betaskill.payops.plugins.module_utils.payops_redact import (
    is_secret_name,
    redact,
    secret_values_of,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import utcnow
from ansible_collections.betaskill.payops.plugins.module_utils.payops_s3 import (
    describe_bucket,
    is_s3_error,
    s3_argument_spec,
    s3_client,
    s3_message,
    with_retries,
)

IN_MEMORY = 8 * 1024 * 1024


class HashingReader:
    """A file object that hashes what is read through it (large members are never held whole)."""

    def __init__(self, source):
        self.source = source
        self.digest = hashlib.sha256()

    def read(self, size=-1):
        data = self.source.read(size)
        self.digest.update(data)
        return data


class Collector:
    """Re-emits the staged archives under <host>/<section>/ and records what went in."""

    def __init__(self, params, secret_values):
        self.params = params
        self.secret_values = secret_values
        self.hosts = {}
        self.files = 0

    def host(self, name):
        return self.hosts.setdefault(name, {"sections": {}, "files": [], "notes": []})

    def produce(self, sink):
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as out:
            self.write_all(out)

    def write_all(self, out):
        for host, variables in sorted(self.params["variables"].items()):
            kept, removed = self.clean_variables(variables)
            data = (json.dumps(kept, indent=2, sort_keys=True, default=str) + "\n").encode()
            self.add_bytes(out, host, f"{host}/variables.json", "(inventory variables)", data, redacted=[])
            entry = self.host(host)
            entry["variables"] = sorted(kept)
            entry["variables_removed"] = sorted(removed)
        for source in sorted(self.params["sources"], key=lambda item: (item["host"], item["section"])):
            self.add_source(out, source)
        for host, lines in sorted(self.params["notes"].items()):
            if lines:
                self.host(host)["notes"] += list(lines)

    def clean_variables(self, variables):
        extra = self.params["secret_names"]
        removed = [name for name in variables if is_secret_name(name, extra)]
        kept = {name: value for name, value in variables.items() if name not in removed}
        kept, scrubbed = redact(kept, self.secret_values, extra)
        return kept, removed + scrubbed

    def add_source(self, out, source):
        host, section = source["host"], source["section"]
        entry = self.host(host)
        summary = {"origin": source["origin"], "release_id": source.get("release_id"), "files": 0, "bytes": 0}
        entry["sections"][section] = summary
        try:
            archive = tarfile.open(source["archive"], mode="r:")  # noqa: SIM115 - the with below closes it
        except (OSError, tarfile.TarError) as exc:
            raise BackupError(f"cannot read the files staged from {host} ({source['archive']}): {exc}") from None
        with archive:
            for member in archive:
                relative = safe_member_name(member.name) if member.name not in (".", "./") else ""
                if not relative:
                    continue
                name = f"{host}/{section}/{relative}"
                where = f"{host}:{source['origin'].rstrip('/')}/{relative}"
                if member.isfile():
                    self.add_file(out, archive, member, name, where, source, summary)
                elif member.isdir() or member.issym():
                    info = self.copy_info(member, name)
                    out.addfile(info)
                # devices, fifos and hard links have no place in a configuration or release

    def copy_info(self, member, name):
        info = tarfile.TarInfo(name)
        info.mode, info.mtime, info.type, info.linkname = member.mode, member.mtime, member.type, member.linkname
        info.uname, info.gname = "", ""
        return info

    def add_file(self, out, archive, member, name, where, source, summary):
        handle = archive.extractfile(member)
        if source["redact_json"] or (source["scan_secrets"] and member.size <= IN_MEMORY):
            data = handle.read()
            redacted = []
            if source["redact_json"]:
                try:
                    document = json.loads(data)
                except ValueError:
                    raise BackupError(f"{where} is not JSON: its secrets cannot be removed, so it is not stored "
                                      "(list only JSON files in app_config_paths)") from None
                document, redacted = redact(document, self.secret_values, self.params["secret_names"])
                data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
            elif source["scan_secrets"]:
                self.refuse_secrets(data, where)
            self.add_bytes(out, source["host"], name, where, data, redacted, member=member)
        else:
            info = self.copy_info(member, name)
            info.size = member.size
            reader = HashingReader(handle)
            out.addfile(info, reader)
            self.record(source["host"], name, where, member.size, reader.digest.hexdigest(), [])
        summary["files"] += 1
        summary["bytes"] += member.size

    def refuse_secrets(self, data, where):
        text = data.decode(errors="ignore")
        if any(value in text for value in self.secret_values):
            raise BackupError(f"{where} contains the value of a secret variable: it is not stored (move the "
                              "secret out of the file, or leave the file out of the backup)")

    def add_bytes(self, out, host, name, where, data, redacted, member=None):
        info = self.copy_info(member, name) if member is not None else tarfile.TarInfo(name)
        if member is None:
            info.mode, info.mtime = 0o600, int(time.time())
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
        self.record(host, name, where, len(data), hashlib.sha256(data).hexdigest(), redacted)

    def record(self, host, name, where, size, digest, redacted):
        entry = {"name": name, "path": where.split(":", 1)[-1], "size": size, "sha256": digest}
        if redacted:
            entry["redacted"] = redacted
        self.host(host)["files"].append(entry)
        self.files += 1


def main():
    argument_spec = s3_argument_spec()
    argument_spec.update(
        environment=dict(type="str", required=True),
        kind=dict(type="str", choices=["configuration", "application"], required=True),
        label=dict(type="str", default=""),
        sources=dict(type="list", elements="dict", default=[], options=dict(
            host=dict(type="str", required=True),
            section=dict(type="str", required=True),
            archive=dict(type="path", required=True),
            origin=dict(type="str", required=True),
            release_id=dict(type="str"),
            redact_json=dict(type="bool", default=False),
            scan_secrets=dict(type="bool", default=True),
        )),
        # Not no_log: Ansible would then mask every short value of every variable in the output.
        # The secret values found in it are added to the module's no_log values below instead.
        variables=dict(type="dict", default={}, no_log=False),
        secret_names=dict(type="list", elements="str", default=[], no_log=False),
        notes=dict(type="dict", default={}),
        compression_level=dict(type="int", default=3),
    )
    argument_spec.update(upload_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, required_if=UPLOAD_REQUIRED_IF)
    params = module.params
    check_upload_params(module)
    if not params["sources"] and not params["variables"]:
        module.fail_json(msg=f"nothing to back up: no host gave files for the {params['kind']} backup")
    started = utcnow()
    backup_id = new_backup_id(started, params["label"])
    result = {"changed": False, "backup_id": backup_id}
    secret_values = secret_values_of(params["variables"], params["secret_names"])
    module.no_log_values.update(secret_values)
    collector = Collector(params, secret_values)
    client = s3_client(module)
    sse = None if params["sse"] == "none" else params["sse"]
    try:
        tool_version("zstd")
        with_retries(client.head_bucket, attempts=params["retries"], Bucket=params["bucket"])
        if module.check_mode:
            with open(os.devnull, "wb") as sink:
                collector.produce(sink)
            result.update(hosts=collector.hosts, files=collector.files,
                          msg=f"would store {collector.files} files of {len(collector.hosts)} hosts in "
                              f"{describe_bucket(params)} as {params['kind']} backup {backup_id}")
            module.exit_json(**result)
        prefix = backup_prefix(params["prefix"], params["environment"], params["kind"], backup_id)
        writer = MultipartWriter(client, params["bucket"], f"{prefix}{params['kind']}.tar.zst",
                                 params["part_size_mb"] * 1024 * 1024, sse=sse, kms_key_id=params["sse_kms_key_id"],
                                 attempts=params["retries"], metadata={"payops-backup-id": backup_id})
        stored = upload_compressed(writer, collector.produce, params["compression_level"],
                                   params["compression_threads"])
        stored.update(content="tar", sse=params["sse"])
        manifest = base_manifest(backup_id, params["kind"], params["environment"], params["label"], started,
                                 utcnow(), [stored], params["run_id"], params["operator"])
        manifest["hosts"] = collector.hosts
        manifest["tools"] = {"zstd": tool_version("zstd")[1], "compression_level": params["compression_level"]}
        put_small(client, params["bucket"], prefix + MANIFEST, manifest_bytes(manifest), sse=sse,
                  kms_key_id=params["sse_kms_key_id"], attempts=params["retries"])
    except BackupError as exc:
        module.fail_json(msg=f"{params['kind']} backup failed, nothing was kept: {exc}", **result)
    except Exception as exc:
        if is_s3_error(exc):
            module.fail_json(msg=f"{params['kind']} backup failed, no manifest was written: "
                                 f"{s3_message(exc, params, 'upload')}", **result)
        raise
    result.update(changed=True, manifest_key=prefix + MANIFEST, hosts=collector.hosts, files=collector.files,
                  size=stored["size"], sha256=stored["sha256"],
                  msg=f"{params['kind']} backup {backup_id}: {collector.files} files of {len(collector.hosts)} "
                      f"hosts, {stored['size']} bytes")
    module.exit_json(**result)


if __name__ == "__main__":
    os.umask(0o077)
    main()
