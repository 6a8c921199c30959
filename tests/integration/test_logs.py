"""Logs and evidence (issue 15) against the sandbox.

Structured logs: the edge's JSON access log (roles/edge, the same template the sandbox's nginx is
written from) logs the path without its query string and the request id it passes to the app; the
app logs one JSON line a request with that id, route, status, timings and the payment reference.

The logs:* procedures: one `payops run` per module-scoped fixture, asserted on from several sides -
a request followed by its id, a payment by its reference (checked against the database), masking,
a rotated .gz log, the cap and its "N more" line, an empty window, bad input.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import botocore.exceptions
import psycopg
import pytest
import requests
from conftest import ROOT, wait_until
from health_helpers import ARTEFACTS, run

pytestmark = pytest.mark.sandbox

COURSE_ID = "00000000-0000-4000-8000-000000000001"  # seeded by betaskill.sql
WEBHOOK = "/api/webhooks/ikhokha"


def json_lines(path: Path) -> list[dict]:
    lines = []
    for text in path.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue
    return lines


def checkout(sandbox, request_id: str | None = None) -> requests.Response:
    order = {"user_id": str(uuid.uuid4()), "course_id": COURSE_ID, "amount": 49900, "currency": "ZAR"}
    headers = {"X-Request-ID": request_id} if request_id else {}
    return requests.post(f"{sandbox['edge_url']}/api/checkout", json=order, headers=headers, timeout=30)


def sandbox_dir(sandbox) -> Path:
    return Path(sandbox["state_dir"])


def test_a_query_string_token_reaches_no_log(sandbox):
    token = "tok" + secrets.token_hex(12)
    response = requests.get(f"{sandbox['edge_url']}/api/health?token={token}&ref=x", timeout=10)
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    access = sandbox_dir(sandbox) / "edge" / "logs" / "access.log"
    line = wait_until(lambda: next((entry for entry in json_lines(access)
                                    if entry.get("request_id") == request_id), None),
                      what="the request in the access log")
    assert line["path"] == "/api/health" and line["status"] == 200
    leaked = [str(path) for path in sandbox_dir(sandbox).rglob("*.log")
              if token in path.read_text(errors="replace")]
    assert leaked == []


def test_a_checkout_is_followed_by_its_request_id_from_nginx_through_the_app_to_the_gateway(sandbox):
    request_id = "it-" + secrets.token_hex(8)
    response = checkout(sandbox, request_id)
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-ID"] == request_id
    reference = response.json()["transaction_reference"]
    root = sandbox_dir(sandbox)
    edge = wait_until(lambda: [entry for entry in json_lines(root / "edge" / "logs" / "access.log")
                               if entry.get("request_id") == request_id], what="the edge's line")
    app = wait_until(lambda: [entry for entry in json_lines(root / "app" / "app.log")
                              if entry.get("request_id") == request_id and entry.get("event") == "request"],
                     what="the app's line")
    gateway = [entry for entry in json_lines(root / "app" / "app.log")
               if entry.get("request_id") == request_id and entry.get("event") == "gateway_call"]
    assert len(edge) == 1 and len(app) == 1 and len(gateway) == 1
    assert edge[0]["path"] == "/api/checkout" and edge[0]["status"] == 201
    assert float(edge[0]["upstream_response_time"]) >= 0 and edge[0]["request_time"] >= 0
    assert app[0]["route"] == "/api/checkout" and app[0]["status"] == 201
    assert app[0]["payment_reference"] == reference
    assert app[0]["paylink_id"] == response.json()["paylink_id"]
    assert app[0]["db_ms"] > 0 and app[0]["gateway_ms"] > 0
    assert app[0]["duration_ms"] >= app[0]["db_ms"]
    assert gateway[0]["gateway_status"] == 200 and gateway[0]["payment_reference"] == reference


def test_an_unusable_incoming_request_id_is_replaced(sandbox):
    response = requests.get(f"{sandbox['edge_url']}/api/health", headers={"X-Request-ID": "bad id\"}"},
                            timeout=10)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] != 'bad id"}'
    assert len(response.headers["X-Request-ID"]) == 32  # nginx's $request_id


# --- the logs:* procedures: one run each, many assertions -------------------------------------------

def sign(secret: str, path: str, body: str) -> str:
    message = (path + body).replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'").replace("\0", "\\0")
    return hmac.new(secret.strip().encode(), message.encode(), hashlib.sha256).hexdigest()


def callback(sandbox, body: str, signature: str | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json", "ik-appid": sandbox["ikhokha_app_id"],
               "ik-sign": signature if signature is not None else sign(sandbox["ikhokha_app_secret"], WEBHOOK, body)}
    return requests.post(f"{sandbox['edge_url']}{WEBHOOK}", data=body.encode(), headers=headers, timeout=30)


@dataclass
class Traffic:
    marker: str
    request_id: str
    reference: str
    paylink_id: str
    payment_id: str
    callback_request_id: str
    rotated: Path
    rotated_lines: int


@pytest.fixture(scope="module")
def traffic(sandbox) -> Iterator[Traffic]:
    """A paid checkout, a forged callback, app lines holding a card number and secrets, and a rotated
    .gz app log from half an hour ago, all carrying one marker."""
    marker = "LOGTEST" + secrets.token_hex(6)
    request_id = "it-" + secrets.token_hex(8)
    response = checkout(sandbox, request_id)
    assert response.status_code == 201, response.text
    payment = response.json()
    body = json.dumps({"paylinkID": payment["paylink_id"], "status": "SUCCESS",
                       "externalTransactionID": payment["transaction_reference"], "responseCode": "00"},
                      separators=(",", ":"))
    paid = callback(sandbox, body)
    assert paid.status_code == 200, paid.text
    forged = callback(sandbox, json.dumps({"paylinkID": marker, "status": "SUCCESS"}), signature="0" * 64)
    assert forged.status_code == 401
    app_log = sandbox_dir(sandbox) / "app" / "app.log"
    now = datetime.now(UTC)
    with app_log.open("a") as handle:  # what a careless release could log
        for line in (
            {"level": "error", "logger": "app", "message": f"{marker} charge failed for card 4111 1111 1111 1111"},
            {"level": "warning", "logger": "app", "message": f"{marker} retrying",
             "authorization": "Bearer sk_live_0123456789abcdef", "client_secret": "hunter2hunter2",
             "email": "jane.doe@example.com"},
        ):
            handle.write(json.dumps({"time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"), **line})
                         + "\n")
    rotated = app_log.with_name("app.log.1.gz")
    assert not rotated.exists(), "a rotated app log the test did not write"
    then = now - timedelta(minutes=30)
    count = 30
    with gzip.open(rotated, "wt") as handle:
        for index in range(count):
            moment = then + timedelta(seconds=index)
            handle.write(json.dumps({"time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                                     "level": "info", "logger": "app", "message": f"{marker} rotated line {index}"})
                         + "\n")
    os.utime(rotated, (then.timestamp() + count, then.timestamp() + count))
    try:
        yield Traffic(marker, request_id, payment["transaction_reference"], payment["paylink_id"],
                      payment["payment_id"], paid.headers["X-Request-ID"], rotated, count)
    finally:
        rotated.unlink(missing_ok=True)


def lines_of(result) -> list[dict]:
    """Every line a logs:* run returned: <report>-lines.json beside its report."""
    folder = Path(ARTEFACTS.search(result.stdout).group(1))
    (found,) = folder.glob("*-lines.json")
    return json.loads(found.read_text())


@pytest.fixture(scope="module")
def by_request_id(traffic):
    return run("logs:application", f"request_id={traffic.request_id}")


def test_a_request_is_followed_from_the_edge_through_the_app_to_the_gateway_call(by_request_id, traffic):
    result, report = by_request_id
    assert result.returncode == 0, result.stdout
    lines = lines_of(result)
    assert {line["request_id"] for line in lines} == {traffic.request_id}
    by_source = {(line["host"], line["source"], line.get("event")) for line in lines}
    assert by_source == {("web-1", "edge-access", None), ("app-1", "app", "request"), ("app-1", "app", "gateway_call")}
    assert [line["epoch"] for line in lines] == sorted(line["epoch"] for line in lines)
    app = next(line for line in lines if line.get("event") == "request")
    assert app["payment_reference"] == traffic.reference and app["status"] == 201
    hosts = {row["component"]: row for row in report["rows"]}
    assert "clock" in hosts["web-1"]["detail"] and "clock" in hosts["app-1"]["detail"]
    assert traffic.request_id in result.stdout  # the lines are on the operator's screen


@pytest.fixture(scope="module")
def by_marker(traffic):
    return run("logs:application", f"grep={traffic.marker}", "since=2h", "limit=5")


def test_card_numbers_secrets_and_emails_in_app_lines_are_masked(by_marker):
    result, report = by_marker
    assert result.returncode == 0, result.stdout
    shown = result.stdout + json.dumps(report) + json.dumps(lines_of(result))
    for secret in ("4111 1111 1111 1111", "4111111111111111", "sk_live_0123456789abcdef", "hunter2hunter2",
                   "jane.doe@example.com"):
        assert secret not in shown
    texts = " ".join(line["text"] for line in lines_of(result))
    assert "411111******1111" in texts and "j***@example.com" in texts and "<redacted>" in texts
    assert report["details"]["masked"] == {"card": 1, "secret": 2, "email": 1}


def test_rotated_logs_are_searched_and_the_cap_is_honoured(by_marker, traffic):
    result, report = by_marker
    lines = lines_of(result)
    assert len(lines) == 5  # limit=5: the newest five of 32
    rotated = [line for line in lines if line["file"].endswith("app.log.1.gz")]
    assert [json.loads(line["text"])["message"] for line in rotated] == [
        f"{traffic.marker} rotated line {index}" for index in (27, 28, 29)]
    app = next(host for host in report["details"]["hosts"] if host["host"] == "app-1")
    assert app["matched"] == traffic.rotated_lines + 2 and app["omitted"] == traffic.rotated_lines + 2 - 5
    assert f"... {traffic.rotated_lines - 3} more lines on app-1 matched but are not shown" in result.stdout


@pytest.fixture(scope="module")
def payment_followed(traffic):
    return run("logs:payment-processing", f"payment_reference={traffic.reference}")


def test_a_payment_is_followed_by_its_reference(payment_followed, traffic, sandbox):
    result, report = payment_followed
    assert result.returncode == 0, result.stdout
    lines = lines_of(result)
    sources = [line["source"] for line in lines]
    assert {"payments", "payment_transactions", "webhook_receipts", "app", "edge-access"} <= set(sources)
    database = [line for line in lines if line["host"] == "db-1"]
    with psycopg.connect(sandbox["postgres_dsn"], autocommit=True) as conn:
        receipts = conn.execute("SELECT count(*) FROM payops.webhook_receipts WHERE paylink_id = %s",
                                (traffic.paylink_id,)).fetchone()[0]
        transactions = conn.execute("SELECT count(*) FROM public.payment_transactions WHERE payment_id = %s",
                                    (traffic.payment_id,)).fetchone()[0]
    assert sources.count("webhook_receipts") == receipts == 1
    assert sources.count("payment_transactions") == transactions >= 1
    assert any(traffic.payment_id in line["text"] and '"status":"completed"' in line["text"]
               for line in database if line["source"] == "payments")
    edge_ids = {line["request_id"] for line in lines if line["source"] == "edge-access"}
    assert edge_ids == {traffic.request_id, traffic.callback_request_id}
    assert [line["epoch"] for line in lines] == sorted(line["epoch"] for line in lines)
    payment = next(row for row in report["rows"] if row["component"] == "payment")
    assert payment["value"] == "completed" and traffic.reference in payment["detail"]


def test_a_payment_is_followed_by_its_paylink_id_alike(payment_followed, traffic):
    result, _ = run("logs:payment-processing", f"paylink_id={traffic.paylink_id}")
    assert result.returncode == 0, result.stdout
    by_reference = [(line["source"], line["text"]) for line in lines_of(payment_followed[0])]
    assert [(line["source"], line["text"]) for line in lines_of(result)] == by_reference


@pytest.fixture(scope="module")
def security(traffic):
    return run("logs:security", "since=15m")


def test_security_shows_signature_failures_refusals_and_recorded_events(security, traffic):
    result, report = security
    assert result.returncode == 0, result.stdout
    lines = lines_of(result)
    assert any(line["source"] == "app" and line.get("event") == "webhook_signature_invalid" for line in lines)
    assert any(line["source"] == "edge-access" and line.get("status") == 401 and line.get("path") == WEBHOOK
               for line in lines)
    events = [line for line in lines if line["source"] == "security_events"]
    assert any(traffic.marker in line["text"] and "webhook_signature_invalid" in line["text"] for line in events)
    # The paid checkout is no security event.
    assert not any(line.get("request_id") == traffic.request_id for line in lines)
    recorded = next(row for row in report["rows"] if row["component"] == "security events")
    assert int(recorded["value"].split()[0]) >= len(events) >= 1


@pytest.fixture(scope="module")
def system(traffic):
    return run("logs:system", "since=24h", "limit=20")


def test_system_logs_come_from_every_host(system):
    result, report = system
    assert result.returncode == 0, result.stdout
    hosts = {host["host"]: host for host in report["details"]["hosts"]}
    assert set(hosts) == {"web-1", "app-1", "db-1", "monitoring-1"}
    assert hosts["monitoring-1"]["matched"] > 0 and hosts["db-1"]["files"] == 1
    assert {line["source"] for line in lines_of(result) if line["host"] == "monitoring-1"} <= {"prometheus"}


def test_a_window_without_logs_says_so(traffic):
    result, report = run("logs:application", "since=2020-01-01T00:00:00Z", "until=2020-01-01T01:00:00Z")
    assert result.returncode == 0, result.stdout
    assert report["details"]["empty"] and lines_of(result) == []
    assert "no log lines in 2020-01-01T00:00:00Z to 2020-01-01T01:00:00Z on app-1, web-1" in result.stdout


def test_bad_input_is_refused_naming_each_variable(sandbox):
    result, _ = run("logs:application", "since=1h", "until=2h", "host=web-1,nowhere-9", "route=/api/nothing")
    assert result.returncode != 0
    assert "until='2h' is not after since='1h'" in result.stdout
    assert "host='nowhere-9' is neither a host nor a group of this inventory" in result.stdout
    assert "route='/api/nothing' is not a route of the app" in result.stdout
    assert "Search this host" not in result.stdout  # refused before any host was searched


# --- security:collect-evidence: one run, then the bucket, the pack and its verification ------------------

def s3(sandbox):
    return boto3.client("s3", endpoint_url=sandbox["s3_endpoint"], region_name=sandbox["s3_region"],
                        aws_access_key_id=sandbox["aws_access_key_id"],
                        aws_secret_access_key=sandbox["aws_secret_access_key"])


def evidence_module(sandbox, **args) -> tuple[int, dict]:
    """betaskill.payops.evidence_pack as an ad-hoc task (a real module process): (rc, result)."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": sandbox["aws_access_key_id"],
           "AWS_SECRET_ACCESS_KEY": sandbox["aws_secret_access_key"], "AWS_ENDPOINT_URL_S3": sandbox["s3_endpoint"],
           "AWS_REGION": sandbox["s3_region"], "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible")), "localhost", "-c", "local", "-i", "localhost,",
         "-e", f"ansible_python_interpreter={sys.executable}", "-m", "betaskill.payops.evidence_pack",
         "-a", json.dumps({"bucket": sandbox["s3_bucket"], **args})],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert "=>" in result.stdout, result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout.split("=>", 1)[1])


