"""Alerts: a firing alert is listed and acknowledged as an Alertmanager silence (visible in its
API, not created twice, expired on request); an unknown alert id is a clear error; alerts that
Prometheus fired are reviewed with their times. (A `since` that does not parse: a unit test of
parse_since, tests/unit/test_health_logic.py.)"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
import requests
from conftest import payops
from health_helpers import row, run, wait_for

pytestmark = pytest.mark.sandbox


def post_alert(alertmanager: str, name: str, resolved: bool = False) -> None:
    """Fire an alert for ten minutes, or resolve it (an end time now): a test leaves none firing,
    or the next module's "no new alert" checks would see it."""
    now = datetime.now(UTC)
    ends = now if resolved else now + timedelta(minutes=10)
    alert = {"labels": {"alertname": name, "severity": "critical", "source": "payops-tests"},
             "annotations": {"summary": "posted by the alerts test"},
             "startsAt": (now - timedelta(minutes=1)).isoformat(), "endsAt": ends.isoformat()}
    requests.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()


def silences_for(alertmanager: str, name: str) -> list[dict]:
    found = requests.get(f"{alertmanager}/api/v2/silences", timeout=5).json()
    return [s for s in found if s["status"]["state"] == "active"
            and any(m["name"] == "alertname" and m["value"] == name for m in s["matchers"])]


def test_a_firing_alert_is_acknowledged_as_a_silence(sandbox):
    alertmanager = sandbox["alertmanager_url"]
    name = f"PayopsTest{secrets.token_hex(3)}"
    post_alert(alertmanager, name)
    try:
        _acknowledge_and_take_back(alertmanager, name)
    finally:
        post_alert(alertmanager, name, resolved=True)


def _acknowledge_and_take_back(alertmanager: str, name: str) -> None:
    alerts = wait_for(f"{name} in Alertmanager", lambda: [
        a for a in requests.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
        if a["labels"]["alertname"] == name])
    fingerprint = alerts[0]["fingerprint"]

    result, report = run("alerts:acknowledge", f"alert_id={fingerprint}", "comment=looking into it",
                         "author=ops-test")
    assert result.returncode == 0, result.stdout
    silences = silences_for(alertmanager, name)
    assert len(silences) == 1
    assert silences[0]["createdBy"] == "ops-test" and silences[0]["comment"] == "looking into it"
    assert row(report, f"alert {name}")["value"].startswith("acknowledged")
    held = wait_for("the alert to be silenced", lambda: [
        a for a in requests.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
        if a["fingerprint"] == fingerprint and a["status"]["silencedBy"]])
    assert held[0]["status"]["silencedBy"] == [silences[0]["id"]]

    # Acknowledging again changes nothing: one silence, the same one.
    result, _ = run("alerts:acknowledge", f"alert_id={fingerprint}", "comment=looking into it", "author=ops-test")
    assert result.returncode == 0 and "already active" in result.stdout
    assert [s["id"] for s in silences_for(alertmanager, name)] == [silences[0]["id"]]

    result, _ = run("alerts:acknowledge", f"alert_id={fingerprint}", "author=ops-test", "state=absent")
    assert result.returncode == 0 and "expired 1 silence" in result.stdout
    assert silences_for(alertmanager, name) == []


def test_an_alert_id_that_does_not_exist_is_a_clear_error(sandbox):
    result, _ = run("alerts:acknowledge", "alert_id=NoSuchAlert0000")
    assert result.returncode != 0
    assert "no alert with fingerprint or alertname 'NoSuchAlert0000'" in result.stdout


def test_alerts_fired_since_a_time_are_reviewed(sandbox):
    prometheus = sandbox["prometheus_url"]
    payops("sandbox", "traffic", "--payments", "3", "--failure-rate", "1", "--workers", "3", timeout=120)
    wait_for("PaymentSuccessRateLow to fire in Prometheus", lambda: requests.get(
        f"{prometheus}/api/v1/query", params={"query": 'ALERTS{alertname="PaymentSuccessRateLow",alertstate="firing"}'},
        timeout=5).json()["data"]["result"], timeout=90, interval=1)
    result, report = run("alerts:review-overnight", "since=2h")
    assert result.returncode == 0, result.stdout
    fired = row(report, "alert PaymentSuccessRateLow")
    assert fired["state"] in ("degraded", "info") and "first" in fired["detail"]
    assert report["details"]["fired"] and row(report, "alerts fired")["value"][0] != "0"

