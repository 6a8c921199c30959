"""payops in a database that has never seen it: a second, empty PostgreSQL cluster holding only
BetaSkill's tables and Supabase's roles (src/payops/sandbox/betaskill.sql), as a BetaSkill Supabase
project has them before payops.

In order: payops:install --check lists the migrations and creates nothing; payops:install applies
them and records each with its SHA-256; a second install changes nothing; the schema is closed to
PUBLIC, anon and authenticated (connecting as each) and gives service_role what the contract says;
payment:emergency-stop works there and the database itself refuses a new pending payment while a
payment created before the stop still completes; system:recover lifts it; a deployment records
itself there. Then the installer's refusals on real files: an edited migration, two installs at
once, a migration waiting for a lock, a migration that opens the schema.

The procedures run with the second database given as extra variables (payops_db_*); the edge and
the app hosts are the sandbox's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from conftest import ROOT, payops

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

MIGRATIONS = ROOT / "schema" / "migrations"
BETASKILL_SQL = ROOT / "src" / "payops" / "sandbox" / "betaskill.sql"
COURSE_ID = "00000000-0000-4000-8000-000000000001"  # seeded by betaskill.sql
USER_ID = "00000000-0000-4000-9000-000000000001"
APP_PASSWORD = "second-cluster-authenticator"
AS_ROOT = os.geteuid() == 0


class Cluster:
    """A throwaway PostgreSQL cluster on a free loopback port, removed at the end."""

    def __init__(self) -> None:
        from payops.sandbox.manager import postgres_bindir

        self.bindir = postgres_bindir()
        # The postgres user must enter every parent folder: not under pytest's private tmp.
        self.root = Path(tempfile.mkdtemp(prefix="payops-second-cluster-", dir="/tmp"))
        self.root.chmod(0o755)
        self.password = uuid.uuid4().hex
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    def as_postgres(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if AS_ROOT else argv

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        (self.root / "run").mkdir()
        if AS_ROOT:
            for path in (self.root, pwfile, self.root / "run"):
                shutil.chown(path, "postgres", "postgres")
        subprocess.run(self.as_postgres([str(self.bindir / "initdb"), "-D", str(self.root / "data"), "-U", "postgres",
                                         f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                                         "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                       check=True, capture_output=True)
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root / 'run'}"
        subprocess.run(self.as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-w", "-o",
                                         options, "-l", str(self.root / "log"), "start"]),
                       check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(self.as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m",
                                         "immediate", "-w", "stop"]), check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, db: str = "betaskill", user: str = "postgres", password: str | None = None,
            role: str | None = None) -> str:
        options = f"?options=-c%20role%3D{role}" if role else ""
        return f"postgresql://{user}:{password or self.password}@127.0.0.1:{self.port}/{db}{options}"

    def betaskill_database(self, name: str) -> str:
        """A database holding only BetaSkill's tables (and Supabase's roles, cluster-wide)."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(self.dsn(name), autocommit=True) as conn:
            conn.execute(BETASKILL_SQL.read_text())
            conn.execute(f"ALTER ROLE authenticator PASSWORD '{APP_PASSWORD}'")
        return name

    def variables(self, db: str = "betaskill") -> list[str]:
        return ["-e", json.dumps({"payops_db_host": "127.0.0.1", "payops_db_port": self.port, "payops_db_name": db,
                                  "payops_db_user": "postgres", "payops_db_password": self.password})]


@pytest.fixture(scope="module")
def second(sandbox) -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        cluster.start()
        cluster.betaskill_database("betaskill")
        yield cluster
    finally:
        cluster.stop()


def run(cluster: Cluster, command: str, *extra: str, check_mode: bool = False, db: str = "betaskill",
        timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], Path]:
    args = ["run", command, *cluster.variables(db), *extra, *(["--check"] if check_mode else [])]
    result = payops(*args, timeout=timeout, check=False)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert cluster.password not in output, "the database password was shown"
    folder = Path(output.rsplit("run artefacts in ", 1)[1].split()[0])
    return result, folder


