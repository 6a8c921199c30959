"""Pure logic of the health checks: durations and window starts as operators write them,
percentiles as PostgreSQL's percentile_cont computes them, and the P0-P3 severity rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from ansible_collections.betaskill.payops.plugins.filter import health
from ansible_collections.betaskill.payops.plugins.module_utils import payops_monitoring as monitoring
from ansible_collections.betaskill.payops.plugins.module_utils import payops_time

SAST = timezone(timedelta(hours=2))
NOW = datetime(2024, 5, 2, 7, 30, tzinfo=SAST)


@pytest.mark.parametrize(("text", "seconds"), [
    ("45s", 45), ("90m", 5400), ("24h", 86400), ("7d", 604800), ("2w", 1209600), ("1h30m", 5400), (" 24H ", 86400),
])
def test_durations(text, seconds):
    assert payops_time.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "24", "h", "1.5h", "yesterday", "-1h", "0m", "24 h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="duration"):
        payops_time.parse_duration(text)


def test_the_default_window_starts_at_18_00_the_day_before():
    assert payops_time.parse_since("", NOW) == datetime(2024, 5, 1, 18, 0, tzinfo=SAST)
    assert payops_time.parse_since(None, NOW) == datetime(2024, 5, 1, 18, 0, tzinfo=SAST)


@pytest.mark.parametrize(("text", "expected"), [
    ("06:00", datetime(2024, 5, 2, 6, 0, tzinfo=SAST)),           # earlier today
    ("18:00", datetime(2024, 5, 1, 18, 0, tzinfo=SAST)),          # later than now: yesterday's
    ("yesterday 18:00", datetime(2024, 5, 1, 18, 0, tzinfo=SAST)),
    ("today 07:00", datetime(2024, 5, 2, 7, 0, tzinfo=SAST)),
    ("12h", datetime(2024, 5, 1, 19, 30, tzinfo=SAST)),
    ("2024-05-01T16:00:00Z", datetime(2024, 5, 1, 16, 0, tzinfo=UTC)),
    ("2024-05-01T20:00:00", datetime(2024, 5, 1, 20, 0, tzinfo=SAST)),  # no zone: local time
])
def test_window_starts(text, expected):
    assert payops_time.parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["the day before yesterday", "25:00", "2024-13-01", "soon", "2099-01-01T00:00:00Z"])
def test_window_starts_that_do_not_parse(text):
    with pytest.raises(ValueError, match="since="):
        payops_time.parse_since(text, NOW)


def test_a_since_that_does_not_parse_says_so_and_names_the_forms_that_do():
    # The message alerts:review-overnight (prometheus_alert_history, alertmanager_alert_info) fails with.
    with pytest.raises(ValueError) as refused:
        payops_time.parse_since("the day before yesterday", NOW)
    message = str(refused.value)
    assert message.startswith("since='the day before yesterday' does not parse: use ")
    assert message.endswith(payops_time.SINCE_FORMS)


def test_percentiles_interpolate_like_percentile_cont():
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert monitoring.percentile(values, 0.5) == pytest.approx(5.5)
    assert monitoring.percentile(values, 0.95) == pytest.approx(9.55)
    assert monitoring.percentile(values, 0) == 1 and monitoring.percentile(values, 1) == 10
    assert monitoring.percentile([3.0], 0.99) == 3.0
    assert monitoring.percentile([], 0.5) is None
    assert monitoring.percentile([10, 1, 5], 0.5) == 5  # unsorted input
    with pytest.raises(ValueError):
        monitoring.percentile(values, 95)


def test_api_times_with_nanoseconds_parse():
    moment = payops_time.parse_time("2024-05-01T21:04:00.123456789Z")
    assert moment == datetime(2024, 5, 1, 21, 4, 0, 123456, tzinfo=UTC)
    assert payops_time.parse_time("not a time") is None


HEALTHY = {"edge_state": "healthy", "app_state": "healthy", "database_state": "healthy", "ikhokha_verdict": "healthy",
           "success_rate": 0.99, "success_rate_min": 0.95, "security_critical": 0, "security_high": 0,
           "lockdown": False, "maintenance": False, "payments_stopped": False, "critical_alerts": []}


def test_everything_healthy_is_p3():
    assessment = health.severity(HEALTHY, [{"component": "app", "state": "healthy"}])
    assert assessment["level"] == "P3"
    assert "nothing above cosmetic" in assessment["reasons"][0]
    assert any("data loss" in item for item in assessment["not_measured"])


@pytest.mark.parametrize(("change", "level", "words"), [
    ({"database_state": "down"}, "P0", "system down: the database is down"),
    ({"edge_state": "down"}, "P0", "system down: the edge"),
    ({"security_critical": 2}, "P0", "security breach"),
    ({"lockdown": True}, "P0", "lockdown"),
    ({"ikhokha_verdict": "credentials_rejected"}, "P1", "payments cannot be created (iKhokha credentials rejected)"),
    ({"success_rate": 0.6}, "P1", "payment success rate 60.0 % is under 95 %"),
    ({"payments_stopped": True}, "P1", "payments are stopped"),
    ({"security_high": 3}, "P1", "security threat"),
    ({"critical_alerts": ["HighErrorRate"]}, "P1", "critical alert firing: HighErrorRate"),
    ({"ikhokha_verdict": "slow"}, "P2", "iKhokha answers slowly"),
])
def test_severity_rules(change, level, words):
    assessment = health.severity({**HEALTHY, **change})
    assert assessment["level"] == level
    assert any(words in reason for reason in assessment["reasons"]), assessment["reasons"]


def test_the_worst_finding_decides_and_the_others_are_kept():
    assessment = health.severity({**HEALTHY, "database_state": "down", "success_rate": 0.5},
                                 [{"component": "response time p95", "state": "degraded", "value": "7 s",
                                   "target": "< 5 s"}])
    assert assessment["level"] == "P0"
    assert any("success rate" in item for item in assessment["lower_findings"])
    assert any("response time p95" in item for item in assessment["lower_findings"])


def test_a_degraded_target_is_p2():
    rows = [{"component": "http error rate", "state": "degraded", "value": "3 %", "target": "< 1 %"}]
    assessment = health.severity(HEALTHY, rows)
    assert assessment["level"] == "P2" and "http error rate" in assessment["reasons"][0]


def test_missing_facts_are_said_not_guessed():
    assessment = health.severity({})
    assert assessment["level"] == "P3"
    assert {"the edge (nginx) state", "the database state", "the iKhokha gateway"} <= set(assessment["not_measured"])


def test_overall_and_order():
    rows = [{"component": "prometheus", "state": "healthy"}, {"component": "database", "state": "degraded"},
            {"component": "edge (nginx)", "state": "healthy"}]
    assert health.overall(rows) == "degraded"
    assert health.overall([*rows, {"component": "app", "state": "down"}]) == "down"
    assert [r["component"] for r in health.order_rows(rows)] == ["edge (nginx)", "database", "prometheus"]
