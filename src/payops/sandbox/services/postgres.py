"""PostgreSQL: a throwaway cluster under postgres/data, started with pg_ctl, holding BetaSkill's schema."""

from __future__ import annotations

import importlib.resources
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ansible_collections.betaskill.payops.plugins.module_utils import payops_migrations as migrations

from payops.errors import PayopsError
from payops.sandbox import process
from payops.sandbox.services.base import (
    HOST,
    STOP_TIMEOUT,
    Markers,
    MissingPackage,
    Package,
    Service,
    State,
    now,
    read_pid_file,
    write_private,
)

if TYPE_CHECKING:
    import psycopg

DB_NAME = "betaskill"
DB_USER = "postgres"
# The app's login (Supabase's authenticator, switching to service_role): betaskill.sql makes both.
APP_DB_USER = "authenticator"
APP_DB_ROLE = "service_role"
# The audit callback's login: a member of payops_audit_writer (0004_audit_trail.sql), which may
# append to payops.audit_trail and do nothing else.
AUDIT_DB_USER = "payops_audit"
# payops' migrations: the collection's schema/migrations (the checkout is the collection).
MIGRATIONS = Path(migrations.__file__).resolve().parents[2] / "schema" / "migrations"


class PostgresService(Service):
    name = "postgres"
    preferred_port = 15432
    package = Package("postgresql", "initdb and pg_ctl")
    # The app connects at start, and the schema must be there before it does.
    ready_before_dependents: ClassVar[bool] = True

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "run"

    def find_tools(self) -> dict[str, str]:
        bindir = postgres_bindir()
        if bindir is None:
            raise MissingPackage(self.package)
        self.tools["initdb"], self.tools["pg_ctl"] = str(bindir / "initdb"), str(bindir / "pg_ctl")
        return self.tools

    def markers(self) -> Markers:
        return Markers(("postgres", str(self.data)))

    def pid(self, state: State) -> int | None:
        pid = read_pid_file(self.data / "postmaster.pid")
        return pid if process.is_ours(pid, self.markers().words) else None

    def healthy(self, state: State, timeout: float = 1.0) -> bool:
        port = self.port(state)
        if not port:
            return False
        try:
            import psycopg

            with psycopg.connect(host=HOST, port=port, user=DB_USER, dbname="postgres",
                                 password=state["credentials"]["postgres_password"],
                                 connect_timeout=max(1, int(timeout))) as conn:
                conn.execute("SELECT 1")
        except Exception:  # not answering, for whatever reason, is unhealthy
            return False
        return True

    def as_postgres(self, argv: list[str]) -> list[str]:
        # PostgreSQL refuses to run as root: run its tools as the postgres OS user.
        return ["runuser", "-u", "postgres", "--", *argv] if self.ctx.as_root else argv

    # ----------------------------------------------------------------------------- start
    def start(self, state: State) -> None:
        self.make_directories()
        if not (self.data / "PG_VERSION").exists():
            self.initdb(state)
        self.remove_stale_locks()
        options = " ".join(shlex.quote(option) for option in (
            "-p", str(state["ports"]["postgres"]), "-c", f"listen_addresses={HOST}",
            "-c", f"unix_socket_directories={self.socket_dir}", "-c", "max_connections=100",
        ))
        result = subprocess.run(
            self.as_postgres([self.tools["pg_ctl"], "-D", str(self.data), "-l", str(self.log_path), "-w",
                              "-t", "30", "-o", options, "start"]),
            capture_output=True, text=True, env=self.ctx.child_env(), check=False)
        if result.returncode != 0:
            self.fail(f"did not start ({(result.stderr or result.stdout).strip()})")
        pid = read_pid_file(self.data / "postmaster.pid")
        state["processes"]["postgres"] = {"pid": pid, "started_at": now()}
        self.ctx.say(f"started postgres (pid {pid}) on {HOST}:{state['ports']['postgres']}")

    def make_directories(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self.log_path.touch(exist_ok=True)
        if not self.ctx.as_root:
            return
        for path in (self.directory, self.socket_dir, self.log_path):
            shutil.chown(path, "postgres", "postgres")
        blocked = [str(p) for p in self.directory.parents if p.stat().st_mode & 0o001 == 0]
        if blocked:
            raise PayopsError(f"PostgreSQL runs as the postgres user, which cannot enter {blocked[0]}: "
                              "use a state directory whose parents others may enter (chmod o+x)")

    def initdb(self, state: State) -> None:
        if self.data.exists():
            shutil.rmtree(self.data)  # a half-made cluster from an interrupted first `up`
        pwfile = self.directory / ".pwfile"
        write_private(pwfile, state["credentials"]["postgres_password"] + "\n")
        if self.ctx.as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            result = subprocess.run(
                self.as_postgres([self.tools["initdb"], "-D", str(self.data), "-U", DB_USER,
                                  f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                capture_output=True, text=True, env=self.ctx.child_env(), check=False)
        finally:
            pwfile.unlink(missing_ok=True)
        with self.log_path.open("a") as handle:
            handle.write(result.stdout + result.stderr)
        if result.returncode != 0:
            self.fail("initdb failed")

    def remove_stale_locks(self) -> None:
        words = self.markers().words
        stale = self.data / "postmaster.pid"
        if stale.exists() and not process.is_ours(read_pid_file(stale), words):
            # After a crash or a reboot the pid in it may belong to someone else now.
            stale.unlink()
        for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
            # The socket's lock names the postmaster that made it; PostgreSQL believes any live pid.
            if not process.is_ours(read_pid_file(lock), words):
                lock.unlink(missing_ok=True)
                Path(str(lock)[: -len(".lock")]).unlink(missing_ok=True)

    def prepare(self, state: State) -> None:
        """Create the betaskill database, apply betaskill.sql (idempotent) as the superuser, set the
        app's login role's password, then install payops' schema with its migrations, by the code
        payops:install runs (betaskill.payops.supabase_migrations is a wrapper of the same functions)."""
        import psycopg
        from psycopg.rows import dict_row

        with self.superuser_connection(state) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
            if not exists:
                conn.execute(f"CREATE DATABASE {DB_NAME}")
        schema = importlib.resources.files("payops.sandbox").joinpath("betaskill.sql").read_text()
        with psycopg.connect(state_dsn(state), autocommit=True, row_factory=dict_row) as conn:
            conn.execute(schema)
            conn.execute(f"ALTER ROLE {APP_DB_USER} PASSWORD {quote_literal(state['credentials']['app_db_password'])}")
            try:
                applied = install_payops_schema(conn, run_id="sandbox-up")
            except (migrations.MigrationError, psycopg.Error) as exc:
                self.fail(f"cannot install the payops schema: {migrations.first_line(exc)}")
            audit_password = quote_literal(state["credentials"]["audit_db_password"])
            if conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (AUDIT_DB_USER,)).fetchone() is None:
                conn.execute(f"CREATE ROLE {AUDIT_DB_USER} LOGIN IN ROLE payops_audit_writer")
            conn.execute(f"ALTER ROLE {AUDIT_DB_USER} PASSWORD {audit_password}")
        if applied:
            self.ctx.say(f"installed the payops schema: {', '.join(applied)}")

    def superuser_connection(self, state: State) -> psycopg.Connection:
        import psycopg

        port, password = state["ports"]["postgres"], state["credentials"]["postgres_password"]

        def connect() -> psycopg.Connection:
            return psycopg.connect(host=HOST, port=port, user=DB_USER, password=password,
                                   dbname="postgres", autocommit=True, connect_timeout=5)

        try:
            return connect()
        except psycopg.OperationalError as exc:
            if "password authentication failed" not in str(exc):
                self.fail(f"does not accept connections ({exc})")
        # The cluster outlived the credentials (state.json was removed): set the kept password.
        with psycopg.connect(host=str(self.socket_dir), port=port, user=DB_USER, dbname="postgres",
                             autocommit=True) as local:
            local.execute(f"ALTER ROLE {DB_USER} PASSWORD {quote_literal(password)}")
        return connect()

    # ------------------------------------------------------------------------------ stop
    def stop(self, state: State, pid: int) -> None:
        self.find_tools()
        subprocess.run(self.as_postgres([self.tools["pg_ctl"], "-D", str(self.data), "stop", "-m", "fast",
                                         "-w", "-t", str(int(STOP_TIMEOUT))]),
                       capture_output=True, env=self.ctx.child_env(), check=False)
        if not process.wait_gone(pid, 1.0):
            process.terminate(pid, STOP_TIMEOUT)


def postgres_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found and (Path(found).parent / "initdb").exists():
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    for candidate in reversed(versions):
        if (candidate.parent / "initdb").exists():
            return candidate.parent
    return None


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def install_payops_schema(conn: psycopg.Connection, run_id: str | None = None) -> list[str]:
    """Apply the pending payops migrations (a dict-row autocommit connection); the names applied."""
    files = migrations.read_folder(str(MIGRATIONS))
    migrations.lock(conn, TABLE)
    try:
        pending, _already = migrations.plan(conn, TABLE, files, installs_table=True)
        return migrations.apply(conn, TABLE, files, pending, release="sandbox", operator="payops sandbox up",
                                run_id=run_id, private_schemas=["payops"])
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (TABLE,))


TABLE = "payops.schema_versions"


def app_dsn(state: State) -> str:
    """The app's connection: authenticator, acting as service_role (what Supabase's API does)."""
    password = state["credentials"]["app_db_password"]
    return (f"postgresql://{APP_DB_USER}:{password}@{HOST}:{state['ports']['postgres']}/{DB_NAME}"
            f"?options=-c%20role%3D{APP_DB_ROLE}")


def audit_dsn(state: State) -> str:
    """The audit callback's connection (PAYOPS_AUDIT_DSN): payops_audit, which may only append."""
    password = state["credentials"]["audit_db_password"]
    return f"postgresql://{AUDIT_DB_USER}:{password}@{HOST}:{state['ports']['postgres']}/{DB_NAME}"


def state_dsn(state: State) -> str:
    password = state["credentials"]["postgres_password"]
    return f"postgresql://{DB_USER}:{password}@{HOST}:{state['ports']['postgres']}/{DB_NAME}"
