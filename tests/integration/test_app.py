"""The reference BetaSkill app in the sandbox: checkout, callbacks through nginx, switches, health.

Uses the session fixture `sandbox` (tests/conftest.py): the status dict of a running sandbox.
Callbacks that the test sends itself are signed with the test's own few lines of HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest
import requests
from conftest import wait_until

pytestmark = pytest.mark.sandbox

COURSE_ID = "00000000-0000-4000-8000-000000000001"  # seeded by betaskill.sql
WEBHOOK = "/api/webhooks/ikhokha"


def sign(secret: str, path: str, body: str) -> str:
    message = (path + body).replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'").replace("\0", "\\0")
    return hmac.new(secret.strip().encode(), message.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def db(sandbox):
    with psycopg.connect(sandbox["postgres_dsn"], autocommit=True) as conn:
        yield conn


def scalar(db, sql: str, *params):
    return db.execute(sql, params).fetchone()[0]


def sim_admin(sandbox) -> str:
    return sandbox["ikhokha_url"].replace("/public-api/v1/api", "/_sim")


def checkout(sandbox, user_id: str | None = None, **overrides) -> requests.Response:
    order = {"user_id": user_id or str(uuid.uuid4()), "course_id": COURSE_ID, "amount": 49900,
             "currency": "ZAR", "email": "learner@example.com", **overrides}
    return requests.post(f"{sandbox['edge_url']}/api/checkout", json=order, timeout=30)


def new_payment(sandbox) -> dict:
    response = checkout(sandbox)
    assert response.status_code == 201, response.text
    return response.json()


def callback(sandbox, body: str, *, signature: str | None = None, app_id: str | None = None,
             headers: dict | None = None) -> requests.Response:
    sent = {"Content-Type": "application/json",
            "ik-appid": app_id if app_id is not None else sandbox["ikhokha_app_id"],
            "ik-sign": signature if signature is not None else sign(sandbox["ikhokha_app_secret"], WEBHOOK, body)}
    sent.update(headers or {})
    return requests.post(f"{sandbox['edge_url']}{WEBHOOK}", data=body.encode(), headers=sent, timeout=30)


def callback_body(payment: dict, status: str = "SUCCESS") -> str:
    return json.dumps({"paylinkID": payment["paylink_id"], "status": status,
                       "externalTransactionID": payment["transaction_reference"],
                       "responseCode": "00" if status == "SUCCESS" else "01"}, separators=(",", ":"))


def payment_row(db, payment_id: str) -> dict:
    row = db.execute("SELECT status, gateway_response FROM public.payments WHERE id = %s",
                     (payment_id,)).fetchone()
    return {"status": row[0], "gateway_response": row[1]}


def enrollment(db, payment_id: str) -> tuple[str, str]:
    return db.execute("SELECT status, payment_status FROM public.enrollments WHERE payment_id = %s",
                      (payment_id,)).fetchone()


def receipts(db, paylink_id: str) -> int:
    return scalar(db, "SELECT count(*) FROM payops.webhook_receipts WHERE paylink_id = %s", paylink_id)


def transactions(db, payment_id: str) -> int:
    return scalar(db, "SELECT count(*) FROM public.payment_transactions WHERE payment_id = %s", payment_id)


@contextmanager
def switch_on(db, name: str, reason: str):
    db.execute("UPDATE payops.switches SET enabled = true, reason = %s, set_by = 'test_app', set_at = now()"
               " WHERE name = %s", (reason, name))
    try:
        yield
    finally:
        db.execute("UPDATE payops.switches SET enabled = false, reason = NULL, set_by = 'test_app',"
                   " set_at = now() WHERE name = %s", (name,))


# --- the happy path -------------------------------------------------------------------------------

def test_checkout_pay_and_callback_through_nginx_complete_the_payment(sandbox, db):
    payment = new_payment(sandbox)
    assert payment["transaction_reference"].startswith("SKILL-")
    row = payment_row(db, payment["payment_id"])
    assert row["status"] == "pending"
    assert row["gateway_response"]["paylinkID"] == payment["paylink_id"]
    assert enrollment(db, payment["payment_id"]) == ("pending", "pending")

    paid = requests.post(f"{sim_admin(sandbox)}/paylinks/{payment['paylink_id']}/pay", timeout=10).json()
    assert paid["callbackUrl"] == f"{sandbox['edge_url']}{WEBHOOK}"

    wait_until(lambda: payment_row(db, payment["payment_id"])["status"] == "completed")
    assert enrollment(db, payment["payment_id"]) == ("approved", "completed")
    assert receipts(db, payment["paylink_id"]) == 1
    assert transactions(db, payment["payment_id"]) == 1
    state = requests.get(f"{sim_admin(sandbox)}/paylinks/{payment['paylink_id']}", timeout=10).json()
    assert state["deliveries"][-1]["http_status"] == 200


def test_a_failed_payment_is_recorded(sandbox, db):
    payment = new_payment(sandbox)
    requests.post(f"{sim_admin(sandbox)}/paylinks/{payment['paylink_id']}/fail", timeout=10)
    wait_until(lambda: payment_row(db, payment["payment_id"])["status"] == "failed")
    assert enrollment(db, payment["payment_id"]) == ("pending", "failed")
    assert scalar(db, "SELECT count(*) FROM public.payment_errors WHERE payment_id = %s"
                      " AND error_category = 'payment_failed'", payment["payment_id"]) == 1


# --- bad, replayed and duplicate callbacks --------------------------------------------------------

@pytest.mark.parametrize("kind", ["missing signature", "wrong signature", "wrong app id", "signed by another key"])
def test_invalid_callbacks_are_rejected_and_change_nothing(sandbox, db, kind):
    payment = new_payment(sandbox)
    body = callback_body(payment)
    events_before = scalar(db, "SELECT count(*) FROM public.security_events"
                               " WHERE event_type = 'webhook_signature_invalid'")
    if kind == "missing signature":
        response = requests.post(f"{sandbox['edge_url']}{WEBHOOK}", data=body,
                                 headers={"Content-Type": "application/json"}, timeout=10)
    elif kind == "wrong signature":
        response = callback(sandbox, body, signature="0" * 64)
    elif kind == "wrong app id":
        response = callback(sandbox, body, app_id="not-our-app")
    else:
        response = callback(sandbox, body, signature=sign("another-secret", WEBHOOK, body))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert payment_row(db, payment["payment_id"])["status"] == "pending"
    assert receipts(db, payment["paylink_id"]) == 0
    assert transactions(db, payment["payment_id"]) == 0
    assert scalar(db, "SELECT count(*) FROM public.security_events"
                      " WHERE event_type = 'webhook_signature_invalid'") == events_before + 1


def test_a_tampered_body_is_rejected(sandbox, db):
    payment = new_payment(sandbox)
    signed_failure = sign(sandbox["ikhokha_app_secret"], WEBHOOK, callback_body(payment, "FAILURE"))
    response = callback(sandbox, callback_body(payment, "SUCCESS"), signature=signed_failure)
    assert response.status_code == 401
    assert payment_row(db, payment["payment_id"])["status"] == "pending"


def test_a_replayed_callback_is_absorbed(sandbox, db):
    payment = new_payment(sandbox)
    body = callback_body(payment)
    assert callback(sandbox, body).json() == {"result": "applied"}
    for _ in range(3):
        replay = callback(sandbox, body)
        assert replay.status_code == 200 and replay.json() == {"result": "duplicate"}
    assert payment_row(db, payment["payment_id"])["status"] == "completed"
    assert receipts(db, payment["paylink_id"]) == 1
    assert transactions(db, payment["payment_id"]) == 1


def test_a_completed_payment_never_goes_back(sandbox, db):
    payment = new_payment(sandbox)
    assert callback(sandbox, callback_body(payment, "SUCCESS")).json()["result"] == "applied"
    assert callback(sandbox, callback_body(payment, "FAILURE")).json()["result"] == "duplicate"
    assert payment_row(db, payment["payment_id"])["status"] == "completed"
    assert enrollment(db, payment["payment_id"]) == ("approved", "completed")


def test_the_reserialised_form_is_tolerated(sandbox, db):
    payment = new_payment(sandbox)
    compact = callback_body(payment)
    spaced = json.dumps(json.loads(compact))
    response = callback(sandbox, spaced, signature=sign(sandbox["ikhokha_app_secret"], WEBHOOK, compact))
    assert response.status_code == 200 and response.json() == {"result": "applied"}


def test_an_unmatched_callback_is_recorded_for_follow_up(sandbox, db):
    paylink_id = f"PL-unknown-{uuid.uuid4().hex}"
    body = json.dumps({"paylinkID": paylink_id, "status": "SUCCESS",
                       "externalTransactionID": "SKILL-0-unknown", "responseCode": "00"})
    assert callback(sandbox, body).json() == {"result": "unmatched"}
    assert callback(sandbox, body).json() == {"result": "duplicate"}
    assert scalar(db, "SELECT count(*) FROM payops.webhook_receipts WHERE paylink_id = %s"
                      " AND payment_id IS NULL", paylink_id) == 1
    assert scalar(db, "SELECT count(*) FROM public.payment_errors WHERE error_category = 'unmatched_callback'"
                      " AND details ->> 'paylinkID' = %s", paylink_id) == 1


def test_concurrent_identical_callbacks_count_once(sandbox, db):
    payment = new_payment(sandbox)
    body = callback_body(payment)
    with ThreadPoolExecutor(max_workers=64) as pool:
        responses = list(pool.map(lambda _: callback(sandbox, body), range(300)))
    assert {r.status_code for r in responses} == {200}
    results = [r.json()["result"] for r in responses]
    assert results.count("applied") == 1 and results.count("duplicate") == 299
    assert receipts(db, payment["paylink_id"]) == 1
    assert transactions(db, payment["payment_id"]) == 1
    assert enrollment(db, payment["payment_id"]) == ("approved", "completed")


def test_a_burst_of_gateway_callbacks_is_applied_exactly_once_each(sandbox, db):
    with ThreadPoolExecutor(max_workers=16) as pool:
        payments = [r.json() for r in pool.map(lambda _: checkout(sandbox), range(200))]
    admin = sim_admin(sandbox)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(lambda p: requests.post(f"{admin}/paylinks/{p['paylink_id']}/pay", timeout=30), payments))
    ids = [p["payment_id"] for p in payments]

    def all_completed() -> bool:
        return scalar(db, "SELECT count(*) FROM public.payments WHERE id = ANY(%s::uuid[])"
                          " AND status = 'completed'", ids) == len(ids)

    wait_until(all_completed, timeout=60)
    elapsed = time.monotonic() - started
    print(f"\n{len(ids)} gateway callbacks through nginx applied in {elapsed:.2f} s "
          f"({len(ids) / elapsed:.0f}/s)")
    assert scalar(db, "SELECT count(*) FROM public.payment_transactions WHERE payment_id = ANY(%s::uuid[])",
                  ids) == len(ids)
    assert scalar(db, "SELECT count(*) FROM public.enrollments WHERE payment_id = ANY(%s::uuid[])"
                      " AND status = 'approved'", ids) == len(ids)


# --- switches, validation, health ------------------------------------------------------------------

def test_payments_stopped_refuses_checkouts_but_not_callbacks(sandbox, db):
    pending = new_payment(sandbox)
    user_id = str(uuid.uuid4())
    with switch_on(db, "payments_stopped", "test: gateway incident"):
        response = checkout(sandbox, user_id=user_id)
        assert response.status_code == 503
        answer = response.json()
        assert answer["error"] == "payments_stopped"
        assert "temporarily stopped" in answer["message"]
        assert scalar(db, "SELECT count(*) FROM public.payments WHERE user_id = %s", user_id) == 0
        assert scalar(db, "SELECT count(*) FROM public.enrollments WHERE user_id = %s", user_id) == 0

        health = requests.get(f"{sandbox['edge_url']}/api/health", timeout=10).json()
        assert health["switches"]["payments_stopped"]["enabled"] is True
        assert health["switches"]["payments_stopped"]["reason"] == "test: gateway incident"
        assert health["status"] == "degraded"

        # Money that moved is never lost to a switch.
        assert callback(sandbox, callback_body(pending)).json() == {"result": "applied"}
    assert checkout(sandbox, user_id=user_id).status_code == 201


@pytest.mark.parametrize(("override", "field"), [
    ({"user_id": "not-a-uuid"}, "user_id"),
    ({"course_id": None}, "course_id"),
    ({"amount": "499.00"}, "amount"),
    ({"amount": -5}, "amount"),
    ({"currency": "USD"}, "currency"),
    ({"course_id": str(uuid.UUID(int=7))}, "course_id"),
])
def test_invalid_checkouts_name_the_field(sandbox, db, override, field):
    user_id = str(uuid.uuid4())
    response = checkout(sandbox, user_id=override.pop("user_id", user_id), **override)
    assert response.status_code == 400
    assert field in response.json()["message"]
    assert scalar(db, "SELECT count(*) FROM public.payments WHERE user_id::text = %s", user_id) == 0


def test_health_reports_database_and_switches(sandbox):
    health = requests.get(f"{sandbox['edge_url']}/api/health", timeout=10)
    assert health.status_code == 200
    body = health.json()
    assert body["database"]["reachable"] is True
    assert set(body["switches"]) == {"payments_stopped", "maintenance", "lockdown"}
    assert body["maintenance"] is False
    assert body["version"] and body["environment"]


def test_metrics_expose_the_alerting_names(sandbox):
    text = requests.get(f"{sandbox['app_url']}/metrics", timeout=10).text
    for name in ("betaskill_http_requests_total", "betaskill_http_request_duration_seconds_bucket",
                 "betaskill_payments{", "betaskill_webhook_backlog", "betaskill_switch_enabled{",
                 "betaskill_database_up 1.0"):
        assert name in text
