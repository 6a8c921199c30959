#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: supabase_migrations
short_description: Apply SQL migrations in order, each once, each in a transaction
description:
  - Reads the C(*.sql) files of a migrations folder, or of a release's migrations straight out of its
    tar archive (no unpacking on the controller), and compares them with the migrations table. The
    same code applies payops' own schema (C(schema/migrations), the C(payops:install) procedure) and
    a release's migrations in a deployment.
  - Each pending migration runs in its own transaction together with the row that records it (name,
    SHA-256, release, operator, run id, duration), so a migration is applied entirely and recorded, or
    not at all. The first one that fails stops the run; those before it stay applied and are reported.
  - Each transaction sets O(lock_timeout), so that a migration waiting for a table lock (a trigger on
    C(payments), say) gives up before the app's writes queue behind it; it is retried
    O(lock_retries) times, then reported.
  - A migration already applied is never run again. One whose file changed since (another SHA-256)
    fails the task before anything runs, as does a pending migration that sorts before one already
    applied (it would run out of order).
  - A session advisory lock on the migrations table keeps two runs from interleaving; a second run
    waits up to a minute for the first, then sees what it applied.
  - A migration that makes an object of O(private_schemas) usable by PUBLIC or O(public_roles) is
    rolled back, naming the privileges. What is open after the run is returned in RV(exposed).
  - With O(state=pending), or in check mode, lists what would run and changes nothing.
  - The module creates nothing itself. The migrations table must exist, unless O(installs_table) says
    that the first migration creates it (payops' own schema, whose first migration creates
    C(payops.schema_versions) and C(payops.schema_migrations)).
author: payops contributors (!UNKNOWN)
options:
  path:
    description: A folder holding the migrations as C(<number>_<name>.sql) files.
    type: path
  archive:
    description: A release archive (tar, optionally gzip-compressed) holding the migrations under
      O(member_dir).
    type: path
  member_dir:
    description: The folder inside O(archive) that holds the migrations.
    type: str
    default: migrations
  table:
    description: The migrations table, C(schema.table).
    type: str
    default: payops.schema_migrations
  installs_table:
    description: The first pending migration creates O(table); without this a missing table fails the
      task before anything runs (the payops schema is not installed).
    type: bool
    default: false
  lock_timeout:
    description: PostgreSQL's C(lock_timeout) inside each migration's transaction (C(2s), C(500ms)).
    type: str
    default: 2s
  lock_retries:
    description: How many times a migration that timed out waiting for a lock is tried again (after
      1, 2, 3... seconds).
    type: int
    default: 3
  private_schemas:
    description: Schemas none of whose objects a migration may open to O(public_roles).
    type: list
    elements: str
    default: [payops]
  public_roles:
    description: The roles that must not reach O(private_schemas); C(PUBLIC) is every role. Roles the
      database does not have are left out.
    type: list
    elements: str
    default: [PUBLIC, anon, authenticated]
  release:
    description: The release the migrations come from, recorded with each one.
    type: str
  operator:
    description: Who, recorded with each migration.
    type: str
    default: unknown
  run_id:
    description: The run, recorded with each migration.
    type: str
  state:
    description: C(applied) runs the pending migrations; C(pending) only lists them.
    type: str
    choices: [applied, pending]
    default: applied
extends_documentation_fragment:
  - betaskill.payops.payops_db
notes:
  - Migrations go forward only. A release rolled back keeps the migrations its successor applied,
    so migrations must leave the schema usable by the release before them (add, then remove in a
    later release).
"""

EXAMPLES = r"""
- name: Install payops' own schema
  betaskill.payops.supabase_migrations:
    path: "{{ playbook_dir | dirname }}/schema/migrations"
    table: payops.schema_versions
    installs_table: true

- name: Apply the release's migrations
  betaskill.payops.supabase_migrations:
    archive: /var/cache/payops/releases/1.1.0/app.tar.gz
    release: "1.1.0"
    login_host: "{{ payops_db_host }}"
    login_password: "{{ payops_db_password }}"

- name: List the pending migrations
  betaskill.payops.supabase_migrations:
    path: /srv/betaskill/app/releases/1.1.0/migrations
    state: pending
  register: migrations