@pytest.fixture(scope="module")
def evidence(traffic, sandbox):
    result, report = run("security:collect-evidence", f"reason=INC-{traffic.marker}", "since=15m")
    assert result.returncode == 0, result.stdout
    details = report["details"]
    body = s3(sandbox).get_object(Bucket=sandbox["s3_bucket"], Key=details["key"], VersionId=details["version_id"])
    return details, body["Body"].read()


def pack_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {info.name: tar.extractfile(info).read() for info in tar.getmembers()}


def test_the_evidence_pack_holds_every_hosts_logs_records_config_and_release_masked(evidence, traffic, sandbox):
    details, data = evidence
    assert details["verified"] is True and details["problems"] == []
    assert hashlib.sha256(data).hexdigest() == details["sha256"]
    members = pack_members(data)
    for name in ("manifest.json", "custody.json", "logs/web-1.jsonl", "logs/app-1.jsonl", "logs/db-1.jsonl",
                 "logs/monitoring-1.jsonl", "logs/merged.txt", "database/security_events.json",
                 "database/switch_events.json", "database/audit_trail.json", "config/web-1/nginx.conf",
                 "config/app-1/config.json", "release/web-1.json", "release/app-1.json"):
        assert name in members, name
    manifest = json.loads(members["manifest.json"])
    assert manifest == details["manifest"]
    assert {entry["name"] for entry in manifest["files"]} == set(members) - {"manifest.json", "custody.json"}
    custody = json.loads(members["custody.json"])
    assert custody["reason"] == f"INC-{traffic.marker}" and custody["command"] == "security:collect-evidence"
    assert custody["collected_by"] and custody["collected_from"] and custody["collected_at"]
    assert custody["object_lock"]["mode"] == "COMPLIANCE"
    app_lines = members["logs/app-1.jsonl"].decode()
    assert f"{traffic.marker} charge failed for card 411111******1111" in app_lines
    assert traffic.marker in members["database/security_events.json"].decode()  # the forged callback
    assert json.loads(members["release/app-1.json"])["release"]
    everything = b"".join(members.values())
    for secret in ("4111 1111 1111 1111", "hunter2hunter2", "jane.doe@example.com", sandbox["ikhokha_app_secret"],
                   sandbox["app_db_password"], sandbox["postgres_password"]):
        assert secret.encode() not in everything, secret
    assert manifest["masking"]["masked_at_source"]["card"] >= 1 and "PCI DSS" in manifest["masking"]["policy"]["card"]


