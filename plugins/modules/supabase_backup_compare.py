#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: supabase_backup_compare
short_description: Compare the live database's per-table row counts with a database backup's manifest
description:
  - Reads the manifest of a database backup (O(backup_id), else the newest complete one) and counts
    the rows of every table of the live database with the same schemas and table data left out.
  - Each table is C(same), C(grown) (rows added since the backup), C(shrunk), C(missing), C(new)
    (created since) or C(volatile) (O(volatile_tables), whose rows come and go). The verdict is
    C(healthy) when every difference is explained by newer rows (live >= manifest), else C(degraded).
  - Read-only; runs in check mode too. The counts are exact (C(count(*))), in one read-only
    repeatable-read transaction.
author: payops contributors (!UNKNOWN)
options:
  environment:
    description: The environment whose backups are used.
    type: str
    required: true
  backup_id:
    description: The database backup to compare with; default the newest complete one.
    type: str
  volatile_tables:
    description: Tables whose differences are reported and not judged (C(schema.table)).
    type: list
    elements: str
    default: [auth.sessions, auth.refresh_tokens]
extends_documentation_fragment:
  - betaskill.payops.payops_db
  - betaskill.payops.payops_s3
"""

EXAMPLES = r"""
- name: Recovery | Live row counts against the newest database backup
  betaskill.payops.supabase_backup_compare:
    environment: "{{ payops_environment }}"
    login_host: "{{ payops_db_host }}"
    login_password: "{{ payops_db_password }}"
    bucket: "{{ payops_s3_bucket }}"
  register: compared
"""

RETURN = r"""
backup_id:
  description: The backup compared with.
  returned: success
  type: str
  sample: 20261127T020000Z-daily-a1b2c3
verdict:
  description: C(healthy) when every table has at least the manifest's rows (or is volatile), else C(degraded).
  returned: success
  type: str
  sample: healthy
tables:
  description: Per table, the manifest's and the live count, the difference and its state.
  returned: success
  type: list
  elements: dict
  sample: [{table: public.payments, manifest: 120, live: 124, difference: 4, state: grown}]
backup_age_seconds:
  description: How old the backup's data is.
  returned: success
  type: int
  sample: 3600
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_catalog import (
    load_backups,
    select_backup,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import BackupError
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_restore import judge_counts
from ansible_collections.betaskill.payops.plugins.module_utils.payops_pgtools import row_counts
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


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(s3_argument_spec())
    argument_spec.update(
        environment=dict(type="str", required=True),
        backup_id=dict(type="str"),
        volatile_tables=dict(type="list", elements="str", default=["auth.sessions", "auth.refresh_tokens"]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    client = s3_client(module)
    try:
        entries = load_backups(client, params["bucket"], params["prefix"], params["environment"], "database",
                               attempts=params["retries"], with_verifications=False)
        entry = select_backup(entries, "database", backup_id=params["backup_id"],
                              hint="nothing to compare with: run backup:database first")
        database = entry["manifest"].get("database") or {}
        conn = connect(module, autocommit=False, application_name="payops_recovery_verify")
        try:
            with conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                live = row_counts(cur, database.get("excluded_schemas", []), database.get("excluded_table_data", []))
            conn.rollback()
        finally:
            conn.close()
    except BackupError as exc:
        module.fail_json(msg=str(exc))
    except psycopg.Error as exc:
        module.fail_json(msg=f"cannot count rows in {describe(params)}: {first_line(exc)}")
    except Exception as exc:
        if is_s3_error(exc):
            module.fail_json(msg=s3_message(exc, params, "read the database backups"))
        raise
    verdict, tables = judge_counts(database.get("row_counts", {}), live, tuple(params["volatile_tables"]))
    counted = {state: sum(1 for row in tables if row["state"] == state)
               for state in ("same", "grown", "shrunk", "missing", "new", "volatile")}
    module.exit_json(
        changed=False, backup_id=entry["backup_id"], verdict=verdict, tables=tables, counted=counted,
        backup_age_seconds=round((utcnow() - parse_time_strict(entry["manifest"]["started_at"])).total_seconds()),
        msg=f"{verdict}: against {entry['backup_id']}, " + ", ".join(f"{n} {s}" for s, n in counted.items() if n),
    )


if __name__ == "__main__":
    main()
