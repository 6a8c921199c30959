"""`payops sandbox traffic`: payment history made through the platform's real paths.

Each payment is one customer's round trip: POST <edge>/api/checkout (nginx, the app, a paylink
from the iKhokha simulator), then the customer pays or fails on the simulator (its admin API),
then the simulator delivers the signed callback to the app through nginx, and we wait until the
payment row says so. Nothing is written to the database directly, with one exception: with
--days D the finished payments are spread over the last D days by back-dating their timestamps
(payments, enrollments, payment_transactions, payment_errors, audit_logs, webhook receipts),
because the platform cannot be made to take a payment in the past. That back-dating is the only
part that does not go through the real path.

The history (--days D) is planned first, in the platform's time zone: the last D calendar days
(today until now included), a daily rhythm (quiet nights, busy mornings and evenings), the given
failure rate, one incident day (the middle one, when D >= 3) whose 14:00-16:00 fail half the
time, slow evening hours (19:00-21:00: callbacks 4 to 10 minutes after the checkout) and a payment
at 23:59 and one at 00:01 around a midnight. The summary gives the totals planted per local day.
"""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

import requests

from payops.errors import PayopsError

# The courses betaskill.sql seeds (id, price in cents).
COURSES = (
    ("00000000-0000-4000-8000-000000000001", 49900),
    ("00000000-0000-4000-8000-000000000002", 89900),
    ("00000000-0000-4000-8000-000000000003", 29900),
)
CALLBACK_TIMEOUT = 30.0
DEFAULT_TIMEZONE = "Africa/Johannesburg"
# Relative weights of the hours of a day (local time): quiet nights, busy mornings and evenings.
RHYTHM = (1, 1, 1, 1, 1, 2, 3, 5, 7, 9, 10, 10, 9, 9, 8, 8, 8, 9, 10, 10, 8, 6, 4, 2)
INCIDENT_HOURS = range(14, 16)
INCIDENT_FAILURE_RATE = 0.5
SLOW_HOURS = range(19, 21)


@dataclass
class Outcome:
    payment_id: str | None
    wanted: str  # completed | failed
    status: str | None = None  # as recorded in the database
    error: str | None = None


def make_traffic(sandbox: Any, payments: int = 20, failure_rate: float = 0.02, days: int = 0,
                 workers: int = 4, seed: int | None = None, timezone: str = DEFAULT_TIMEZONE) -> dict[str, Any]:
    import psycopg

    status = sandbox.status()
    needed = ("postgres", "ikhokha", "app", "edge")
    down = [name for name in needed if status["services"][name]["state"] != "running"]
    if down:
        raise PayopsError(f"the sandbox is not running ({', '.join(down)}): run `payops sandbox up` first")
    rng = random.Random(seed)  # noqa: S311 - a made-up history, not a secret
    moments: list[tuple[datetime, datetime]] = []
    if days > 0:
        moments = plan_history(payments, days, rng, ZoneInfo(timezone))
        incident = incident_day(days, ZoneInfo(timezone))
        plan = ["failed" if rng.random() < outcome_failure_rate(created, failure_rate, incident, ZoneInfo(timezone))
                else "completed" for created, _settled in moments]
    else:
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

    planted: dict[str, dict[str, Any]] = {}
    if days > 0:
        made = [(o.payment_id, *moments[index]) for index, o in enumerate(outcomes) if o.payment_id]
        with psycopg.connect(status["postgres_dsn"]) as conn:
            backdate(conn, made)
        planted = planted_totals([(moments[index][0], o, orders[index][2]) for index, o in enumerate(outcomes)
                                  if o.payment_id], ZoneInfo(timezone))

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
        "timezone": timezone,
        "incident_day": incident_day(days, ZoneInfo(timezone)).isoformat() if days >= 3 else None,
        "per_day": planted,
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


