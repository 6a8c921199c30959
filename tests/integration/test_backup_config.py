"""Configuration and application backups and the system recoveries, against the sandbox.

Every payops run costs 10+ s on a loaded machine, so the tests share backups (one module-scoped
prefix) and each test checks several things at once.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import subprocess
import tarfile
import urllib.request
from pathlib import Path

import boto3
import pytest
from test_backup import run  # the same `payops run` helper, audit trail and all

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


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"test-config-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def backups(sandbox, audit_log, prefix):
    """One configuration and one application backup of the sandbox, shared by the tests."""
    run("backup:configuration", f"backup_prefix={prefix}", audit=audit_log)
    run("backup:application", f"backup_prefix={prefix}", audit=audit_log)
    return prefix


def newest_object(s3, sandbox, prefix, kind):
    listed = s3.list_objects_v2(Bucket=sandbox["s3_bucket"], Prefix=f"{prefix}/local/{kind}/")["Contents"]
    keys = sorted(item["Key"] for item in listed)
    manifest = json.loads(s3.get_object(Bucket=sandbox["s3_bucket"],
                                        Key=[k for k in keys if k.endswith("/manifest.json")][-1])["Body"].read())
    data = s3.get_object(Bucket=sandbox["s3_bucket"], Key=[k for k in keys if k.endswith(".tar.zst")][-1])
    return manifest, data["Body"].read()


def edge_paths(sandbox) -> tuple[Path, Path]:
    """nginx's configuration folder, and the frontend release it serves (web-1's `current`)."""
    state = Path(sandbox["state_dir"])
    return state / "edge" / "conf", state / "hosts" / "web-1" / "frontend" / "current"


def health(sandbox) -> int:
    with urllib.request.urlopen(sandbox["edge_url"] + "/api/health", timeout=10) as answer:  # noqa: S310
        return answer.status


def test_configuration_backup_holds_nginx_and_app_config_without_secrets(sandbox, s3, backups, audit_log):
    manifest, stored = newest_object(s3, sandbox, backups, "configuration")
    tar_bytes = subprocess.run(["zstd", "-d", "-c"], input=stored, capture_output=True, check=True).stdout
    for secret in (sandbox["postgres_password"], sandbox["ikhokha_app_secret"], sandbox["aws_secret_access_key"]):
        assert secret.encode() not in stored
        assert secret.encode() not in tar_bytes
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
        names = archive.getnames()
        app_config = [name for name in names if name.startswith("app-1/app_config/") and name.endswith("config.json")]
        assert "web-1/nginx/nginx.conf" in names, names
        assert "web-1/nginx/payops/security-headers.conf" in names, names
        assert app_config, names
        config = json.loads(archive.extractfile(app_config[0]).read())
        assert config["dsn"] == "<redacted>" and config["ikhokha_app_secret"] == "<redacted>"
        assert config["ikhokha_app_id"] == sandbox["ikhokha_app_id"]
        variables = json.loads(archive.extractfile("web-1/variables.json").read())
        assert "edge_config_dir" in variables and "payops_db_password" not in variables
        assert not any(name.startswith("payops_sandbox") for name in variables)
    # The manifest lists each host and file with its SHA-256.
    assert manifest["kind"] == "configuration"
    listed = {entry["name"]: entry for entry in manifest["hosts"]["web-1"]["files"]}
    assert len(listed["web-1/nginx/nginx.conf"]["sha256"]) == 64
    assert "payops_db_password" in manifest["hosts"]["app-1"]["variables_removed"]
    # Both kinds show up in the status (and no secret in the audit trail of these runs).
    _code, output = run("backup:verify-status", f"backup_prefix={backups}", audit=audit_log, check_ok=False)
    assert "configuration backup" in output and "application backup" in output, output
    audit = audit_log.read_text()
    assert sandbox["postgres_password"] not in audit and sandbox["ikhokha_app_secret"] not in audit


def test_recovery_without_confirm_is_refused_and_changes_nothing(sandbox, backups, audit_log):
    conf, _release = edge_paths(sandbox)
    headers = conf / "payops" / "security-headers.conf"
    before = headers.read_text()
    headers.write_text(before + "# changed by the test\n")
    try:
        code, output = run("recovery:configuration", f"backup_prefix={backups}", audit=audit_log, check_ok=False)
        assert code != 0 and "confirm" in output, output
        code, output = run("recovery:configuration", f"backup_prefix={backups}", "confirm=staging",
                           audit=audit_log, check_ok=False)
        assert code != 0 and "confirm=local" in output, output
        assert headers.read_text().endswith("# changed by the test\n")
    finally:
        headers.write_text(before)


def test_application_round_trip_through_recovery_system(sandbox, s3, backups, audit_log):
    conf, release = edge_paths(sandbox)
    page = release / "index.html"
    headers = conf / "payops" / "security-headers.conf"
    original_page, original_headers = page.read_bytes(), headers.read_text()
    release_before = release.resolve()
    # Both hosts run releases (`current` symlinks): the backup names the release each one runs.
    app_release = (Path(sandbox["state_dir"]) / "hosts" / "app-1" / "app" / "current").resolve()
    manifest, _stored = newest_object(s3, sandbox, backups, "application")
    assert manifest["hosts"]["web-1"]["sections"]["release"]["release_id"] == release_before.name
    assert manifest["hosts"]["app-1"]["sections"]["app_release"]["release_id"] == app_release.name
    page.write_text("<h1>broken by the test</h1>\n")
    headers.write_text(original_headers + "# drifted\n")
    try:
        # Check mode shows what would change and changes nothing.
        run("recovery:system", f"backup_prefix={backups}", "confirm=local", audit=audit_log, check_mode=True)
        assert page.read_text() == "<h1>broken by the test</h1>\n"
        run("recovery:system", f"backup_prefix={backups}", "confirm=local", audit=audit_log)
        assert page.read_bytes() == original_page
        assert headers.read_text() == original_headers
        # `current` is a symlink: the release went back into releases/<the same id>, switched in.
        assert release.is_symlink() and release.resolve() == release_before
        assert health(sandbox) == 200
    finally:
        page.write_bytes(original_page)
        headers.write_text(original_headers)


def test_recovery_verify_on_a_fresh_backup_is_healthy(sandbox, backups, audit_log):
    run("backup:database", f"backup_prefix={backups}", audit=audit_log)
    _code, output = run("recovery:verify", f"backup_prefix={backups}", audit=audit_log)
    artefacts = Path(re.search(r"run artefacts in (\S+)", output).group(1))
    report = json.loads(next(artefacts.rglob("recovery-verify.json")).read_text())
    states = {row["component"]: row["state"] for row in report["rows"]}
    assert states["edge /api/health"] == "healthy" and states["app: database reachable"] == "healthy", states
    data = [state for component, state in states.items() if component.startswith("data against")]
    assert data == ["healthy"], report
    tables = report["details"]["tables"]
    assert tables and all(table["state"] in ("same", "grown", "new", "volatile") for table in tables), tables
