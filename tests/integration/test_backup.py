"""Backups and restores against the sandbox: real pg_dump, PostgreSQL, zstd and S3 over HTTP.

Every test writes under its own key prefix (-e backup_prefix=...), so tests never see each other's
backups, and restores go into payops_test_* databases that the tests drop.

One backup:database run (module fixture `base`) makes the backup the module judges: its manifest
and dump, its deep verification (`verified`) and its restore (`restored`), each run once. Tests
that need a backup to damage, cut after or prune get a copy of that real dump under their own
prefix and a new id (`copy_backup`, as a backup of another time would look), not a run of their own.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import boto3
import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def audit_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    path.touch()
    return path


@pytest.fixture(scope="module")
def s3(sandbox):
    return boto3.client("s3", endpoint_url=sandbox["s3_endpoint"], region_name=sandbox["s3_region"],
                        aws_access_key_id=sandbox["aws_access_key_id"],
                        aws_secret_access_key=sandbox["aws_secret_access_key"])


@pytest.fixture()
def prefix() -> str:
    return f"test-{secrets.token_hex(4)}"


def run(command: str, *extra: str, audit: Path, check_ok: bool = True, check_mode: bool = False):
    args = [sys.executable, "-m", "payops.cli", "run", command]
    for item in extra:
        args += ["-e", item]
    if check_mode:
        args.append("--check")
    result = subprocess.run(args, cwd=ROOT, env={**os.environ, "PAYOPS_AUDIT_LOG": str(audit)},
                            capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    if check_ok:
        assert result.returncode == 0, output
    assert "Traceback" not in output, output
    return result.returncode, output


def dsn(sandbox, database=None):
    return (f"host={sandbox['postgres_host']} port={sandbox['postgres_port']} user={sandbox['postgres_user']} "
            f"password={sandbox['postgres_password']} dbname={database or sandbox['postgres_db']}")


def table_checksums(sandbox, database=None, tables=None) -> dict[str, str]:
    """md5 of every table's rows in a stable order: equal checksums, identical data."""
    with psycopg.connect(dsn(sandbox, database), autocommit=True) as conn:
        if tables is None:
            tables = [f"{s}.{t}" for s, t in conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
                " AND table_schema IN ('public', 'auth', 'payops', 'storage') ORDER BY 1, 2").fetchall()]
        sums = {}
        for table in tables:
            schema, name = table.split(".")
            rows = "md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
            query = f'SELECT {rows} FROM "{schema}"."{name}" t'  # noqa: S608 - names from the catalog
            sums[table] = conn.execute(query).fetchone()[0]
    return sums


def drop_database(sandbox, name):
    with psycopg.connect(dsn(sandbox), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def keys(s3, bucket, prefix) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def backup(prefix, audit, *extra) -> str:
    _, output = run("backup:database", f"backup_prefix={prefix}", *extra, audit=audit)
    found = [word for word in output.split() if word.startswith("20") and "T" in word and "Z-" in word]
    assert found, output
    return found[0]


def newest_manifest(s3, bucket, prefix) -> dict:
    manifests = sorted(key for key in keys(s3, bucket, prefix) if key.endswith("/manifest.json"))
    return json.loads(s3.get_object(Bucket=bucket, Key=manifests[-1])["Body"].read())


@dataclass
class Base:
    prefix: str
    backup_id: str
    manifest: dict


@pytest.fixture(scope="module")
def base(sandbox, s3, audit_log) -> Base:
    """backup:database, once, after 500 rows of text that needs care went into the database."""
    prefix = f"test-base-{secrets.token_hex(4)}"
    with psycopg.connect(dsn(sandbox), autocommit=True) as conn:
        conn.execute("INSERT INTO public.security_events (event_type, severity, details)"
                     " SELECT 'backup-test', 'low', jsonb_build_object('n', g, 'text', repeat('é\u00fc', g % 7))"
                     " FROM generate_series(1, 500) g")
    backup_id = backup(prefix, audit_log)
    return Base(prefix, backup_id, newest_manifest(s3, sandbox["s3_bucket"], f"{prefix}/local/database/"))


@pytest.fixture(scope="module")
def verified(base, audit_log) -> str:
    """backup:verify-integrity deep=true of the base backup, once: its output."""
    _, output = run("backup:verify-integrity", f"backup_prefix={base.prefix}", "deep=true", "kinds=database",
                    audit=audit_log)
    return output


@pytest.fixture(scope="module")
def restored(sandbox, base, verified, audit_log):
    """recovery:database of the base backup into a payops_test_* database, once: (its name, the output).
    After `verified`: without a backup_id, recovery:database takes the newest verified backup."""
    target = f"payops_test_{secrets.token_hex(3)}"
    try:
        _, output = run("recovery:database", f"backup_prefix={base.prefix}", f"target_db={target}", audit=audit_log)
        yield target, output
    finally:
        drop_database(sandbox, target)


def test_a_backup_writes_its_manifest_and_an_encrypted_dump(sandbox, s3, base):
    manifest, bucket = base.manifest, sandbox["s3_bucket"]
    assert manifest["backup_id"] == base.backup_id
    assert manifest["database"]["row_counts"]["public.security_events"] >= 500
    assert not {"extensions", "realtime", "vault"} & set(manifest["database"]["schemas"])
    head = s3.head_object(Bucket=bucket, Key=f"{base.prefix}/local/database/{base.backup_id}/dump.zst")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentLength"] == manifest["objects"][0]["size"]


def test_deep_verification_passes_records_its_verdict_and_never_rewrites_the_manifest(sandbox, s3, base, verified):
    bucket = sandbox["s3_bucket"]
    assert "passed" in verified
    verification = [key for key in keys(s3, bucket, base.prefix) if "/verification-" in key]
    assert len(verification) == 1
    assert json.loads(s3.get_object(Bucket=bucket, Key=verification[0])["Body"].read())["result"] == "passed"
    # The manifest is never rewritten: one version only.
    versions = s3.list_object_versions(Bucket=bucket,
                                       Prefix=f"{base.prefix}/local/database/{base.backup_id}/manifest.json")
    assert len(versions["Versions"]) == 1


def test_a_restore_gives_identical_data(sandbox, base, restored):
    target, output = restored
    assert base.backup_id in output
    tables = sorted(base.manifest["database"]["row_counts"])
    assert table_checksums(sandbox, target, tables) == table_checksums(sandbox, None, tables)


def copy_of_base(s3, bucket, base: Base, prefix: str, days_back: float = 0, label: str = "copy") -> str:
    """The base backup's real dump and manifest under `prefix`, as a backup made days_back days ago."""
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days_back)
    new_id = moment.strftime("%Y%m%dT%H%M%SZ") + f"-{label}-{secrets.token_hex(3)}"
    copy_backup(s3, bucket, base.prefix, base.backup_id, new_id, days_back, target_prefix=prefix)
    return new_id