def history_days(days: int, tz: ZoneInfo, now: datetime | None = None) -> list[date]:
    """The last `days` calendar days in tz, the oldest first; the last is today."""
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    return [today - timedelta(days=days - 1 - index) for index in range(days)]


def incident_day(days: int, tz: ZoneInfo, now: datetime | None = None) -> date:
    """The history's incident day: the middle one (with three days or more)."""
    return history_days(days, tz, now)[days // 2] if days >= 3 else date.min


def outcome_failure_rate(created: datetime, failure_rate: float, incident: date, tz: ZoneInfo) -> float:
    local = created.astimezone(tz)
    if local.date() == incident and local.hour in INCIDENT_HOURS:
        return max(failure_rate, INCIDENT_FAILURE_RATE)
    return failure_rate


def settle_delay(created: datetime, tz: ZoneInfo, rng: random.Random) -> timedelta:
    """Checkout to callback: seconds, or minutes in the slow evening hours."""
    if created.astimezone(tz).hour in SLOW_HOURS:
        return timedelta(seconds=rng.uniform(240, 600))
    return timedelta(seconds=rng.uniform(5, 120))


def plan_history(payments: int, days: int, rng: random.Random, tz: ZoneInfo,
                 now: datetime | None = None) -> list[tuple[datetime, datetime]]:
    """(created, settled) in UTC for each payment: over the last `days` local days with the daily
    rhythm, every callback at least 30 s before now; the first two at 23:59 and 00:01 around the
    midnight that starts yesterday (or today, with fewer than three days) when that fits."""
    now = now or datetime.now(UTC)
    calendar = history_days(days, tz, now)
    latest = now - timedelta(seconds=30)
    plan: list[tuple[datetime, datetime]] = []

    def add(created: datetime) -> bool:
        settled = created + settle_delay(created, tz, rng)
        if created < datetime.combine(calendar[0], clock(0), tzinfo=tz) or settled > latest:
            return False
        plan.append((created.astimezone(UTC), settled.astimezone(UTC)))
        return True

    midnight = datetime.combine(calendar[-2] if days >= 3 else calendar[-1], clock(0), tzinfo=tz)
    if days >= 2 and payments >= 2:
        add(midnight - timedelta(seconds=30))  # 23:59:30
        add(midnight + timedelta(seconds=60))  # 00:01:00
    attempts = 0
    while len(plan) < payments:
        attempts += 1
        if attempts > 100 * payments:
            # Just after midnight with one day: no time of today fits the rhythm; the last minutes do.
            created = latest - timedelta(seconds=rng.uniform(130, 600))
            plan.append((created.astimezone(UTC), (created + timedelta(seconds=rng.uniform(5, 120))).astimezone(UTC)))
            continue
        day = rng.choice(calendar)
        hour = rng.choices(range(24), weights=RHYTHM)[0]
        add(datetime.combine(day, clock(hour), tzinfo=tz) + timedelta(seconds=rng.uniform(0, 3599)))
    return plan


def planted_totals(made: list[tuple[datetime, Outcome, int]], tz: ZoneInfo) -> dict[str, dict[str, Any]]:
    """Per local day: payments made, completed, failed, pending and the completed amount by currency."""
    totals: dict[str, dict[str, Any]] = {}
    for created, outcome, amount in sorted(made, key=lambda item: item[0]):
        day = totals.setdefault(created.astimezone(tz).date().isoformat(),
                                {"made": 0, "completed": 0, "failed": 0, "pending": 0, "completed_cents": {"ZAR": 0}})
        day["made"] += 1
        status = outcome.status if outcome.status in ("completed", "failed") else "pending"
        day[status] += 1
        if status == "completed":
            day["completed_cents"]["ZAR"] += amount
    return dict(sorted(totals.items()))


def backdate(conn: Any, payments: list[tuple[str, datetime, datetime]]) -> None:
    """Move each payment and everything it caused to its planned moments (created, settled)."""
    with conn.transaction():
        for payment_id, created, settled in payments:
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
