# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database connection every payops module shares: one argument spec with libpq's environment
variables as defaults (so AWX credential types can inject them), one way to connect, one way to
fail without leaking the password."""

from __future__ import annotations

import time

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    import psycopg
    from psycopg.rows import dict_row

    HAS_PSYCOPG = True
except ImportError:  # reported by require_psycopg() in the module's own words
    psycopg = None
    dict_row = None
    HAS_PSYCOPG = False


def db_argument_spec():
    """Connection options, each defaulting to the libpq environment variable of the same meaning."""
    return dict(
        login_host=dict(type="str", fallback=(env_fallback, ["PGHOST"]), default="127.0.0.1"),
        login_port=dict(type="int", fallback=(env_fallback, ["PGPORT"]), default=5432),
        login_db=dict(type="str", fallback=(env_fallback, ["PGDATABASE"]), default="postgres", aliases=["db"]),
        login_user=dict(type="str", fallback=(env_fallback, ["PGUSER"]), default="postgres"),
        login_password=dict(type="str", fallback=(env_fallback, ["PGPASSWORD"]), no_log=True),
        ssl_mode=dict(
            type="str",
            fallback=(env_fallback, ["PGSSLMODE"]),
            default="prefer",
            choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
        ),
        connect_timeout=dict(type="int", default=10),
    )


def describe(params):
    """Where we connect, for messages: never the password."""
    return f"{params['login_user']}@{params['login_host']}:{params['login_port']}/{params['login_db']}"


def require_psycopg(module):
    if not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg (version 3)"))


def connect(module, autocommit=False, application_name="payops"):
    """A psycopg connection with dict rows, or fail_json naming the database and the reason."""
    conn, error = connect_or_error(module, autocommit=autocommit, application_name=application_name)
    if error:
        module.fail_json(msg=error, database=describe(module.params))
    return conn


NOT_INSTALLED = ("the payops schema is not installed in this database, or is older than this payops: "
                 "run payops:install (payops:install --check lists what it would apply)")


def first_line(exc):
    """psycopg's message without the hint lines and never the DSN; a missing payops table or
    function says how to install the schema."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else exc.__class__.__name__
    if HAS_PSYCOPG and "payops." in line and isinstance(
            exc, (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction, psycopg.errors.InvalidSchemaName)):
        return f"{line} ({NOT_INSTALLED})"
    return line


def connect_or_error(module, autocommit=True, application_name="payops"):
    """(connection, None) or (None, the reason): for health checks, where an unreachable database
    is a verdict to report, not a task failure."""
    require_psycopg(module)
    params = module.params
    started = time.monotonic()
    try:
        conn = psycopg.connect(
            host=params["login_host"],
            port=params["login_port"],
            dbname=params["login_db"],
            user=params["login_user"],
            password=params.get("login_password") or None,
            sslmode=params["ssl_mode"],
            connect_timeout=params["connect_timeout"],
            application_name=application_name,
            autocommit=autocommit,
            row_factory=dict_row,
        )
    except psycopg.Error as exc:
        return None, f"cannot connect to the database {describe(params)}: {first_line(exc)}"
    conn.payops_connect_ms = round((time.monotonic() - started) * 1000, 1)
    return conn, None