def test_one_changed_byte_fails_verification_and_the_restore_naming_the_object(sandbox, s3, base, prefix, audit_log):
    bucket = sandbox["s3_bucket"]
    backup_id = copy_of_base(s3, bucket, base, prefix)
    key = f"{prefix}/local/database/{backup_id}/dump.zst"
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))

    code, output = run("backup:verify-integrity", f"backup_prefix={prefix}", "kinds=database", audit=audit_log,
                       check_ok=False)
    assert code != 0
    assert key in output and "SHA-256" in output

    target = f"payops_test_{secrets.token_hex(3)}"
    code, output = run("recovery:database", f"backup_prefix={prefix}", f"target_db={target}",
                       f"backup_id={backup_id}", audit=audit_log, check_ok=False)
    assert code != 0
    assert "fails its checksum" in output and "was not touched" in output
    with psycopg.connect(dsn(sandbox), autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchone() is None


class CuttingProxy:
    """A TCP proxy in front of S3 that stops (closes every socket and its port) halfway through the
    first UploadPart request: the S3 endpoint goes away in the middle of a backup."""

    def __init__(self, port: int):
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.cut = threading.Event()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.cut.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self.pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, False), daemon=True).start()

    def pump(self, source, sink, inspect):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if inspect and b"partNumber=" in data.split(b"\r\n", 1)[0]:
                    sink.sendall(data[: len(data) // 2])
                    self.stop()
                    return
                sink.sendall(data)
        except OSError:
            pass

    def stop(self):
        self.cut.set()
        for sock in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.close()


def test_an_upload_cut_midway_leaves_no_manifest_and_the_previous_backup_newest(sandbox, s3, base, prefix, audit_log):
    previous = copy_of_base(s3, sandbox["s3_bucket"], base, prefix)
    proxy = CuttingProxy(int(sandbox["s3_endpoint"].rsplit(":", 1)[1]))
    try:
        code, output = run("backup:database", f"backup_prefix={prefix}",
                           f"payops_s3_endpoint=http://127.0.0.1:{proxy.port}", audit=audit_log, check_ok=False)
    finally:
        proxy.stop()
    assert code != 0
    assert "no manifest was written" in output
    bucket = sandbox["s3_bucket"]
    manifests = [key for key in keys(s3, bucket, prefix) if key.endswith("manifest.json")]
    assert manifests == [f"{prefix}/local/database/{previous}/manifest.json"]

    _, output = run("backup:verify-status", f"backup_prefix={prefix}", "kinds=database", audit=audit_log)
    assert previous in output and "1 unfinished uploads" in output
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads")
    run("backup:verify-status", f"backup_prefix={prefix}", "kinds=database", "cleanup=true",
        "cleanup_older_than_hours=0", audit=audit_log)
    assert not s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads")
    assert f"{prefix}/local/database/{previous}/manifest.json" in keys(s3, bucket, prefix)


def copy_backup(s3, bucket, prefix, backup_id, new_id, days_back, target_prefix=None):
    """A backup of days_back days ago: the real dump under a new id (under target_prefix, by default
    the same prefix), its manifest's times moved back."""
    source = f"{prefix}/local/database/{backup_id}/"
    target = f"{target_prefix or prefix}/local/database/{new_id}/"
    s3.copy_object(Bucket=bucket, Key=target + "dump.zst", CopySource={"Bucket": bucket, "Key": source + "dump.zst"})
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=source + "manifest.json")["Body"].read())
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days_back)
    manifest.update(backup_id=new_id, started_at=moment.isoformat(), finished_at=moment.isoformat())
    s3.put_object(Bucket=bucket, Key=target + "manifest.json", Body=json.dumps(manifest).encode())