def report(folder: Path, name: str) -> dict[str, Any]:
    return json.loads(next(folder.rglob(f"{name}.json")).read_text())


def query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def module(cluster: Cluster, db: str = "betaskill", **args: Any) -> tuple[int, dict[str, Any]]:
    """betaskill.payops.supabase_migrations as an ad-hoc task (a real module process): (rc, result)."""
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGDATABASE": db,
           "PGUSER": "postgres", "PGPASSWORD": cluster.password, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible")), "localhost", "-c", "local", "-i", "localhost,",
         "-e", f"ansible_python_interpreter={sys.executable}", "-m", "betaskill.payops.supabase_migrations",
         "-a", json.dumps({"ssl_mode": "disable", **args})],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert "=>" in result.stdout, result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout.split("=>", 1)[1])


def names() -> list[str]:
    return sorted(path.name for path in MIGRATIONS.glob("*.sql"))


def pending_payment(dsn: str) -> str:
    reference = f"SKILL-{uuid.uuid4().hex[:12]}"
    query(dsn, "INSERT INTO public.payments (user_id, course_id, amount, status, transaction_reference)"
               " VALUES (%s, %s, 49900, 'pending', %s)", (USER_ID, COURSE_ID, reference))
    return reference


# --- install --------------------------------------------------------------------------------------------

def test_install_applies_each_migration_once_and_a_second_install_changes_nothing(second):
    dsn = second.dsn()
    result, folder = run(second, "payops:install", check_mode=True)
    assert result.returncode == 0, result.stdout
    assert report(folder, "payops-install")["details"]["pending"] == names()
    assert query(dsn, "SELECT to_regnamespace('payops')") == [(None,)], "check mode created the schema"

    result, folder = run(second, "payops:install")
    assert result.returncode == 0, result.stdout
    assert report(folder, "payops-install")["details"]["applied"] == names()
    recorded = query(dsn, "SELECT name, sha256, applied_at FROM payops.schema_versions ORDER BY name")
    assert [(name, sha) for name, sha, _at in recorded] == [
        (name, hashlib.sha256((MIGRATIONS / name).read_bytes()).hexdigest()) for name in names()]
    assert query(dsn, "SELECT name FROM payops.switches WHERE NOT enabled ORDER BY name") == [
        ("lockdown",), ("maintenance",), ("payments_stopped",)]

    result, folder = run(second, "payops:install")
    assert result.returncode == 0, result.stdout
    again = report(folder, "payops-install")["details"]
    assert again["applied"] == [] and again["already"] == names() and again["exposed"] == []
    assert query(dsn, "SELECT name, sha256, applied_at FROM payops.schema_versions ORDER BY name") == recorded


PRIVATE = [
    ("read the switches", "SELECT * FROM payops.switches"),
    ("turn a switch off", "UPDATE payops.switches SET enabled = false"),
    ("write a switch event", "INSERT INTO payops.switch_events (name, enabled) VALUES ('lockdown', false)"),
    ("read the receipts", "SELECT * FROM payops.webhook_receipts"),
    ("apply a gateway result",
     "SELECT payops.apply_gateway_result('PL-x', 'SUCCESS', 'SKILL-x', '{}'::jsonb, 'webhook')"),
    ("read the deployments", "SELECT * FROM payops.deployments"),
    ("take the deploy lock", "INSERT INTO payops.deploy_locks (environment, run_id) VALUES ('production', 'x')"),
    ("read the installed versions", "SELECT * FROM payops.schema_versions"),
]


