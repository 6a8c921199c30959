"""The morning checklist against the sandbox: healthy verdicts on a healthy platform, a stopped
database named as down (and the run failing without a traceback), rejected iKhokha credentials, a
slow gateway as degraded, and injected payment failures pushing the success rate under 95 %.

Tests that break the platform restore it before they end (PostgreSQL is started again with
`payops sandbox up`; simulator faults are put back), so the session's other tests keep working.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest
import requests
from conftest import payops, sandbox_status
from health_helpers import now_iso, row, run, wait_for

pytestmark = pytest.mark.sandbox


def traffic(payments: int, failure_rate: float) -> None:
    payops("sandbox", "traffic", "--payments", str(payments), "--failure-rate", str(failure_rate),
           "--workers", "2", timeout=120)


def settle_leftover_payments(sandbox: dict) -> None:
    """Payments other tests of the session left waiting for a callback (dropped on purpose) make
    a backlog: fail them through the real path (the gateway settles, the callback lands), so this
    test starts from a healthy platform."""
    admin = sandbox["ikhokha_url"].split("/public-api")[0]
    requests.put(f"{admin}/_sim/faults", json={}, timeout=5).raise_for_status()
    with psycopg.connect(sandbox["postgres_dsn"], autocommit=True) as conn:
        pending = [row[0] for row in conn.execute(
            "SELECT gateway_response ->> 'paylinkID' FROM public.payments"
            " WHERE status = 'pending' AND gateway_response ? 'paylinkID'")]
        for paylink in pending:
            requests.post(f"{admin}/_sim/paylinks/{paylink}/fail", timeout=10)
        wait_for("leftover payments to be settled", lambda: conn.execute(
            "SELECT count(*) FROM public.payments WHERE status = 'pending' AND gateway_response ? 'paylinkID'"
        ).fetchone()[0] == 0, timeout=60)


def test_a_healthy_platform_gives_healthy_verdicts(sandbox):
    settle_leftover_payments(sandbox)
    since = now_iso()
    traffic(4, 0)
    result, report = run("health:check-all", f"since={since}")
    assert result.returncode == 0, result.stdout + result.stderr
    for component in ("edge (nginx)", "app", "database", "ikhokha gateway", "payment success rate",
                      "prometheus", "alertmanager", "webhook backlog"):
        assert row(report, component)["state"] == "healthy", row(report, component)
    assert row(report, "payment success rate")["value"].startswith("100.0 %")
    assert "HEALTHY" in report["title"] or "DEGRADED" in report["title"]
    # The table is on screen too, and every group's share was checked.
    assert "payment success rate" in result.stdout and "prometheus targets" in result.stdout
    # Alerts left firing by other tests may raise the severity, never a component of this list.
    assert not any(name in reason for reason in report["details"]["severity"]["reasons"]
                   for name in ("edge", "the app", "database", "iKhokha", "success rate"))


def test_a_stopped_database_is_named_as_down_and_fails_the_run(sandbox):
    from payops.sandbox.manager import postgres_bindir

    data = Path(sandbox["state_dir"]) / "postgres" / "data"
    pg_ctl = str(postgres_bindir() / "pg_ctl")
    subprocess.run(["runuser", "-u", "postgres", "--", pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                   check=True, capture_output=True)
    try:
        result, report = run("health:check-all")
        assert result.returncode != 0
        database = row(report, "database")
        assert database["state"] == "down" and "unreachable" in database["value"]
        assert "Down: " in result.stdout and "database" in result.stdout.split("Down: ", 1)[1].splitlines()[0]
        assert report["details"]["severity"]["level"] == "P0"
        assert any("database" in reason for reason in report["details"]["severity"]["reasons"])
    finally:
        payops("sandbox", "up", timeout=300)
    assert sandbox_status()["services"]["postgres"]["state"] == "running"


def test_a_wrong_ikhokha_secret_gives_credentials_rejected(sandbox):
    result, report = run("validate:payment-credentials", "payops_ikhokha_app_secret=not-the-secret")
    assert result.returncode != 0
    assert row(report, "ikhokha gateway")["value"].startswith("credentials rejected")
    assert row(report, "credentials")["state"] == "down"
    assert "not-the-secret" not in result.stdout


def test_simulator_latency_above_the_threshold_is_degraded(sandbox):
    admin = sandbox["ikhokha_admin_url"]
    original = requests.get(f"{admin}/faults", timeout=5).json()
    requests.put(f"{admin}/faults", json={**original, "latency_ms": 400}, timeout=5).raise_for_status()
    try:
        result, report = run("test:ikhokha-api-connectivity", "gateway_latency_max_ms=250")
    finally:
        requests.put(f"{admin}/faults", json=original, timeout=5).raise_for_status()
    assert result.returncode == 0, result.stdout
    gateway = row(report, "ikhokha gateway")
    assert gateway["state"] == "degraded" and gateway["value"].startswith("slow")
    assert report["details"]["latency_ms"] >= 400


def test_injected_payment_failures_push_the_success_rate_under_95_percent(sandbox):
    since = now_iso()
    traffic(2, 0)
    traffic(3, 1)
    result, report = run("payment:health-check", f"since={since}")
    assert result.returncode == 0, result.stdout
    counts = report["details"]["counts"]
    finished = counts["completed"] + counts["failed"]
    assert counts["failed"] >= 3
    rate = 100.0 * counts["completed"] / finished
    success = row(report, "payment success rate")
    assert success["state"] == "degraded"
    assert success["value"].startswith(f"{rate:.1f} %"), success
    assert any(reason["category"] == "payment_failed" for reason in report["details"]["failure_reasons"])


def test_a_window_that_does_not_parse_is_a_clear_error(sandbox):
    result, _ = run("payment:health-check", "window=yesterdayish")
    assert result.returncode != 0
    assert "does not parse" in result.stdout


def test_all_targets_named_in_the_runbook_are_in_one_table(sandbox):
    # Response time, error rate, success rate and security incidents: the runbook's Key Metrics.
    wait_for("the app's request metrics in Prometheus", lambda: requests.get(
        f"{sandbox['prometheus_url']}/api/v1/query", params={"query": "betaskill_http_requests_total"},
        timeout=5).json()["data"]["result"], timeout=30)
    _, report = run("emergency:assess-severity")
    components = {r["component"] for r in report["rows"]}
    assert {"response time p95", "http error rate", "payment success rate", "security incidents"} <= components
    assert row(report, "severity")["value"][:2] in ("P0", "P1", "P2", "P3")
    assert report["details"]["severity"]["reasons"]
