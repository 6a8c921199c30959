#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: supabase_migrations
short_description: Apply a release's database migrations in order, each once, each in a transaction
description:
  - Reads the C(*.sql) files of a release's migrations folder, either from a directory or straight
    out of the release's tar archive (no unpacking on the controller), and compares them with the
    migrations table.
  - Each pending migration runs in its own transaction together with the row that records it, so a
    migration is applied entirely and recorded, or not at all. The first one that fails stops the
    run; those before it stay applied and are reported.
  - A migration already applied is never run again. One whose file changed since (another SHA-256)
    fails the task before anything runs, as does a pending migration that sorts before one already
    applied (it would run out of order).
  - A session advisory lock keeps two runs from migrating at once.
  - With O(state=pending), or in check mode, lists what would run and changes nothing (the table is
    not even created).
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
    description: The migrations table, C(schema.table); created with its schema when missing.
    type: str
    default: payops.schema_migrations
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
failed_migration:
  description: The migration that failed, with the database's message.
  returned: on failure while applying
  type: dict
  sample: {name: "0002_bad.sql", error: "relation \"nope\" does not exist"}
"""

import datetime
import hashlib
import os
import re
import tarfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_db import (
    connect,
    db_argument_spec,
    describe,
    first_line,
    psycopg,
)

MIGRATION_NAME = re.compile(r"^[0-9]+[_-][A-Za-z0-9_.-]*\.sql$")
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
LOCK_KEY = "payops.schema_migrations"


def read_folder(module, path):
    if not os.path.isdir(path):
        module.fail_json(msg=f"path {path} is not a folder of migrations")
    found = {}
    for name in os.listdir(path):
        if name.endswith(".sql"):
            with open(os.path.join(path, name), "rb") as handle:
                found[name] = handle.read()
    return found


def read_archive(module, archive, member_dir):
    prefix = member_dir.strip("/") + "/"
    found = {}
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = member.name[2:] if member.name.startswith("./") else member.name
                if not member.isfile() or not name.startswith(prefix) or not name.endswith(".sql"):
                    continue
                base = name[len(prefix):]
                if "/" in base:
                    continue
                found[base] = tar.extractfile(member).read()
    except (OSError, tarfile.TarError) as exc:
        module.fail_json(msg=f"cannot read the migrations in archive {archive}: {exc}")
    return found


def ordered(module, files):
    bad = sorted(name for name in files if not MIGRATION_NAME.match(name))
    if bad:
        module.fail_json(msg="migration files must be named <number>_<name>.sql so that their order is "
                             f"clear; these are not: {', '.join(bad)}")
    # Numeric order of the leading number, then the name: 10_x runs after 9_y.
    return sorted(files, key=lambda name: (int(re.match(r"[0-9]+", name).group()), name))


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(
        path=dict(type="path"),
        archive=dict(type="path"),
        member_dir=dict(type="str", default="migrations"),
        table=dict(type="str", default="payops.schema_migrations"),
        release=dict(type="str"),
        operator=dict(type="str", default="unknown"),
        run_id=dict(type="str"),
        state=dict(type="str", choices=["applied", "pending"], default="applied"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[("path", "archive")],
        required_one_of=[("path", "archive")],
    )
    params = module.params
    if not TABLE_NAME.match(params["table"]):
        module.fail_json(msg=f"table must be schema.table in lower case letters, digits and _; got {params['table']!r}")
    schema, _dot, table_name = params["table"].partition(".")
    files = read_folder(module, params["path"]) if params["path"] else read_archive(
        module, params["archive"], params["member_dir"])
    names = ordered(module, files)
    digests = {name: hashlib.sha256(files[name]).hexdigest() for name in names}
    apply = params["state"] == "applied" and not module.check_mode

    conn = connect(module, autocommit=True, application_name="supabase_migrations")
    table = psycopg.sql.Identifier(schema, table_name)
    result = {"changed": False, "pending": [], "applied": [], "already": []}
    try:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (LOCK_KEY,))
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS exists", (params["table"],)).fetchone()["exists"]
        if not exists and apply:
            conn.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(psycopg.sql.Identifier(schema)))
            conn.execute(psycopg.sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " name text PRIMARY KEY, sha256 text NOT NULL, release text, applied_by text,"
                " run_id text, applied_at timestamptz NOT NULL DEFAULT now(), duration_ms integer)").format(table))
            exists = True
        recorded = {}
        if exists:
            query = psycopg.sql.SQL("SELECT name, sha256, release, applied_at FROM {}").format(table)
            rows = conn.execute(query).fetchall()
            recorded = {row["name"]: row for row in rows}
        changed_files = [
            f"{name} (applied with release {row['release']} on {row['applied_at']:%Y-%m-%d %H:%M})"
            for name, row in ((name, recorded.get(name)) for name in names)
            if row and row["sha256"] != digests[name]]
        if changed_files:
            module.fail_json(msg="these migrations changed after they were applied; a migration is never run "
                                 "twice, so write a new one instead: " + "; ".join(changed_files), **result)
        result["already"] = [name for name in names if name in recorded]
        result["pending"] = [name for name in names if name not in recorded]
        newest = max(recorded, key=lambda name: (int(re.match(r"[0-9]+", name).group()), name)) if recorded else None
        if newest and result["pending"]:
            key = (int(re.match(r"[0-9]+", newest).group()), newest)
            early = [name for name in result["pending"] if (int(re.match(r"[0-9]+", name).group()), name) < key]
            if early:
                module.fail_json(msg=f"{', '.join(early)} would run after {newest}, which is already applied: "
                                     "renumber it after the newest applied migration", **result)
        if not apply:
            result["changed"] = bool(result["pending"]) and params["state"] == "applied"
            result["msg"] = (f"{len(result['pending'])} pending: {', '.join(result['pending'])}"
                             if result["pending"] else "no pending migrations")
            module.exit_json(**result)
        for name in result["pending"]:
            started = time.monotonic()
            try:
                with conn.transaction():
                    conn.execute(files[name].decode("utf-8"))
                    conn.execute(psycopg.sql.SQL(
                        "INSERT INTO {} (name, sha256, release, applied_by, run_id, applied_at,"
                        " duration_ms) VALUES (%s, %s, %s, %s, %s, %s, %s)").format(table),
                        (name, digests[name], params["release"], params["operator"], params["run_id"],
                         datetime.datetime.now(datetime.UTC), round((time.monotonic() - started) * 1000)))
            except (psycopg.Error, UnicodeDecodeError) as exc:
                result["changed"] = bool(result["applied"])
                result["failed_migration"] = {"name": name, "error": first_line(exc)}
                module.fail_json(msg=f"migration {name} failed and was rolled back: {first_line(exc)}; "
                                     f"applied before it: {', '.join(result['applied']) or 'none'}", **result)
            result["applied"].append(name)
    except psycopg.Error as exc:
        module.fail_json(msg=f"cannot read or apply migrations in {describe(params)}: {first_line(exc)}", **result)
    finally:
        conn.close()
    result["changed"] = bool(result["applied"])
    result["msg"] = (f"applied {', '.join(result['applied'])}" if result["applied"] else "no pending migrations")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