@pytest.mark.parametrize("role", ["anon", "authenticated", "PUBLIC"])
def test_the_payops_schema_is_closed_to_the_public_roles(second, role):
    if role == "PUBLIC":  # a role with no grants of its own: only what PUBLIC has
        query(second.dsn(), "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'visitor') THEN "
                            "CREATE ROLE visitor LOGIN PASSWORD 'visitor'; END IF; END $$")
        dsn = second.dsn(user="visitor", password="visitor")
    else:
        dsn = second.dsn(user="authenticator", password=APP_PASSWORD, role=role)
    allowed = []
    for what, sql in PRIVATE:
        try:
            query(dsn, sql)
        except psycopg.errors.InsufficientPrivilege:
            continue
        allowed.append(what)
    assert allowed == [], f"{role} could {', '.join(allowed)}"


def test_the_apps_server_role_gets_what_the_contract_gives_it_and_no_more(second):
    dsn = second.dsn(user="authenticator", password=APP_PASSWORD, role="service_role")
    assert len(query(dsn, "SELECT name, enabled FROM payops.switches")) == 3
    assert query(dsn, "SELECT payops.apply_gateway_result('PL-none', 'SUCCESS', 'SKILL-none', '{}'::jsonb,"
                      " 'webhook')") == [("unmatched",)]
    for sql in ("UPDATE payops.switches SET enabled = true", "SELECT * FROM payops.webhook_receipts",
                "INSERT INTO payops.webhook_receipts (paylink_id, status, source) VALUES ('x', 'SUCCESS', 'webhook')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            query(dsn, sql)


# --- the procedures there ---------------------------------------------------------------------------------

def test_the_payment_stop_holds_in_that_database_and_money_that_moved_still_lands(second, sandbox):
    app = second.dsn(user="authenticator", password=APP_PASSWORD, role="service_role")
    before_stop = pending_payment(app)

    result, _folder = run(second, "payment:emergency-stop", "-e", "reason=second cluster drill")
    try:
        assert result.returncode == 0, result.stdout
        assert query(second.dsn(), "SELECT enabled, reason FROM payops.switches WHERE name = 'payments_stopped'") == [
            (True, "second cluster drill")]
        assert query(sandbox["postgres_dsn"], "SELECT enabled FROM payops.switches WHERE name = 'payments_stopped'") \
            == [(False,)], "the stop went to the sandbox's database, not the one given"
        # The database refuses a new pending payment, as the app's role inserts it.
        with pytest.raises(psycopg.Error) as refused:
            pending_payment(app)
        assert refused.value.sqlstate == "PS001" and "second cluster drill" in str(refused.value)
        # A payment made before the stop completes when its callback arrives.
        assert query(app, "SELECT payops.apply_gateway_result('PL-before-stop', 'SUCCESS', %s, '{}'::jsonb,"
                          " 'webhook')", (before_stop,)) == [("applied",)]
        assert query(second.dsn(), "SELECT status FROM public.payments WHERE transaction_reference = %s",
                     (before_stop,)) == [("completed",)]
    finally:
        recovered, _folder = run(second, "system:recover", "-e", "reason=second cluster drill over")
    assert recovered.returncode == 0, recovered.stdout
    assert query(second.dsn(), "SELECT count(*) FROM payops.switches WHERE enabled") == [(0,)]
    assert query(second.dsn(), "SELECT enabled, set_by IS NOT NULL FROM payops.switch_events ORDER BY id") == [
        (True, True), (False, True)]
    after = pending_payment(app)
    assert query(second.dsn(), "SELECT status FROM public.payments WHERE transaction_reference = %s",
                 (after,)) == [("pending",)]
    # The edge is the sandbox's: payments are taken again through it.
    assert requests.get(f"{sandbox['edge_url']}/api/health", timeout=5).json()["switches"]["payments_stopped"][
        "enabled"] is False


def test_a_deployment_records_itself_in_that_database(second, sandbox):
    release = requests.get(f"{sandbox['edge_url']}/api/health", timeout=5).json()["version"]
    result, _folder = run(second, "deploy:production", "-e", f"release={release}", "-e", "reason=second cluster")
    assert result.returncode == 0, result.stdout
    rows = query(second.dsn(), "SELECT release, kind, outcome, run_id FROM payops.deployments")
    assert [(r, k, o) for r, k, o, _run in rows] == [(release, "deploy", "deployed")], rows
    assert query(second.dsn(), "SELECT count(*) FROM payops.deploy_locks") == [(0,)]
    assert query(sandbox["postgres_dsn"], "SELECT count(*) FROM payops.deployments WHERE run_id = %s",
                 (rows[0][3],)) == [(0,)]


# --- the installer's refusals ---------------------------------------------------------------------------------

def copy_of_migrations(tmp_path: Path, **extra: str) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, folder)
    for name, text in extra.items():
        (folder / f"{name}.sql").write_text(text)
    return folder


