#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: supabase_restore
short_description: Restore a payops database backup from S3 into a target database
description:
  - Chooses a backup (O(backup_id), or the newest whose last verification passed), then reads the
    dump once to check its size and SHA-256 against the manifest B(before touching the target).
  - Then streams it again from S3 through C(zstd -d) into C(pg_restore) (single transaction,
    C(--no-owner --no-privileges) by default, as Supabase's roles do not exist elsewhere), checking
    the SHA-256 on the way, and finally counts every table's rows against the manifest.
  - A target that is the environment's live database (O(live_db)) is refused unless O(confirm)
    equals O(environment). A target that already holds tables is refused unless O(replace=true),
    which restores with C(--clean --if-exists).
  - Check mode chooses the backup and verifies its checksum, and touches no database.
author: payops contributors (!UNKNOWN)
options:
  environment:
    description: The environment whose backups are used.
    type: str
    required: true
  backup_id:
    description: The backup to restore; default the newest verified one.
    type: str
  allow_unverified:
    description: Without O(backup_id), fall back to the newest complete backup when none is verified.
    type: bool
    default: false
  target_db:
    description: The database to restore into, on the server of the connection options.
    type: str
    required: true
  live_db:
    description: The environment's live database; restoring into it needs O(confirm).
    type: str
  confirm:
    description: Must equal O(environment) to restore into O(live_db).
    type: str
    default: ""
  create:
    description: Create the target database when it does not exist.
    type: bool
    default: true
  replace:
    description: Restore over a target that already holds tables (C(--clean --if-exists)).
    type: bool
    default: false
  no_owner:
    description: C(pg_restore --no-owner).
    type: bool
    default: true
  no_privileges:
    description: C(pg_restore --no-privileges).
    type: bool
    default: true
  drop_after:
    description: Drop the target afterwards (drills into C(payops_*) scratch databases only).
    type: bool
    default: false
  pg_bin_dir:
    description: Folder holding pg_restore; default the newest installed that is at least the server's.
    type: path
extends_documentation_fragment:
  - betaskill.payops.payops_db
  - betaskill.payops.payops_s3
"""

EXAMPLES = r"""
- name: Recovery | Restore the newest verified backup into a scratch database
  betaskill.payops.supabase_restore:
    environment: "{{ payops_environment }}"
    target_db: payops_restore_check
    live_db: "{{ payops_db_name }}"
    bucket: "{{ payops_s3_bucket }}"
    login_password: "{{ payops_db_password }}"
"""

RETURN = r"""
backup_id:
  description: The backup restored (or that would be, in check mode).
  returned: always
  type: str
  sample: 20261127T020000Z-daily-a1b2c3
row_count_problems:
  description: Tables whose rows differ from the manifest after the restore; empty when all match.
  returned: success, not in check mode
  type: list
  elements: str
  sample: []
tables_compared:
  description: How many tables were counted.
  returned: success, not in check mode
  type: int
  sample: 14
verify_seconds:
  description: Time of the checksum pass.
  returned: always
  type: float
  sample: 1.2
restore_seconds:
  description: Time of the restore pass.
  returned: success, not in check mode
  type: float
  sample: 3.5
data_age_seconds:
  description: Age of the restored data (now minus the backup's start).
  returned: always
  type: int
  sample: 3600
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_catalog import (
    load_backups,
    select_backup,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import BackupError
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_manifest import object_problems
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_restore import (
    compare_counts,
    connect_to,
    create_database,
    database_exists,
    drop_scratch_database,
    pipe_object,
    pipe_problem,
    restore_command,
    user_table_count,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_stream import stream_object
from ansible_collections.betaskill.payops.plugins.module_utils.payops_pgtools import find_tool, pg_env, row_counts
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import parse_time_strict, utcnow
from ansible_collections.betaskill.payops.plugins.module_utils.payops_db import (
    connect,
    db_argument_spec,
    describe,
    first_line,
    psycopg,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_s3 import (
    is_s3_error,
    s3_argument_spec,
    s3_client,
    s3_message,
)


def choose(module, client):
    params = module.params
    entries = load_backups(client, params["bucket"], params["prefix"], params["environment"], "database",
                           attempts=params["retries"])
    if params["allow_unverified"]:
        return select_backup(entries, "database", backup_id=params["backup_id"], prefer_verified=True,
                             hint="run backup:database first")
    return select_backup(entries, "database", backup_id=params["backup_id"], verified_only=True,
                         hint=f"run backup:verify-integrity on {params['environment']}, or name one with backup_id")


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(s3_argument_spec())
    argument_spec.update(
        environment=dict(type="str", required=True),
        backup_id=dict(type="str"),
        allow_unverified=dict(type="bool", default=False),
        target_db=dict(type="str", required=True),
        live_db=dict(type="str"),
        confirm=dict(type="str", default=""),
        create=dict(type="bool", default=True),
        replace=dict(type="bool", default=False),
        no_owner=dict(type="bool", default=True),
        no_privileges=dict(type="bool", default=True),
        drop_after=dict(type="bool", default=False),
        pg_bin_dir=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    target = params["target_db"]
    if params["live_db"] and target == params["live_db"] and params["confirm"] != params["environment"]:
        module.fail_json(msg=f"refusing to restore into {target}, the live database of {params['environment']}: "
                             f"run with confirm={params['environment']}. Nothing was changed.")
    client = s3_client(module)
    result = {"changed": False, "target_db": target}
    admin = None
    try:
        entry = choose(module, client)
        manifest = entry["manifest"]
        expected = manifest["objects"][0]
        key = entry["prefix"] + expected["name"]
        result.update(backup_id=entry["backup_id"], label=manifest.get("label"),
                      data_age_seconds=round((utcnow() - parse_time_strict(manifest["started_at"])).total_seconds()))
        t0 = time.monotonic()
        size, digest, _sink_error = stream_object(client, params["bucket"], key, attempts=params["retries"])
        result["verify_seconds"] = round(time.monotonic() - t0, 3)
        problems = object_problems(expected, size, digest)
        if problems:
            module.fail_json(msg=f"backup {entry['backup_id']} fails its checksum, {target} was not touched: "
                                 + "; ".join(f"s3://{params['bucket']}/{key}: {p}" for p in problems), **result)
        admin = connect(module, autocommit=True, application_name="payops_restore")
        server_major = admin.info.server_version // 10000
        pg_restore = find_tool("pg_restore", server_major, params["pg_bin_dir"])[0]
        with admin.cursor() as cur:
            exists = database_exists(cur, target)
        if not exists and not params["create"]:
            module.fail_json(msg=f"target database {target} does not exist (create=false)", **result)
        if exists:
            probe = connect_to(module, target, connect)
            with probe, probe.cursor() as cur:
                tables = user_table_count(cur)
            if tables and not params["replace"]:
                module.fail_json(msg=f"target database {target} already holds {tables} tables: choose an empty "
                                     "target, or replace=true to restore over them. Nothing was changed.", **result)
        if module.check_mode:
            result["msg"] = (f"would restore {entry['backup_id']} ({size} bytes, checksum verified) into {target}"
                             + (" (created)" if not exists else " (replacing its tables)" if params["replace"] else ""))
            module.exit_json(**result)
        if not exists:
            with admin.cursor() as cur:
                create_database(cur, target)
        result["changed"] = True
        t0 = time.monotonic()
        restored = pipe_object(client, params["bucket"], key, expected.get("compression", "none"),
                               restore_command(pg_restore, target, params["no_owner"], params["no_privileges"],
                                               clean=exists and params["replace"]),
                               env=pg_env(params, database=target), attempts=params["retries"])
        result["restore_seconds"] = round(time.monotonic() - t0, 3)
        problem = pipe_problem("pg_restore", restored) or "; ".join(
            object_problems(expected, restored["size"], restored["sha256"]))
        if problem:
            module.fail_json(msg=f"restore of {entry['backup_id']} into {target} failed (single transaction: "
                                 f"rolled back): {problem}", **result)
        check = connect_to(module, target, connect)
        database = manifest.get("database") or {}
        with check, check.cursor() as cur:
            counts = row_counts(cur, database.get("excluded_schemas", []), database.get("excluded_table_data", []))
        result["row_count_problems"] = compare_counts(database.get("row_counts", {}), counts)
        result["tables_compared"] = len(database.get("row_counts", {}))
        result["seconds"] = round(result["verify_seconds"] + result["restore_seconds"], 3)
        if params["drop_after"]:
            with admin.cursor() as cur:
                drop_scratch_database(cur, target)
            result["dropped"] = True
    except BackupError as exc:
        module.fail_json(msg=str(exc), **result)
    except psycopg.Error as exc:
        module.fail_json(msg=f"restore into {target} on {describe(params)} failed: {first_line(exc)}", **result)
    except Exception as exc:
        if is_s3_error(exc):
            module.fail_json(msg=s3_message(exc, params, "read the backup"), **result)
        raise
    finally:
        if admin is not None:
            admin.close()
    if result["row_count_problems"]:
        module.fail_json(msg=f"restored {result['backup_id']} into {target}, but rows differ from the manifest: "
                             + "; ".join(result["row_count_problems"][:5]), **result)
    result["msg"] = (f"restored {result['backup_id']} into {target} in {result['restore_seconds']} s; "
                     f"{result['tables_compared']} tables match the manifest")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
