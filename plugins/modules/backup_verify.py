#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_verify
short_description: Verify payops backups in S3 end to end and record each verdict beside its manifest
description:
  - Re-reads every object of each selected backup and compares its size and SHA-256 with the
    manifest; database dumps are streamed through C(zstd -d) into C(pg_restore --list) in the same
    pass, and every table the manifest counted must have its data in the archive.
  - With O(deep=true), database backups are also restored into a scratch database (C(payops_*),
    created and dropped by the module) and each table's rows are counted against the manifest. The
    time to a usable restore is returned (the drill's RTO) with the age of the data (its RPO).
  - Each verdict is written as C(verification-<time>.json) beside the manifest; the manifest and the
    objects are never rewritten. A manifest that does not parse fails its backup's verdict.
  - Check mode verifies but records nothing and skips the deep restore.
  - The module reports verdicts; it fails only when it cannot do its work (bucket unreachable, a
    backup id that does not exist). O(fail_on_problem) makes a failed verdict fail the task.
author: payops contributors (!UNKNOWN)
options:
  environment:
    description: The environment whose backups are verified.
    type: str
    required: true
  kinds:
    description: Kinds of backup to verify.
    type: list
    elements: str
    choices: [database, configuration, application]
    default: [database, configuration, application]
  backup_ids:
    description: Verify these backups only (of O(kinds)); otherwise O(select) decides.
    type: list
    elements: str
    default: []
  select:
    description: Without O(backup_ids), C(all) backups with a manifest, or the C(newest) of each kind.
    type: str
    choices: [all, newest]
    default: all
  deep:
    description: Restore database backups into a scratch database and compare row counts.
    type: bool
    default: false
  record:
    description: Write the verdict beside the manifest.
    type: bool
    default: true
  pg_bin_dir:
    description: Folder holding pg_restore; default the newest installed that is at least the server's.
    type: path
  fail_on_problem:
    description: Fail the task when any verdict is failed.
    type: bool
    default: false
  run_id:
    description: The run, kept in the verification record.
    type: str
extends_documentation_fragment:
  - betaskill.payops.payops_db
  - betaskill.payops.payops_s3
"""

EXAMPLES = r"""
- name: Backup | Verify the newest database backup deeply
  betaskill.payops.backup_verify:
    environment: "{{ payops_environment }}"
    kinds: [database]
    select: newest
    deep: true
    bucket: "{{ payops_s3_bucket }}"
    login_password: "{{ payops_db_password }}"
  register: verified
"""

RETURN = r"""
backups:
  description: One verdict per backup.
  returned: always
  type: list
  elements: dict
  sample:
    - backup_id: 20261127T020000Z-daily-a1b2c3
      kind: database
      result: passed
      problems: []
      deep: true
      restore_seconds: 3.2
      rto_seconds: 4.1
      data_age_seconds: 7200
      recorded: payops/local/database/20261127T020000Z-daily-a1b2c3/verification-20261127T040000Z.json
passed_count:
  description: How many backups passed.
  returned: always
  type: int
  sample: 3
rows:
  description: One verdict row per backup for the report role (component, state, value, target, detail).
  returned: always
  type: list
  elements: dict
  sample: [{component: "database 20261127T020000Z-daily-a1b2c3", state: healthy, value: passed, target: passed}]
failed_count:
  description: How many backups failed.
  returned: always
  type: int
  sample: 0
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_catalog import (
    ANY_STATE,
    WITH_MANIFEST,
    load_backups,
    select_backup,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import KINDS, BackupError, stamp
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_manifest import object_problems
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_restore import (
    compare_counts,
    connect_to,
    create_database,
    drop_scratch_database,
    listing_problems,
    pipe_object,
    pipe_problem,
    restore_command,
    scratch_name,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_stream import put_small, stream_object
from ansible_collections.betaskill.payops.plugins.module_utils.payops_pgtools import find_tool, pg_env, row_counts
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import iso, parse_time_strict, utcnow
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


class Verifier:
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.server_major = None
        self.tool = None

    def pg_restore(self):
        if self.tool is None:
            conn = connect(self.module, autocommit=True, application_name="payops_verify")
            with conn:
                self.server_major = conn.info.server_version // 10000
            self.tool = find_tool("pg_restore", self.server_major, self.params["pg_bin_dir"])[0]
        return self.tool

    def verify(self, entry):
        params = self.params
        started = time.monotonic()
        verdict = {"backup_id": entry["backup_id"], "kind": entry["kind"], "deep": False, "problems": [],
                   "objects": [], "label": None}
        if entry["state"] != "complete":
            verdict["problems"].append(entry.get("error") or "no manifest: the backup is incomplete")
            return self.finish(entry, verdict, started, record=entry["state"] == "unreadable")
        manifest = entry["manifest"]
        verdict["label"] = manifest.get("label")
        verdict["started_at"] = manifest["started_at"]
        database = manifest.get("database") or {}
        for expected in manifest["objects"]:
            key = entry["prefix"] + expected["name"]
            if expected["name"] not in entry["objects"]:
                verdict["problems"].append(f"{expected['name']}: missing from s3://{params['bucket']}/{key}")
                continue
            if entry["kind"] == "database":
                result = pipe_object(self.client, params["bucket"], key, expected.get("compression", "none"),
                                     [self.pg_restore(), "--list"], env=pg_env(params), attempts=params["retries"])
                problem = pipe_problem("pg_restore --list", result)
                problems = object_problems(expected, result["size"], result["sha256"])
                if problem and not problems:
                    problems.append(f"{expected['name']}: {problem}")
                elif not problem:
                    problems += listing_problems(result["stdout"], database.get("row_counts", {}))
                verdict["archive_entries"] = len([line for line in result["stdout"].splitlines()
                                                  if line and not line.startswith(";")])
                size, digest = result["size"], result["sha256"]
            else:
                size, digest, _sink = stream_object(self.client, params["bucket"], key, attempts=params["retries"])
                problems = object_problems(expected, size, digest)
            verdict["objects"].append({"name": expected["name"], "key": key, "size": size, "sha256": digest,
                                       "ok": not problems})
            verdict["problems"] += [f"s3://{params['bucket']}/{key}: {text}" if not text.startswith("s3://")
                                    else text for text in problems]
        checksum_seconds = time.monotonic() - started
        if params["deep"] and entry["kind"] == "database" and not verdict["problems"]:
            if self.module.check_mode:
                verdict["deep_skipped"] = "check mode: no scratch database is created"
            else:
                self.deep(entry, manifest, verdict)
                verdict["rto_seconds"] = round(checksum_seconds + verdict.get("restore_seconds", 0)
                                               + verdict.get("count_seconds", 0), 3)
        verdict["data_age_seconds"] = round((utcnow() - parse_time_strict(manifest["started_at"])).total_seconds())
        return self.finish(entry, verdict, started, record=True)

    def deep(self, entry, manifest, verdict):
        params = self.params
        verdict["deep"] = True
        name = scratch_name("verify", entry["backup_id"])
        expected = manifest["objects"][0]
        admin = connect(self.module, autocommit=True, application_name="payops_verify")
        try:
            with admin.cursor() as cur:
                drop_scratch_database(cur, name)
                create_database(cur, name)
            t0 = time.monotonic()
            result = pipe_object(self.client, params["bucket"], entry["prefix"] + expected["name"],
                                 expected.get("compression", "none"), restore_command(self.pg_restore(), name),
                                 env=pg_env(params, database=name), attempts=params["retries"])
            verdict["restore_seconds"] = round(time.monotonic() - t0, 3)
            problem = pipe_problem("pg_restore", result)
            problem_objects = object_problems(expected, result["size"], result["sha256"])
            verdict["problems"] += problem_objects
            if problem:
                verdict["problems"].append(f"restore into scratch database {name}: {problem}")
                return
            t0 = time.monotonic()
            scratch = connect_to(self.module, name, connect)
            try:
                with scratch.cursor() as cur:
                    counts = row_counts(cur, (manifest.get("database") or {}).get("excluded_schemas", []),
                                        (manifest.get("database") or {}).get("excluded_table_data", []))
            finally:
                scratch.close()
            verdict["count_seconds"] = round(time.monotonic() - t0, 3)
            verdict["row_counts_compared"] = len(manifest["database"]["row_counts"])
            verdict["problems"] += compare_counts(manifest["database"]["row_counts"], counts)
        finally:
            with admin.cursor() as cur:
                drop_scratch_database(cur, name)
            admin.close()

    def finish(self, entry, verdict, started, record):
        params = self.params
        verdict["result"] = "failed" if verdict["problems"] else "passed"
        verdict["seconds"] = round(time.monotonic() - started, 3)
        verdict["verified_at"] = iso(utcnow())
        if record and params["record"] and not self.module.check_mode:
            key = f"{entry['prefix']}verification-{stamp(utcnow())}.json"
            body = dict(verdict, run_id=params["run_id"], format="payops-verification/1")
            put_small(self.client, params["bucket"], key, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode(),
                      sse="AES256", attempts=params["retries"])
            verdict["recorded"] = key
        return verdict


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(s3_argument_spec())
    argument_spec.update(
        environment=dict(type="str", required=True),
        kinds=dict(type="list", elements="str", choices=list(KINDS), default=list(KINDS)),
        backup_ids=dict(type="list", elements="str", default=[]),
        select=dict(type="str", choices=["all", "newest"], default="all"),
        deep=dict(type="bool", default=False),
        record=dict(type="bool", default=True),
        pg_bin_dir=dict(type="path"),
        fail_on_problem=dict(type="bool", default=False),
        run_id=dict(type="str"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    client = s3_client(module)
    verifier = Verifier(module, client)
    verdicts = []
    try:
        for kind in params["kinds"]:
            entries = load_backups(client, params["bucket"], params["prefix"], params["environment"], kind,
                                   attempts=params["retries"], with_verifications=False)
            if params["backup_ids"]:
                wanted = [entry for entry in entries if entry["backup_id"] in params["backup_ids"]]
            elif params["select"] == "newest":
                # An unreadable manifest is the newest backup's failure to report, not a reason to skip it.
                newest = select_backup(entries, kind, states=WITH_MANIFEST, required=False)
                wanted = [newest] if newest else []
            else:
                wanted = [entry for entry in entries if entry["state"] != "incomplete"]
            for entry in wanted:
                verdicts.append(verifier.verify(entry))
        found = {verdict["backup_id"] for verdict in verdicts}
        for backup_id in params["backup_ids"]:
            if backup_id not in found:
                entries = []
                for kind in params["kinds"]:
                    entries += load_backups(client, params["bucket"], params["prefix"], params["environment"], kind,
                                            attempts=params["retries"], with_verifications=False)
                select_backup(entries, "/".join(params["kinds"]), backup_id=backup_id, states=ANY_STATE)
    except BackupError as exc:
        module.fail_json(msg=str(exc), backups=verdicts)
    except psycopg.Error as exc:
        module.fail_json(msg=f"verification needs the database {describe(params)}: {first_line(exc)}",
                         backups=verdicts)
    except Exception as exc:
        if is_s3_error(exc):
            module.fail_json(msg=s3_message(exc, params, "verify backups"), backups=verdicts)
        raise
    failed = [verdict for verdict in verdicts if verdict["result"] == "failed"]
    rows = [{
        "component": f"{v['kind']} {v['backup_id']}",
        "state": "healthy" if v["result"] == "passed" else "down",
        "value": v["result"] + (" (deep: restored, rows counted)" if v.get("deep") else ""),
        "target": "passed",
        "detail": "; ".join(v["problems"][:3]) if v["problems"] else (
            f"restore {v['restore_seconds']} s, RTO {v['rto_seconds']} s, data age "
            f"{v['data_age_seconds'] / 3600:.1f} h" if v.get("restore_seconds") is not None else
            f"{sum(o['size'] for o in v['objects'])} bytes re-read in {v['seconds']} s"),
    } for v in verdicts]
    if not rows:
        rows.append({"component": "backups", "state": "down", "value": "none found", "target": "at least one",
                     "detail": f"no backup of {', '.join(params['kinds'])} in s3://{params['bucket']}"})
    result = {
        "rows": rows,
        "changed": any("recorded" in verdict for verdict in verdicts),
        "backups": verdicts,
        "passed_count": len(verdicts) - len(failed),
        "failed_count": len(failed),
        "msg": f"{len(verdicts) - len(failed)} of {len(verdicts)} backups passed"
        + ("" if not failed else ": " + "; ".join(f"{v['backup_id']}: {v['problems'][0]}" for v in failed)),
    }
    if failed and params["fail_on_problem"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