INSTALL = {"table": "payops.schema_versions", "installs_table": True}


def test_an_edited_migration_is_refused_before_anything_runs(second, tmp_path):
    folder = copy_of_migrations(tmp_path, **{"9000_later": "CREATE TABLE payops.later (id int);"})
    edited = folder / "0002_payment_stop_guard.sql"
    edited.write_text(edited.read_text() + "\n-- an afterthought\n")
    before = query(second.dsn(), "SELECT name, applied_at FROM payops.schema_versions ORDER BY name")

    rc, result = module(second, path=str(folder), **INSTALL)
    assert rc != 0
    assert "changed after they were applied" in result["msg"] and "0002_payment_stop_guard.sql" in result["msg"]
    assert query(second.dsn(), "SELECT name, applied_at FROM payops.schema_versions ORDER BY name") == before
    assert query(second.dsn(), "SELECT to_regclass('payops.later')") == [(None,)]


def test_two_installs_at_once_apply_each_migration_once(second):
    db = second.betaskill_database("concurrent")
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _n: module(second, db=db, path=str(MIGRATIONS), **INSTALL), range(2)))
    assert [rc for rc, _result in outcomes] == [0, 0], outcomes
    assert sorted(name for _rc, result in outcomes for name in result["applied"]) == names()
    assert query(second.dsn(db), "SELECT name FROM payops.schema_versions ORDER BY name") == [(n,) for n in names()]


def test_a_migration_waiting_for_a_lock_gives_up_and_is_rolled_back(second, tmp_path):
    folder = copy_of_migrations(tmp_path, **{"9001_payments_note": "ALTER TABLE public.payments ADD COLUMN note text;"})
    with psycopg.connect(second.dsn()) as holder:  # a checkout's open transaction holds payments
        holder.execute("SELECT 1 FROM public.payments FOR UPDATE")
        rc, result = module(second, path=str(folder), lock_timeout="200ms", lock_retries=1, **INSTALL)
        holder.rollback()
    assert rc != 0
    assert "9001_payments_note.sql waited 200ms for a lock 2 times" in result["msg"], result["msg"]
    assert query(second.dsn(), "SELECT count(*) FROM information_schema.columns"
                               " WHERE table_name = 'payments' AND column_name = 'note'") == [(0,)]
    assert ("9001_payments_note.sql",) not in query(second.dsn(), "SELECT name FROM payops.schema_versions")


def test_a_migration_that_opens_the_schema_is_rolled_back_naming_the_grant(second, tmp_path):
    folder = copy_of_migrations(tmp_path, **{"9002_open": "GRANT SELECT ON payops.switches TO anon;"
                                                          " CREATE TABLE payops.opened (id int);"})
    rc, result = module(second, path=str(folder), **INSTALL)
    assert rc != 0
    assert "9002_open.sql was rolled back" in result["msg"]
    assert "SELECT on table payops.switches to anon" in result["msg"]
    assert query(second.dsn(), "SELECT to_regclass('payops.opened')") == [(None,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        query(second.dsn(user="authenticator", password=APP_PASSWORD, role="anon"), "SELECT * FROM payops.switches")
