# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL's client tools and row counts for backups: finding a pg_dump/pg_restore at least as
new as the server, libpq's environment for them, what a Supabase dump leaves out, and exact row
counts."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import BackupError

# DESIGN.md, "Facts about Supabase backups": schemas Supabase manages itself.
SUPABASE_INTERNAL_SCHEMAS = [
    "_analytics", "_realtime", "_supavisor", "extensions", "graphql", "graphql_public", "net",
    "pgbouncer", "pgsodium", "pgsodium_masks", "realtime", "supabase_functions", "supabase_migrations",
    "vault", "cron", "pg_net",
]


SUPABASE_EXCLUDED_TABLE_DATA = ["storage.objects"]


def tool_version(path):
    """(major, 'x.y') of a PostgreSQL client tool, from its --version."""
    try:
        # pylint: disable-next=ansible-bad-function  # a helper without the module; one --version
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupError(f"cannot run {path} --version: {exc}") from None
    match = re.search(r"(\d+)\.(\d+)(?:\.\d+)?", out)
    if not match:
        raise BackupError(f"cannot read the version of {path} from {out.strip()!r}")
    return int(match.group(1)), match.group(0)


def find_tool(name, server_major, explicit_dir=None):
    """The PostgreSQL client tool to use: in explicit_dir if given, else the newest installed
    /usr/lib/postgresql/<major>/bin/<name> that is at least the server's major, else PATH's.
    Refuses a tool older than the server, saying which version is needed."""
    candidates = []
    if explicit_dir:
        candidates = [os.path.join(explicit_dir, name)]
    else:
        versioned = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                           key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0, reverse=True)
        candidates = versioned + ([shutil.which(name)] if shutil.which(name) else [])
    if not candidates:
        raise BackupError(f"{name} is not installed: install postgresql-client-{server_major} or newer")
    chosen = None
    for path in candidates:
        if not os.access(path, os.X_OK):
            continue
        major, version = tool_version(path)
        if major >= server_major:
            return path, version
        chosen = chosen or (path, version)
    if chosen is None:
        raise BackupError(f"{name} not found at {', '.join(candidates)}")
    raise BackupError(
        f"{chosen[0]} is version {chosen[1]}, older than the server (PostgreSQL {server_major}): "
        f"{name} {server_major} or newer is needed (install postgresql-client-{server_major}, or point "
        f"pg_bin_dir at it)")


def pg_env(params, database=None):
    """libpq's environment for a child tool: the password never appears on a command line."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(PGHOST=params["login_host"], PGPORT=str(params["login_port"]), PGUSER=params["login_user"],
               PGDATABASE=database or params["login_db"], PGSSLMODE=params["ssl_mode"],
               PGCONNECT_TIMEOUT=str(params["connect_timeout"]), PGAPPNAME="payops")
    if params.get("login_password"):
        env["PGPASSWORD"] = params["login_password"]
    return env


ROW_COUNT_TABLES = """
SELECT n.nspname AS schema, c.relname AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
   AND NOT (n.nspname = ANY(%s))
 ORDER BY 1, 2
"""


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def row_counts(cur, excluded_schemas, excluded_table_data=()):
    """{schema.table: exact row count} of every table outside the excluded schemas; tables whose
    data is left out of the dump are left out here too."""
    cur.execute(ROW_COUNT_TABLES, (list(excluded_schemas),))
    tables = [(row["schema"], row["name"]) for row in cur.fetchall()]
    counts = {}
    for schema, name in tables:
        qualified = f"{schema}.{name}"
        if qualified in excluded_table_data:
            continue
        cur.execute(f"SELECT count(*) AS n FROM ONLY {quote_ident(schema)}.{quote_ident(name)}")  # noqa: S608
        counts[qualified] = cur.fetchone()["n"]
    return counts
