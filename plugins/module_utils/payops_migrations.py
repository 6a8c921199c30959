# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ordered SQL migrations, the one implementation: payops' own schema (schema/migrations, applied by
payops:install and by `payops sandbox up`) and a release's migrations (betaskill.payops.supabase_migrations
in a deployment) go through these functions.

A migration is a file `<number>_<name>.sql`, run once, in numeric order, each in its own transaction
together with the row that records it (name, SHA-256, release, who, run id, when, how long), under a
lock_timeout so that a migration waiting for a table lock gives up before the app's writes queue
behind it (it is retried a few times, then reported). A session advisory lock keeps two runs on one
migrations table from interleaving. A migration whose file changed after it was applied, or a
pending one that sorts before the newest applied one, stops everything before anything runs.

After each migration, still inside its transaction, the schemas that must stay private are checked:
if the migration made any of their objects usable by PUBLIC or by the app's public roles (Supabase's
anon and authenticated), it is rolled back and the privileges are named.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import tarfile
import time

from ansible_collections.betaskill.payops.plugins.module_utils.payops_db import first_line, psycopg

sql = psycopg.sql if psycopg is not None else None  # without psycopg the module reports it (require_psycopg)

NAME = re.compile(r"^[0-9]+[_-][A-Za-z0-9_.-]*\.sql$")
TABLE = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
LOCK_TIMEOUT = re.compile(r"^[0-9]+ ?(ms|s|min)?$")
PUBLIC_ROLES = ("PUBLIC", "anon", "authenticated")
LOCK_WAIT_SECONDS = 60


class MigrationError(Exception):
    """A refusal or a failure, in words for the operator; `result` holds what was done before it."""

    def __init__(self, message, **result):
        super().__init__(message)
        self.result = result


def read_folder(path):
    """{file name: bytes} of the .sql files in a folder."""
    if not os.path.isdir(path):
        raise MigrationError(f"path {path} is not a folder of migrations")
    found = {}
    for name in os.listdir(path):
        if name.endswith(".sql"):
            with open(os.path.join(path, name), "rb") as handle:
                found[name] = handle.read()
    return found


def read_archive(archive, member_dir):
    """{file name: bytes} of the .sql files directly under member_dir in a tar archive."""
    prefix = member_dir.strip("/") + "/"
    found = {}
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = member.name[2:] if member.name.startswith("./") else member.name
                if not member.isfile() or not name.startswith(prefix) or not name.endswith(".sql"):
                    continue
                base = name[len(prefix):]
                if "/" not in base:
                    found[base] = tar.extractfile(member).read()
    except (OSError, tarfile.TarError) as exc:
        raise MigrationError(f"cannot read the migrations in archive {archive}: {exc}") from None
    return found


def sort_key(name):
    return (int(re.match(r"[0-9]+", name).group()), name)


def ordered(files):
    """The file names in the order they run: the leading number, then the name (10_x after 9_y)."""
    bad = sorted(name for name in files if not NAME.match(name))
    if bad:
        raise MigrationError("migration files must be named <number>_<name>.sql so that their order is "
                             f"clear; these are not: {', '.join(bad)}")
    return sorted(files, key=sort_key)


def digests(files):
    return {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}


