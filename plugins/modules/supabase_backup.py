#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: supabase_backup
short_description: Stream a pg_dump of the Supabase database into S3, with a manifest written last
description:
  - Dumps the database with C(pg_dump) in custom format, uncompressed, and compresses outside pg_dump
    with C(zstd) on every core (pg_dump's own gzip is the bottleneck, see DESIGN.md); the stream is
    hashed with SHA-256 and sent to one S3 multipart upload with server-side encryption. No copy of
    the dump is kept on local disk, and at most three upload parts are held in memory.
  - The dump and the per-table row counts come from one exported snapshot, so the counts in the
    manifest are exactly the rows in the dump.
  - The manifest (C(manifest.json)) is written last and is the commit marker. Any failure aborts the
    multipart upload and writes no manifest, so a half-written backup never looks complete.
  - Refuses a C(pg_dump) older than the server, naming the version needed.
  - Check mode connects, checks the tools, counts rows and reaches the bucket, and uploads nothing.
author: payops contributors (!UNKNOWN)
options:
  environment:
    description: The environment (C(local), C(staging), C(production)); part of the object keys.
    type: str
    required: true
  label:
    description: A label kept in the manifest and the backup id (C(daily), C(pre-deployment)).
    type: str
    default: ""
  exclude_schemas:
    description: Schemas left out of the dump; by default Supabase's internal ones.
    type: list
    elements: str
  exclude_table_data:
    description: Tables whose definition is dumped but not their rows.
    type: list
    elements: str
    default: [storage.objects]
  pg_bin_dir:
    description: Folder holding pg_dump; default the newest installed that is at least the server's version.
    type: path
  compression:
    description: C(zstd) (the CLI, in the pipe) or C(none).
    type: str
    choices: [zstd, none]
    default: zstd
  compression_level:
    description: zstd's level.
    type: int
    default: 1
extends_documentation_fragment:
  - betaskill.payops.payops_backup_upload
  - betaskill.payops.payops_db
  - betaskill.payops.payops_s3
"""

EXAMPLES = r"""
- name: Backup | Stream the database to S3
  betaskill.payops.supabase_backup:
    environment: "{{ payops_environment }}"
    label: daily
    login_host: "{{ payops_db_host }}"
    login_db: "{{ payops_db_name }}"
    login_password: "{{ payops_db_password }}"
    bucket: "{{ payops_s3_bucket }}"
    endpoint_url: "{{ payops_s3_endpoint }}"
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
  sample: payops/production/database/20261127T020000Z-daily-a1b2c3/manifest.json
manifest:
  description: The manifest as written.
  returned: success, not in check mode
  type: dict
  sample: {kind: database, objects: [{name: dump.zst, size: 1048576, sha256: "9f86d0..."}]}
row_counts:
  description: Rows per table in the dump's snapshot.
  returned: always
  type: dict
  sample: {public.payments: 1200}
size:
  description: Bytes stored (compressed).
  returned: success, not in check mode
  type: int
  sample: 1048576
seconds:
  description: Time from the snapshot to the manifest.
  returned: success, not in check mode
  type: float
  sample: 4.8
throughput_mb_s:
  description: Stored megabytes (10^6 bytes) per second.
  returned: success, not in check mode
  type: float
  sample: 46.5
"""

import os
import platform
import subprocess
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import (
    MANIFEST,
    BackupError,
    backup_prefix,
    new_backup_id,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_manifest import (
    MANIFEST_FORMAT,
    manifest_bytes,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_stream import (
    UPLOAD_REQUIRED_IF,
    MultipartWriter,
    check_upload_params,
    first_lines,
    put_small,
    upload_argument_spec,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_pgtools import (
    SUPABASE_EXCLUDED_TABLE_DATA,
    SUPABASE_INTERNAL_SCHEMAS,
    find_tool,
    pg_env,
    row_counts,
    tool_version,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import iso, utcnow
from ansible_collections.betaskill.payops.plugins.module_utils.payops_db import (
    connect,
    db_argument_spec,
    describe,
    first_line,
    psycopg,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_s3 import (
    describe_bucket,
    is_s3_error,
    s3_argument_spec,
    s3_client,
    s3_message,
    with_retries,
)


def snapshot_facts(cur, params):
    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    cur.execute("SELECT pg_export_snapshot() AS snapshot, current_setting('server_version') AS version,"
                " current_setting('server_version_num')::int AS num")
    facts = cur.fetchone()
    cur.execute("SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema')"
                " AND nspname NOT LIKE 'pg\\_toast%%' AND nspname NOT LIKE 'pg\\_temp%%' ORDER BY 1")
    schemas = [row["nspname"] for row in cur.fetchall()]
    excluded = params["exclude_schemas"]
    facts["schemas"] = [name for name in schemas if name not in excluded]
    facts["excluded_present"] = [name for name in schemas if name in excluded]
    facts["row_counts"] = row_counts(cur, excluded, params["exclude_table_data"])
    return facts


def dump_command(pg_dump, snapshot, params):
    command = [pg_dump, "--format=custom", "--compress=0", "--no-password", f"--snapshot={snapshot}"]
    command += [f"--exclude-schema={name}" for name in params["exclude_schemas"]]
    command += [f"--exclude-table-data={name}" for name in params["exclude_table_data"]]
    return command


def run_backup(module, client, conn, facts, pg_dump, backup_id, started):
    params = module.params
    prefix = backup_prefix(params["prefix"], params["environment"], "database", backup_id)
    zstd = params["compression"] == "zstd"
    object_name = "dump.zst" if zstd else "dump"
    sse = None if params["sse"] == "none" else params["sse"]
    attempts = params["retries"]
    writer = MultipartWriter(client, params["bucket"], prefix + object_name, params["part_size_mb"] * 1024 * 1024,
                             sse=sse, kms_key_id=params["sse_kms_key_id"], attempts=attempts,
                             metadata={"payops-backup-id": backup_id})
    processes = []
    with tempfile.TemporaryFile() as dump_err, tempfile.TemporaryFile() as zstd_err:
        try:
            # pylint: disable-next=ansible-bad-function  # pg_dump -> zstd -> S3 multipart upload: run_command cannot stream
            dump = subprocess.Popen(dump_command(pg_dump, facts["snapshot"], params), stdout=subprocess.PIPE,
                                    stderr=dump_err, env=pg_env(params), stdin=subprocess.DEVNULL)
            processes.append(("pg_dump", dump, dump_err))
            source = dump.stdout
            if zstd:
                # pylint: disable-next=ansible-bad-function
                compressor = subprocess.Popen(
                    ["zstd", "-q", "-c", f"-{params['compression_level']}", f"-T{params['compression_threads']}"],
                    stdin=dump.stdout, stdout=subprocess.PIPE, stderr=zstd_err)
                dump.stdout.close()  # zstd owns the pipe now: pg_dump sees SIGPIPE if zstd dies
                processes.append(("zstd", compressor, zstd_err))
                source = compressor.stdout

            def tools_succeeded():
                for name, process, err in processes:
                    code = process.wait()
                    if code != 0:
                        err.seek(0)
                        text = first_lines(err.read().decode(errors="replace"))
                        raise BackupError(f"{name} failed (exit {code}): {text or 'no message'}")

            stored = writer.upload(source, before_complete=tools_succeeded)
        except BaseException:
            for _name, process, _err in processes:
                if process.poll() is None:
                    process.kill()
                process.wait()
            raise
    finished = utcnow()
    stored.update(compression="zstd" if zstd else "none", content="pg_dump custom format",
                  sse=params["sse"])
    manifest = {
        "format": MANIFEST_FORMAT,
        "backup_id": backup_id,
        "kind": "database",
        "environment": params["environment"],
        "label": params["label"],
        "started_at": iso(started),
        "finished_at": iso(finished),
        "seconds": round((finished - started).total_seconds(), 3),
        "objects": [stored],
        "database": {
            "name": params["login_db"],
            "host": params["login_host"],
            "port": params["login_port"],
            "server_version": facts["version"],
            "server_version_num": facts["num"],
            "schemas": facts["schemas"],
            "excluded_schemas": params["exclude_schemas"],
            "excluded_table_data": params["exclude_table_data"],
            "row_counts": facts["row_counts"],
        },
        "tools": {"pg_dump": facts["pg_dump_version"], "zstd": facts.get("zstd_version"),
                  "compression_level": params["compression_level"] if zstd else None},
        "run_id": params["run_id"],
        "operator": params["operator"],
        "controller": platform.node(),
    }
    put_small(client, params["bucket"], prefix + MANIFEST, manifest_bytes(manifest), sse=sse,
              kms_key_id=params["sse_kms_key_id"], attempts=attempts)
    return manifest, prefix + MANIFEST


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(s3_argument_spec())
    argument_spec.update(
        environment=dict(type="str", required=True),
        label=dict(type="str", default=""),
        exclude_schemas=dict(type="list", elements="str"),
        exclude_table_data=dict(type="list", elements="str", default=list(SUPABASE_EXCLUDED_TABLE_DATA)),
        pg_bin_dir=dict(type="path"),
        compression=dict(type="str", choices=["zstd", "none"], default="zstd"),
        compression_level=dict(type="int", default=1),
    )
    argument_spec.update(upload_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, required_if=UPLOAD_REQUIRED_IF)
    params = module.params
    check_upload_params(module)
    if params["exclude_schemas"] is None:
        params["exclude_schemas"] = list(SUPABASE_INTERNAL_SCHEMAS)
    started = utcnow()
    backup_id = new_backup_id(started, params["label"])
    client = s3_client(module)
    conn = connect(module, application_name="payops_backup")
    result = {"changed": False, "backup_id": backup_id}
    try:
        with conn.cursor() as cur:
            facts = snapshot_facts(cur, params)
            server_major = facts["num"] // 10000
            pg_dump, facts["pg_dump_version"] = find_tool("pg_dump", server_major, params["pg_bin_dir"])
            if params["compression"] == "zstd":
                facts["zstd_version"] = zstd_version(module)
            try:
                with_retries(client.head_bucket, attempts=params["retries"], Bucket=params["bucket"])
            except Exception as exc:
                if is_s3_error(exc):
                    raise BackupError(s3_message(exc, params, "reach the bucket")) from None
                raise
            result["row_counts"] = facts["row_counts"]
            result["schemas"] = facts["schemas"]
            result["pg_dump"] = pg_dump
            if module.check_mode:
                result["msg"] = (f"would dump {describe(params)} ({len(facts['row_counts'])} tables) with {pg_dump} "
                                 f"into {describe_bucket(params)} as {backup_id}")
                module.exit_json(**result)
            t0 = time.monotonic()
            manifest, manifest_key = run_backup(module, client, conn, facts, pg_dump, backup_id, started)
            seconds = time.monotonic() - t0
        conn.rollback()
    except BackupError as exc:
        module.fail_json(msg=f"backup of {describe(params)} failed, nothing was kept: {exc}", **result)
    except psycopg.Error as exc:
        module.fail_json(msg=f"backup of {describe(params)} failed: {first_line(exc)}", **result)
    except Exception as exc:
        if is_s3_error(exc):
            module.fail_json(msg=f"backup failed, no manifest was written: {s3_message(exc, params, 'upload')}",
                             **result)
        raise
    finally:
        conn.close()
    size = manifest["objects"][0]["size"]
    result.update(
        changed=True,
        manifest=manifest,
        manifest_key=manifest_key,
        size=size,
        seconds=round(seconds, 3),
        throughput_mb_s=round(size / 1e6 / seconds, 1) if seconds > 0 else None,
        msg=f"backup {backup_id}: {size} bytes, {len(facts['row_counts'])} tables, in {seconds:.1f} s",
    )
    module.exit_json(**result)


def zstd_version(module):
    try:
        return tool_version("zstd")[1]
    except BackupError:
        module.fail_json(msg="zstd is not installed: install the Debian package zstd (scripts/bootstrap does), "
                             "or run with compression=none")


if __name__ == "__main__":
    os.umask(0o077)
    main()
