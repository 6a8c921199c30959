"""The sandbox's planned payment history (src/payops/sandbox/traffic.py): local calendar days, the
daily rhythm, the incident day, slow evening hours, the payments at 23:59 and 00:01, and the
totals planted per local day."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from payops.sandbox import traffic

TZ = ZoneInfo("Africa/Johannesburg")
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)  # 12:00 in Johannesburg


def test_the_history_covers_the_last_local_days_and_ends_before_now():
    plan = traffic.plan_history(400, 5, random.Random(1), TZ, now=NOW)
    assert len(plan) == 400
    days = {created.astimezone(TZ).date() for created, _ in plan}
    assert days == {date(2026, 11, 29) + timedelta(days=n) for n in range(5)}
    assert all(created < settled <= NOW - timedelta(seconds=30) for created, settled in plan)


def test_payments_at_23_59_and_00_01_around_the_midnight_that_starts_yesterday():
    plan = traffic.plan_history(10, 5, random.Random(2), TZ, now=NOW)
    first, second = (created.astimezone(TZ) for created, _ in plan[:2])
    assert (first.date(), first.strftime("%H:%M")) == (date(2026, 12, 1), "23:59")
    assert (second.date(), second.strftime("%H:%M")) == (date(2026, 12, 2), "00:01")


def test_nights_are_quieter_than_days_and_evenings_are_slow():
    plan = traffic.plan_history(2000, 7, random.Random(3), TZ, now=NOW)
    hours = [created.astimezone(TZ).hour for created, _ in plan]
    assert sum(hour in range(1, 5) for hour in hours) * 4 < sum(hour in range(10, 14) for hour in hours)
    slow = [(settled - created).total_seconds() for created, settled in plan if created.astimezone(TZ).hour in (19, 20)]
    quick = [(settled - created).total_seconds() for created, settled in plan if created.astimezone(TZ).hour == 10]
    assert min(slow) >= 240 and max(quick) <= 120


def test_the_incident_day_fails_half_the_time_in_its_afternoon():
    incident = traffic.incident_day(5, TZ, now=NOW)
    assert incident == date(2026, 12, 1)
    afternoon = datetime(2026, 12, 1, 14, 30, tzinfo=TZ)
    assert traffic.outcome_failure_rate(afternoon, 0.02, incident, TZ) == 0.5
    assert traffic.outcome_failure_rate(afternoon + timedelta(days=1), 0.02, incident, TZ) == 0.02
    assert traffic.outcome_failure_rate(afternoon + timedelta(hours=3), 0.02, incident, TZ) == 0.02


def test_totals_are_planted_per_local_day():
    late = datetime(2026, 12, 1, 23, 59, 30, tzinfo=TZ)  # 21:59:30 UTC: still 1 December in Johannesburg
    made = [(late, traffic.Outcome("a", "completed", "completed"), 49900),
            (late + timedelta(seconds=90), traffic.Outcome("b", "failed", "failed"), 89900),
            (late + timedelta(hours=2), traffic.Outcome("c", "completed", "completed"), 29900),
            (late + timedelta(hours=3), traffic.Outcome("d", "completed", None), 29900)]
    totals = traffic.planted_totals(made, TZ)
    assert totals == {
        "2026-12-01": {"made": 1, "completed": 1, "failed": 0, "pending": 0, "completed_cents": {"ZAR": 49900}},
        "2026-12-02": {"made": 3, "completed": 1, "failed": 1, "pending": 1, "completed_cents": {"ZAR": 29900}},
    }