def test_retention_never_removes_the_newest_verified_backup(sandbox, s3, base, prefix, audit_log):
    bucket = sandbox["s3_bucket"]
    today = copy_of_base(s3, bucket, base, prefix)
    now = datetime.datetime.now(datetime.UTC)
    old = {}
    for days in (1, 2, 8, 40):
        old[days] = (now - datetime.timedelta(days=days)).strftime("%Y%m%dT%H%M%SZ") + "-daily-0000" + f"{days:02d}"
        copy_backup(s3, bucket, prefix, today, old[days], days)
    run("backup:verify-integrity", f"backup_prefix={prefix}", f"backup_id={old[40]}", "kinds=database",
        audit=audit_log)
    keep = ("keep_daily=2", "keep_weekly=0", "keep_monthly=0", "kinds=database")
    _, output = run("backup:retention", f"backup_prefix={prefix}", *keep, audit=audit_log, check_mode=True)
    assert "would remove" in output and old[2] in output and old[8] in output
    assert any(old[2] in key for key in keys(s3, bucket, prefix))

    run("backup:retention", f"backup_prefix={prefix}", *keep, audit=audit_log)
    manifests = sorted(key.split("/")[-2] for key in keys(s3, bucket, prefix) if key.endswith("manifest.json"))
    # Kept: today and yesterday (daily), and the 40-day-old one, the newest whose verification passed.
    assert manifests == sorted([today, old[1], old[40]])


def test_restore_into_the_live_database_without_confirm_is_refused_and_changes_nothing(sandbox, base, audit_log):
    before = table_checksums(sandbox)
    code, output = run("recovery:database", f"backup_prefix={base.prefix}", f"target_db={sandbox['postgres_db']}",
                       audit=audit_log, check_ok=False)
    assert code != 0
    assert "confirm=local" in output
    assert table_checksums(sandbox) == before


def test_bad_input_gives_a_clear_error_and_deletes_nothing(sandbox, s3, prefix, audit_log):
    bucket = sandbox["s3_bucket"]
    code, output = run("recovery:database", f"backup_prefix={prefix}", "target_db=payops_test_never",
                       "backup_id=20200101T000000Z-nope-000000", audit=audit_log, check_ok=False)
    assert code != 0 and "does not exist" in output

    code, output = run("backup:database", f"backup_prefix={prefix}", "payops_s3_bucket=no-such-bucket",
                       audit=audit_log, check_ok=False)
    assert code != 0 and "bucket does not exist" in output

    code, output = run("backup:database", f"backup_prefix={prefix}", "payops_db_port=1", audit=audit_log,
                       check_ok=False)
    assert code != 0 and "cannot connect to the database" in output

    broken = f"{prefix}/local/database/20200101T000000Z-broken-000000/"
    s3.put_object(Bucket=bucket, Key=broken + "dump.zst", Body=b"x")
    s3.put_object(Bucket=bucket, Key=broken + "manifest.json", Body=b"{not json")
    code, output = run("backup:verify-integrity", f"backup_prefix={prefix}", "kinds=database", audit=audit_log,
                       check_ok=False)
    assert code != 0 and "does not parse" in output
    run("backup:retention", f"backup_prefix={prefix}", "kinds=database", "keep_daily=0", "keep_weekly=0",
        "keep_monthly=0", audit=audit_log)
    left = keys(s3, bucket, broken)
    assert broken + "dump.zst" in left and broken + "manifest.json" in left


def test_no_credential_in_the_audit_trail_or_the_run_artefacts(sandbox, base, audit_log):
    """Whatever ran before it in this module is in audit_log; the base backup at least."""
    text = audit_log.read_text()
    assert "backup:database" in text
    for secret in (sandbox["postgres_password"], sandbox["aws_secret_access_key"]):
        assert secret not in text
    runs = sorted((ROOT / ".payops" / "runs").glob("*backup*"))[-5:]
    for run_dir in runs:
        for path in run_dir.rglob("*"):
            if path.is_file():
                content = path.read_text(errors="replace")
                assert sandbox["postgres_password"] not in content, path
                assert sandbox["aws_secret_access_key"] not in content, path
