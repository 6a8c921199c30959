"""status:emergency (the incident screen) against the sandbox, in one run: a switch set in the
database with who and why, a checkout whose callback is overdue (webhook backlog), an alert firing
in Alertmanager. The screen shows each of them as the database and Alertmanager hold them, and the
components that answer as healthy. Everything planted is taken back before the module ends.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import requests
from health_helpers import row, run

pytestmark = pytest.mark.sandbox

ALERT = f"PayopsTestsScreen{uuid.uuid4().hex[:6]}"


def post_alert(alertmanager: str, resolved: bool = False) -> None:
    now = datetime.now(UTC)
    alert = {"labels": {"alertname": ALERT, "severity": "critical", "source": "payops-tests"},
             "annotations": {"summary": "posted by the status:emergency test"},
             "startsAt": (now - timedelta(minutes=1)).isoformat(),
             "endsAt": (now if resolved else now + timedelta(minutes=10)).isoformat()}
    requests.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def screen(sandbox):
    """Plant the incident, run the screen once, take the incident back."""
    dsn = sandbox["postgres_dsn"]
    reference = f"SKILL-TESTS-{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        course = conn.execute("SELECT id FROM public.courses LIMIT 1").fetchone()[0]
        conn.execute("UPDATE payops.switches SET enabled = true, reason = 'tests: gateway failing',"
                     " set_by = 'ops-screen-test', set_at = now() WHERE name = 'payments_stopped'")
        # Planted behind the switch's back (the database refuses a new pending payment while
        # payments are stopped): a checkout started twelve minutes ago whose callback never came.
        conn.execute("UPDATE payops.switches SET enabled = false WHERE name = 'payments_stopped'")
        conn.execute("INSERT INTO public.payments (user_id, course_id, amount, status, transaction_reference,"
                     " gateway_response, created_at, updated_at) VALUES (%s, %s, 49900, 'pending', %s,"
                     " '{\"paylinkID\": \"tests-screen\"}', now() - interval '12 minutes',"
                     " now() - interval '12 minutes')", (str(uuid.uuid4()), course, reference))
        conn.execute("UPDATE payops.switches SET enabled = true WHERE name = 'payments_stopped'")
        expected = conn.execute(
            "SELECT (SELECT count(*) FROM public.payments WHERE status = 'pending'),"
            " (SELECT count(*) FROM public.payments WHERE status = 'pending' AND gateway_response ? 'paylinkID'"
            "   AND created_at < now() - interval '5 minutes')").fetchone()
    post_alert(sandbox["alertmanager_url"])
    try:
        result, report = run("status:emergency")
    finally:
        post_alert(sandbox["alertmanager_url"], resolved=True)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM public.payments WHERE transaction_reference = %s", (reference,))
            conn.execute("UPDATE payops.switches SET enabled = false, reason = NULL, set_by = 'ops-screen-test',"
                         " set_at = now() WHERE name = 'payments_stopped'")
    return result, report, expected


def test_the_screen_shows_the_switch_with_who_and_why(screen):
    result, report, _expected = screen
    assert result.returncode == 0, result.stdout + result.stderr
    switch = row(report, "switch payments_stopped")
    assert switch["state"] == "on"
    assert switch["value"].startswith("by ops-screen-test at ")
    assert switch["detail"] == "reason: tests: gateway failing"
    assert row(report, "switch maintenance")["state"] == "off"
    assert "switch payments_stopped" in result.stdout and "tests: gateway failing" in result.stdout


def test_the_screen_counts_the_queue_as_the_database_holds_it(screen):
    _result, report, (pending, backlog) = screen
    assert backlog >= 1
    assert row(report, "pending payments")["value"] == str(pending)
    assert row(report, "webhook backlog")["value"].startswith(f"{backlog} waiting")
    assert row(report, "webhook backlog")["state"] == "degraded"


def test_the_screen_names_the_firing_alert_and_the_healthy_components(screen):
    _result, report, _expected = screen
    alertmanager = row(report, "alertmanager")
    assert ALERT in alertmanager["detail"].split(", ")
    assert alertmanager["state"] == "healthy"
    for component in ("edge (nginx)", "database", "prometheus"):
        assert row(report, component)["state"] == "healthy", row(report, component)
    # The app says itself that it is not taking payments.
    assert row(report, "app")["state"] == "degraded" and row(report, "app")["value"].startswith("degraded ")
    assert row(report, "edge (nginx)")["value"] == "HTTP 200"
