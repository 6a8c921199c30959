"""payment:reconcile against the sandbox: three mismatches planted on today's payments through
the real paths (checkouts at the edge, settled at the iKhokha simulator with callbacks dropped) -
a lost callback, a payment completed here that the gateway failed, and a changed amount. A --check
run settles nothing; the real run settles only the lost callback, exactly as system:recover does
(a receipt with source reconcile, the enrollment approved), and reports the other two unchanged;
its page passes the browser check. A day in the future is refused naming day."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import boto3
import psycopg
import pytest
import requests
from browser_check import assert_self_contained, open_page
from conftest import payops
from health_helpers import ARTEFACTS, run

pytestmark = pytest.mark.sandbox

COURSE = "00000000-0000-4000-8000-000000000001"


def checkout(sandbox: dict) -> dict:
    response = requests.post(f"{sandbox['edge_url']}/api/checkout", timeout=30, json={
        "user_id": str(uuid.uuid4()), "course_id": COURSE, "amount": 49900, "currency": "ZAR"})
    assert response.status_code == 201, response.text
    return response.json()


def report_of(result) -> tuple[dict, Path]:
    folder = Path(ARTEFACTS.search(result.stdout).group(1))
    return json.loads((folder / "payment-reconcile.json").read_text()), folder


def finding(report: dict, reference: str) -> list[str]:
    return [item["kind"] for item in report["details"]["findings"] if item["reference"] == reference]


@pytest.fixture(scope="module")
def reconciled(sandbox):
    sim, dsn = sandbox["ikhokha_admin_url"], sandbox["postgres_dsn"]
    requests.put(f"{sim}/faults", json={"drop_callbacks": True}, timeout=10).raise_for_status()
    try:
        lost, not_paid, changed = (checkout(sandbox) for _ in range(3))
        for payment, outcome in ((lost, "pay"), (not_paid, "fail"), (changed, "pay")):
            requests.post(f"{sim}/paylinks/{payment['paylink_id']}/{outcome}", timeout=10).raise_for_status()
    finally:
        requests.put(f"{sim}/faults", json={}, timeout=10).raise_for_status()
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE public.payments SET status = 'completed' WHERE id = %s", (not_paid["payment_id"],))
        conn.execute("UPDATE public.payments SET status = 'completed', amount = amount + 100 WHERE id = %s",
                     (changed["payment_id"],))
    checked = payops("run", "payment:reconcile", "-e", "day=today", "-e", "min_age_seconds=0", "--check",
                     check=False, timeout=240)
    with psycopg.connect(dsn) as conn:
        after_check = conn.execute("SELECT status FROM public.payments WHERE id = %s",
                                   (lost["payment_id"],)).fetchone()[0]
    result, _ = run("payment:reconcile", "day=today", "min_age_seconds=0")
    assert result.returncode == 0, result.stdout + result.stderr
    report, folder = report_of(result)
    return SimpleNamespace(lost=lost, not_paid=not_paid, changed=changed, checked=checked,
                           after_check=after_check, result=result, report=report, folder=folder, dsn=dsn)


def test_check_mode_finds_the_lost_callback_and_settles_uploads_and_sends_nothing(reconciled, sandbox):
    assert reconciled.checked.returncode == 0, reconciled.checked.stdout
    report, _ = report_of(reconciled.checked)
    assert finding(report, reconciled.lost["transaction_reference"]) == ["lost_callback"]
    assert reconciled.after_check == "pending"
    location = report["details"]["location"]
    assert location["uploaded"] is False
    s3 = boto3.client("s3", endpoint_url=sandbox["s3_endpoint"], region_name=sandbox["s3_region"],
                      aws_access_key_id=sandbox["aws_access_key_id"],
                      aws_secret_access_key=sandbox["aws_secret_access_key"])
    assert s3.list_objects_v2(Bucket=location["bucket"], Prefix=location["prefix"] + "/").get("KeyCount") == 0
    messages = requests.get(sandbox["notify_url"].rsplit("/", 1)[0] + "/messages", timeout=5).json()
    assert not any(location["prefix"] in json.dumps(message.get("body")) for message in messages)


def test_the_real_run_uploads_its_report_encrypted(reconciled, sandbox):
    location = reconciled.report["details"]["location"]
    s3 = boto3.client("s3", endpoint_url=sandbox["s3_endpoint"], region_name=sandbox["s3_region"],
                      aws_access_key_id=sandbox["aws_access_key_id"],
                      aws_secret_access_key=sandbox["aws_secret_access_key"])
    head = s3.head_object(Bucket=location["bucket"], Key=f"{location['prefix']}/payment-reconcile.html")
    assert head["ServerSideEncryption"] == "AES256" and head["ContentType"].startswith("text/html")


def test_the_lost_callback_is_settled_as_system_recover_does(reconciled):
    reference = reconciled.lost["transaction_reference"]
    assert finding(reconciled.report, reference) == ["lost_callback"]
    with psycopg.connect(reconciled.dsn) as conn:
        status = conn.execute("SELECT status FROM public.payments WHERE id = %s",
                              (reconciled.lost["payment_id"],)).fetchone()[0]
        sources = [row[0] for row in conn.execute(
            "SELECT source FROM payops.webhook_receipts WHERE payment_id = %s", (reconciled.lost["payment_id"],))]
        enrollment = conn.execute("SELECT status FROM public.enrollments WHERE payment_id = %s",
                                  (reconciled.lost["payment_id"],)).fetchone()[0]
    assert status == "completed" and sources == ["reconcile"] and enrollment == "approved"
    settled = {item["transaction_reference"]: item["result"] for item in reconciled.report["details"]["settled"]}
    assert settled == {reference: "applied"}


def test_the_other_mismatches_are_reported_and_left_alone(reconciled):
    assert finding(reconciled.report, reconciled.not_paid["transaction_reference"]) == ["completed_not_paid"]
    assert finding(reconciled.report, reconciled.changed["transaction_reference"]) == ["amount_mismatch"]
    with psycopg.connect(reconciled.dsn) as conn:
        rows = dict(conn.execute("SELECT id::text, status || ' ' || amount FROM public.payments WHERE id = ANY(%s)",
                                 ([reconciled.not_paid["payment_id"], reconciled.changed["payment_id"]],)).fetchall())
    assert rows == {reconciled.not_paid["payment_id"]: "completed 49900",
                    reconciled.changed["payment_id"]: "completed 50000"}
    kpis = {item["name"]: item for item in reconciled.report["kpis"]}
    assert kpis["completed here, not paid at the gateway"]["verdict"] == "missed"
    assert kpis["amount mismatches"]["value"] >= 1 and kpis["amount mismatches"]["verdict"] == "missed"
    people = next(table for table in reconciled.report["tables"] if table["title"] == "For a person")
    assert any(row[1] == reconciled.changed["transaction_reference"] and "50000 cents here" in row[5]
               for row in people["rows"])


def test_the_reconciliation_page_is_self_contained(reconciled, tmp_path):
    page = open_page(reconciled.folder / "payment-reconcile.html", screenshot=tmp_path / "reconcile.png")
    assert_self_contained(page)