"""

RETURN = r"""
pending:
  description: Migrations not applied before this task, in the order they run.
  returned: always
  type: list
  elements: str
  sample: ["0002_course_reviews_index.sql"]
applied:
  description: Migrations this task applied (none in check mode or with O(state=pending)).
  returned: always
  type: list
  elements: str
  sample: ["0002_course_reviews_index.sql"]
already:
  description: Migrations of the release that were applied before.
  returned: always
  type: list
  elements: str
  sample: ["0001_course_reviews.sql"]
exposed:
  description: Privileges that PUBLIC or O(public_roles) hold on O(private_schemas) after the run.
  returned: always
  type: list
  elements: str
  sample: ["SELECT on table payops.switches to anon"]
failed_migration:
  description: The migration that failed, with the database's message.
  returned: on failure while applying
  type: dict
  sample: {name: "0002_bad.sql", error: "relation \"nope\" does not exist"}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils import payops_migrations as migrations
from ansible_collections.betaskill.payops.plugins.module_utils.payops_db import (
    connect,
    db_argument_spec,
    describe,
    first_line,
    psycopg,
)


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(
        path=dict(type="path"),
        archive=dict(type="path"),
        member_dir=dict(type="str", default="migrations"),
        table=dict(type="str", default="payops.schema_migrations"),
        installs_table=dict(type="bool", default=False),
        release=dict(type="str"),
        operator=dict(type="str", default="unknown"),
        run_id=dict(type="str"),
        lock_timeout=dict(type="str", default="2s"),
        lock_retries=dict(type="int", default=3),
        private_schemas=dict(type="list", elements="str", default=["payops"]),
        public_roles=dict(type="list", elements="str", default=list(migrations.PUBLIC_ROLES)),
        state=dict(type="str", choices=["applied", "pending"], default="applied"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[("path", "archive")],
        required_one_of=[("path", "archive")],
    )
    params = module.params
    table = params["table"]
    if not migrations.TABLE.match(table):
        module.fail_json(msg=f"table must be schema.table in lower case letters, digits and _; got {table!r}")
    if not migrations.LOCK_TIMEOUT.match(params["lock_timeout"]):
        module.fail_json(msg=f"lock_timeout must be a duration such as 2s or 500ms; got {params['lock_timeout']!r}")
    result = {"changed": False, "pending": [], "applied": [], "already": [], "exposed": []}
    try:
        files = (migrations.read_folder(params["path"]) if params["path"]
                 else migrations.read_archive(params["archive"], params["member_dir"]))
    except migrations.MigrationError as exc:
        module.fail_json(msg=str(exc), **result)
    apply = params["state"] == "applied" and not module.check_mode

    conn = connect(module, autocommit=True, application_name="supabase_migrations")
    try:
        migrations.lock(conn, table)
        result["pending"], result["already"] = migrations.plan(conn, table, files, params["installs_table"])
        if apply and result["pending"]:
            result["applied"] = migrations.apply(
                conn, table, files, result["pending"], release=params["release"], operator=params["operator"],
                run_id=params["run_id"], lock_timeout=params["lock_timeout"], lock_retries=params["lock_retries"],
                private_schemas=params["private_schemas"], public_roles=params["public_roles"])
        result["exposed"] = migrations.exposed(conn, params["private_schemas"], params["public_roles"])
    except migrations.MigrationError as exc:
        result.update(exc.result)
        result["changed"] = bool(result["applied"])
        module.fail_json(msg=str(exc), **result)
    except psycopg.Error as exc:
        module.fail_json(msg=f"cannot read or apply migrations in {describe(params)}: {first_line(exc)}", **result)
    finally:
        conn.close()
    if not apply:
        result["changed"] = bool(result["pending"]) and params["state"] == "applied"
        result["msg"] = (f"{len(result['pending'])} pending: {', '.join(result['pending'])}"
                         if result["pending"] else "no pending migrations")
    else:
        result["changed"] = bool(result["applied"])
        result["msg"] = f"applied {', '.join(result['applied'])}" if result["applied"] else "no pending migrations"
    module.exit_json(**result)


if __name__ == "__main__":
    main()