def lock(conn, table, wait=LOCK_WAIT_SECONDS):
    """The session advisory lock of one migrations table, waiting up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while not conn.execute("SELECT pg_try_advisory_lock(hashtext(%s)) AS ok", (table,)).fetchone()["ok"]:
        if time.monotonic() > deadline:
            holder = conn.execute(
                "SELECT a.pid, a.application_name, a.client_addr::text AS client, a.query_start"
                "  FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                " WHERE l.locktype = 'advisory' AND l.objid = hashtext(%s)::oid AND l.granted LIMIT 1",
                (table,)).fetchone()
            who = (f"pid {holder['pid']} ({holder['application_name'] or 'no application name'}"
                   f" from {holder['client'] or 'a local socket'}, since {holder['query_start']:%H:%M:%S})"
                   if holder else "another session")
            raise MigrationError(f"{who} is applying migrations to {table}; waited {wait} s, "
                                 "applied nothing: run again when it is done")
        time.sleep(0.5)


def plan(conn, table, files, installs_table=False):
    """(pending, already) for these files against the table, or MigrationError for changed or
    out-of-order files. A missing table is an error unless the first pending migration creates it
    (installs_table: payops' own schema, whose 0001 creates payops.schema_versions)."""
    names = ordered(files)
    sums = digests(files)
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS exists", (table,)).fetchone()["exists"]
    if not exists and not installs_table:
        raise MigrationError(f"the migrations table {table} does not exist: the payops schema is not "
                             "installed in this database (run payops:install first)")
    recorded = {}
    if exists:
        schema, _dot, name = table.partition(".")
        rows = conn.execute(sql.SQL("SELECT name, sha256, release, applied_at FROM {}").format(
            sql.Identifier(schema, name))).fetchall()
        recorded = {row["name"]: row for row in rows}
    changed = [f"{name} (applied with release {row['release']} on {row['applied_at']:%Y-%m-%d %H:%M})"
               for name, row in ((name, recorded.get(name)) for name in names)
               if row and row["sha256"] != sums[name]]
    if changed:
        raise MigrationError("these migrations changed after they were applied; a migration is never run "
                             "twice, so write a new one instead: " + "; ".join(changed))
    already = [name for name in names if name in recorded]
    pending = [name for name in names if name not in recorded]
    if recorded and pending:
        newest = max(recorded, key=sort_key)
        early = [name for name in pending if sort_key(name) < sort_key(newest)]
        if early:
            raise MigrationError(f"{', '.join(early)} would run after {newest}, which is already applied: "
                                 "renumber it after the newest applied migration", pending=pending, already=already)
    return pending, already


def exposed(conn, schemas, roles=PUBLIC_ROLES):
    """Privileges that PUBLIC or the given roles hold on the schemas or their tables, sequences and
    functions: ["EXECUTE on function payops.f(text) to PUBLIC", ...]. Roles the database does not
    have are left out. A function without an ACL is executable by PUBLIC (PostgreSQL's default)."""
    if not schemas:
        return []
    rows = conn.execute(
        """
        WITH grantees AS (
            SELECT 0::oid AS oid, 'PUBLIC' AS name WHERE 'PUBLIC' = ANY(%(roles)s)
            UNION ALL
            SELECT oid, rolname FROM pg_roles WHERE rolname = ANY(%(roles)s)
        ), acl AS (
            SELECT 'schema' AS kind, n.nspname::text AS object,
                   (aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner)))).*
              FROM pg_namespace n WHERE n.nspname = ANY(%(schemas)s)
            UNION ALL
            SELECT CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END,
                   format('%%I.%%I', n.nspname, c.relname),
                   (aclexplode(coalesce(c.relacl, acldefault(
                       (CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", c.relowner)))).*
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
            UNION ALL
            SELECT 'function', p.oid::regprocedure::text,
                   (aclexplode(coalesce(p.proacl, acldefault('f', p.proowner)))).*
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = ANY(%(schemas)s)
        )
        SELECT acl.kind, acl.object, acl.privilege_type, g.name AS grantee
          FROM acl JOIN grantees g ON g.oid = acl.grantee
         ORDER BY 1, 2, 4, 3
        """,
        {"schemas": list(schemas), "roles": list(roles)},
    ).fetchall()
    return [f"{row['privilege_type']} on {row['kind']} {row['object']} to {row['grantee']}" for row in rows]


def apply(conn, table, files, pending, release=None, operator="unknown", run_id=None, lock_timeout="2s",
          lock_retries=3, private_schemas=(), public_roles=PUBLIC_ROLES):
    """Run the pending migrations in order; returns the names applied. On the first failure raises
    MigrationError with `applied` (those committed before it) and `failed_migration`."""
    schema, _dot, table_name = table.partition(".")
    insert = sql.SQL("INSERT INTO {} (name, sha256, release, applied_by, run_id, applied_at, duration_ms)"
                     " VALUES (%s, %s, %s, %s, %s, %s, %s)").format(sql.Identifier(schema, table_name))
    sums = digests(files)
    applied = []
    before = set(exposed(conn, private_schemas, public_roles))  # grants made by hand are not the migrations'
    for migration in pending:
        for attempt in range(lock_retries + 1):
            started = time.monotonic()
            try:
                with conn.transaction():
                    conn.execute("SELECT set_config('lock_timeout', %s, true)", (lock_timeout,))
                    conn.execute(files[migration].decode("utf-8"))
                    opened = [grant for grant in exposed(conn, private_schemas, public_roles) if grant not in before]
                    if opened:
                        raise MigrationError(
                            f"migration {migration} was rolled back: it leaves schema "
                            f"{', '.join(private_schemas)} open to the app's public roles ({'; '.join(opened)}); "
                            "revoke those privileges in the migration", applied=applied,
                            failed_migration={"name": migration, "error": "; ".join(opened)})
                    conn.execute(insert, (migration, sums[migration], release, operator, run_id,
                                          datetime.datetime.now(datetime.UTC),
                                          round((time.monotonic() - started) * 1000)))
                break
            except psycopg.errors.LockNotAvailable as exc:
                if attempt < lock_retries:
                    time.sleep(1 + attempt)
                    continue
                raise MigrationError(
                    f"migration {migration} waited {lock_timeout} for a lock {lock_retries + 1} times and was "
                    f"rolled back each time ({first_line(exc)}): a long transaction holds a table it changes; "
                    f"applied before it: {', '.join(applied) or 'none'}", applied=applied,
                    failed_migration={"name": migration, "error": first_line(exc)}) from None
            except psycopg.errors.UndefinedTable as exc:
                if table in str(exc):
                    raise MigrationError(
                        f"migration {migration} ran but {table} still does not exist to record it; it was "
                        "rolled back", applied=applied,
                        failed_migration={"name": migration, "error": first_line(exc)}) from None
                raise _failed(migration, exc, applied) from None
            except (psycopg.Error, UnicodeDecodeError) as exc:
                raise _failed(migration, exc, applied) from None
        applied.append(migration)
    return applied


def _failed(migration, exc, applied):
    return MigrationError(f"migration {migration} failed and was rolled back: {first_line(exc)}; "
                          f"applied before it: {', '.join(applied) or 'none'}", applied=applied,
                          failed_migration={"name": migration, "error": first_line(exc)})