def test_the_audit_trail_keeps_no_copy_of_the_packs_contents(evidence, traffic):
    details, _ = evidence
    run_id = details["pack_id"]  # payops run's id
    trail = ROOT / ".payops" / "audit" / "audit.jsonl"
    if os.environ.get("PAYOPS_AUDIT_LOG"):
        trail = Path(os.environ["PAYOPS_AUDIT_LOG"])
    if os.environ.get("PAYOPS_AUDIT_DSN") or not trail.is_file():
        pytest.skip("the audit trail is not the checkout's file in this run")
    records = [line for line in trail.read_text().splitlines() if run_id in line]
    assert records, f"no audit record of {run_id}"
    assert not [line for line in records if f"{traffic.marker} rotated line" in line]
    assert max(len(line) for line in records) < 64 * 1024


def test_the_pack_is_under_object_lock_and_its_version_cannot_be_deleted(evidence, sandbox):
    details, _ = evidence
    client = s3(sandbox)
    for key in (details["key"], details["manifest_key"]):
        # HeadObject, not GetObjectRetention, whose moto answer is wrong.
        head = client.head_object(Bucket=sandbox["s3_bucket"], Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=360)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.delete_object(Bucket=sandbox["s3_bucket"], Key=details["key"], VersionId=details["version_id"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    kept = client.get_object(Bucket=sandbox["s3_bucket"], Key=details["key"], VersionId=details["version_id"])
    assert hashlib.sha256(kept["Body"].read()).hexdigest() == details["sha256"]


def test_a_pack_with_one_changed_byte_fails_verification_and_the_locked_version_still_verifies(evidence, sandbox):
    details, data = evidence
    members = pack_members(data)
    changed = bytearray(members["logs/app-1.jsonl"])
    changed[len(changed) // 2] ^= 0x01
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in {**members, "logs/app-1.jsonl": bytes(changed)}.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    # An "overwrite" is a new version on top: the locked one stays as it was.
    client = s3(sandbox)
    client.put_object(Bucket=sandbox["s3_bucket"], Key=details["key"], Body=gzip.compress(raw.getvalue()))
    rc, current = evidence_module(sandbox, action="verify", pack_id=details["pack_id"])
    assert rc == 0 and current["verified"] is False
    assert any(problem.startswith("logs/app-1.jsonl has SHA-256") for problem in current["problems"])
    assert any(problem.startswith("the pack's SHA-256 is") for problem in current["problems"])
    assert any("is not under Object Lock" in problem for problem in current["problems"])
    rc, locked = evidence_module(sandbox, action="verify", pack_id=details["pack_id"], version_id=details["version_id"])
    assert rc == 0 and locked["verified"] is True and locked["sha256"] == details["sha256"]
    # The module never writes a pack id twice.
    rc, again = evidence_module(sandbox, pack_id=details["pack_id"], files=[{"name": "a", "content": "b"}])
    assert rc != 0 and "exists already" in again["msg"]


def test_check_mode_writes_nothing(traffic, sandbox):
    result, report = run("security:collect-evidence", "reason=dry run", "since=5m", check=True)
    assert result.returncode == 0, result.stdout
    details = report["details"]
    assert details["check_mode"] is True and details["sha256"]
    listed = s3(sandbox).list_object_versions(Bucket=sandbox["s3_bucket"], Prefix=details["key"].rsplit("/", 1)[0])
    assert listed.get("Versions", []) == []
