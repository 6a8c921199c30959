"""`payops sandbox traffic`: payment history made through the platform's real paths.

Each payment is one customer's round trip: POST <edge>/api/checkout (nginx, the app, a paylink
from the iKhokha simulator), then the customer pays or fails on the simulator (its admin API),
then the simulator delivers the signed callback to the app through nginx, and we wait until the
payment row says so. Nothing is written to the database directly, with one exception: with
--days D the finished payments are spread over the last D days by back-dating their timestamps
(payments, enrollments, payment_transactions, payment_errors, audit_logs, webhook receipts),
because the platform cannot be made to take a payment in the past. That back-dating is the only
part that does not go through the real path.
"""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from payops.errors import PayopsError

# The courses betaskill.sql seeds (id, price in cents).
COURSES = (
    ("00000000-0000-4000-8000-000000000001", 49900),
    ("00000000-0000-4000-8000-000000000002", 89900),
    ("00000000-0000-4000-8000-000000000003", 29900),
)
CALLBACK_TIMEOUT = 30.0


@dataclass
class Outcome:
    payment_id: str | None
    wanted: str  # completed | failed
    status: str | None = None  # as recorded in the database
    error: str | None = None


def make_traffic(sandbox: Any, payments: int = 20, failure_rate: float = 0.02, days: int = 0,
                 workers: int = 4, seed: int | None = None) -> dict[str, Any]:
    import psycopg

    status = sandbox.status()
    needed = ("postgres", "ikhokha", "app", "edge")
    down = [name for name in needed if status["services"][name]["state"] != "running"]
    if down:
        raise PayopsError(f"the sandbox is not running ({', '.join(down)}): run `payops sandbox up` first")
    rng = random.Random(seed)  # noqa: S311 - a made-up history, not a secret
    plan = ["failed" if rng.random() < failure_rate else "completed" for _ in range(payments)]
    users = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(max(1, payments // 3))]
    orders = [(rng.choice(users), *rng.choice(COURSES)) for _ in range(payments)]
    admin = status["ikhokha_admin_url"]
    edge = status["edge_url"]
    began = time.monotonic()

    def one(index: int) -> Outcome:
        wanted = plan[index]
        user_id, course_id, amount = orders[index]
        session = requests.Session()
        try:
            response = session.post(f"{edge}/api/checkout", timeout=30, json={
                "user_id": user_id, "course_id": course_id, "amount": amount, "currency": "ZAR"})
            if response.status_code != 201:
                return Outcome(None, wanted, error=f"checkout answered {response.status_code}: "
                                                   f"{response.text[:200]}")
            created = response.json()
            action = "pay" if wanted == "completed" else "fail"
            response = session.post(f"{admin}/paylinks/{created['paylink_id']}/{action}", timeout=30)
            if response.status_code != 200:
                return Outcome(created["payment_id"], wanted,
                               error=f"simulator {action} answered {response.status_code}")
            recorded = wait_for_result(status["postgres_dsn"], created["payment_id"])
            outcome = Outcome(created["payment_id"], wanted, recorded)
            if recorded != wanted:
                outcome.error = f"payment {created['payment_id']} is {recorded}, expected {wanted}"
            return outcome
        except requests.RequestException as exc:
            return Outcome(None, wanted, error=f"{type(exc).__name__}: {exc}")
        finally:
            session.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(one, range(payments)))

    if days > 0:
        made = [o.payment_id for o in outcomes if o.payment_id]
        with psycopg.connect(status["postgres_dsn"]) as conn:
            backdate(conn, made, days, rng)

    errors = [o.error for o in outcomes if o.error]
    return {
        "made": sum(1 for o in outcomes if o.payment_id),
        "completed": sum(1 for o in outcomes if o.status == "completed"),
        "failed": sum(1 for o in outcomes if o.status == "failed"),
        "pending": sum(1 for o in outcomes if o.payment_id and o.status in (None, "pending")),
        "errors": len(errors),
        "error_samples": errors[:5],
        "days": days,
        "elapsed_seconds": round(time.monotonic() - began, 2),
        "payment_ids": [o.payment_id for o in outcomes if o.payment_id],
    }


def wait_for_result(dsn: str, payment_id: str, timeout: float = CALLBACK_TIMEOUT) -> str | None:
    """Poll the payment row until the gateway's callback has been applied (or the timeout)."""
    import psycopg

    deadline = time.monotonic() + timeout
    delay = 0.05
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT status FROM public.payments WHERE id = %s", (payment_id,)).fetchone()
            status = row[0] if row else None
            if status not in (None, "pending") or time.monotonic() >= deadline:
                return status
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)


def backdate(conn: Any, payment_ids: list[str], days: int, rng: random.Random) -> None:
    """Move each payment and everything it caused to a random moment in the last `days` days."""
    now = datetime.now(UTC)
    with conn.transaction():
        for payment_id in payment_ids:
            created = now - timedelta(seconds=rng.uniform(60, days * 86400))
            settled = created + timedelta(seconds=rng.uniform(5, 120))
            conn.execute("UPDATE public.payments SET created_at = %s, updated_at = %s WHERE id = %s",
                         (created, settled, payment_id))
            conn.execute("UPDATE public.enrollments SET created_at = %s, updated_at = %s WHERE payment_id = %s",
                         (created, settled, payment_id))
            conn.execute("UPDATE public.payment_transactions SET created_at = %s WHERE payment_id = %s",
                         (settled, payment_id))
            conn.execute("UPDATE public.payment_errors SET created_at = %s WHERE payment_id = %s",
                         (settled, payment_id))
            conn.execute("UPDATE payops.webhook_receipts SET received_at = %s WHERE payment_id = %s",
                         (settled, payment_id))
            conn.execute("UPDATE public.audit_logs SET created_at = %s"
                         " WHERE table_name = 'payments' AND record_id = %s",
                         (created, payment_id))
