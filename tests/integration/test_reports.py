"""reports:daily-summary against the sandbox, on a planted history (`payops sandbox traffic --days 3`):
one run for yesterday (the history's incident day, with a payment at 00:01 and the one at 23:59
before it left out), whose JSON must equal what was there before plus what was planted, and the
test's own SQL and PromQL; whose HTML page the browser check opens (no request, no console error)
and whose numbers it reads back from the DOM; uploaded to the bucket's reports prefix and announced
on the sink; with no card number, e-mail address or secret in any of its three files. One run for a
day with nothing (no data, never 0), and a day in the future refused naming `day`."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import boto3
import psycopg
import pytest
import requests
from browser_check import READ_KPIS, assert_self_contained, open_page
from conftest import payops
from health_helpers import ARTEFACTS, run

pytestmark = pytest.mark.sandbox

TZ = ZoneInfo("Africa/Johannesburg")
# Ansible's to_uuid('payops-payment-flow'): test:payment-flow's customer, left out of the KPIs.
TEST_USER = str(uuid.uuid5(uuid.UUID("361E6D51-FAEC-444A-9079-341386DA8E2E"), "payops-payment-flow"))
COURSE = "00000000-0000-4000-8000-000000000001"
CARD, EMAIL = "4111 1111 1111 1111", "planted.customer@example.com"

OWN_SQL = """
WITH p AS (SELECT * FROM public.payments WHERE created_at >= %(start)s AND created_at < %(end)s
           AND user_id <> %(test_user)s)
SELECT (SELECT count(*) FROM p),
       (SELECT count(*) FROM p WHERE status = 'completed'),
       (SELECT count(*) FROM p WHERE status = 'failed'),
       (SELECT coalesce(sum(amount), 0) FROM p WHERE status = 'completed'),
       (SELECT coalesce(sum(t.amount), 0) FROM public.payment_transactions t
         JOIN public.payments x ON x.id = t.payment_id
         WHERE t.transaction_type = 'refund' AND t.status = 'completed' AND x.user_id <> %(test_user)s
           AND t.created_at >= %(start)s AND t.created_at < %(end)s),
       (SELECT count(*) FROM public.security_events WHERE severity IN ('high', 'critical')
           AND created_at >= %(start)s AND created_at < %(end)s),
       (SELECT count(*) FROM payops.switch_events WHERE set_at >= %(start)s AND set_at < %(end)s),
       (SELECT count(*) FROM public.payments WHERE user_id = %(test_user)s
           AND created_at >= %(start)s AND created_at < %(end)s)
"""
FIELDS = ("total", "completed", "failed", "completed_cents", "refunded_cents", "security_incidents",
          "switch_events", "test_payments")


def own_figures(dsn: str, day: date) -> dict[str, int]:
    start = datetime.combine(day, time(0), tzinfo=TZ)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(OWN_SQL, {"start": start, "end": start + timedelta(days=1),
                                     "test_user": TEST_USER}).fetchone()
    return dict(zip(FIELDS, (int(value) for value in row), strict=True))


def prometheus(sandbox: dict, query: str, at: str) -> float | None:
    answer = requests.get(f"{sandbox['prometheus_url']}/api/v1/query", params={"query": query, "time": at},
                          timeout=10).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def plant_extras(dsn: str, day: date) -> str:
    """On `day`, away from any last-24-hours window: a test-mode payment (left out), a refund of
    one planted payment, a high security event, and a switch change whose reason holds a card
    number and an e-mail address (scrubbed). Returns the refunded payment."""
    at = lambda hour, minute: datetime.combine(day, time(hour, minute), tzinfo=TZ)  # noqa: E731
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO public.payments (user_id, course_id, amount, status, transaction_reference,"
                     " created_at, updated_at) VALUES (%s, %s, 49900, 'completed', %s, %s, %s)",
                     (TEST_USER, COURSE, f"SKILL-TEST-{uuid.uuid4().hex[:12]}", at(0, 20), at(0, 21)))
        refunded = conn.execute(
            "SELECT id FROM public.payments WHERE status = 'completed' AND user_id <> %s AND created_at >= %s"
            " AND created_at < %s ORDER BY created_at DESC LIMIT 1", (TEST_USER, at(0, 0), at(23, 59))).fetchone()[0]
        conn.execute("INSERT INTO public.payment_transactions (payment_id, transaction_type, amount, currency, status,"
                     " created_at) VALUES (%s, 'refund', 10000, 'ZAR', 'completed', %s)", (refunded, at(0, 30)))
        conn.execute("INSERT INTO public.security_events (event_type, severity, details, created_at)"
                     " VALUES ('tests: planted intrusion', 'high', '{}', %s)", (at(0, 5),))
        conn.execute("INSERT INTO payops.switch_events (name, enabled, reason, set_by, set_at) VALUES"
                     " ('maintenance', false, %s, 'tests', %s)", (f"card {CARD} reported by {EMAIL}", at(0, 10)))
    return str(refunded)


@pytest.fixture(scope="module")
def summary(sandbox, tmp_path_factory):
    requests.delete(sandbox["notify_url"].rsplit("/", 1)[0] + "/messages", timeout=5)
    yesterday = datetime.now(TZ).date() - timedelta(days=1)
    before = own_figures(sandbox["postgres_dsn"], yesterday)
    traffic = json.loads(payops("sandbox", "traffic", "--payments", "40", "--days", "3", "--seed", "14",
                                "--failure-rate", "0.1", "--json", timeout=180).stdout)
    assert traffic["errors"] == 0, traffic["error_samples"]
    plant_extras(sandbox["postgres_dsn"], yesterday)
    result, _ = run("reports:daily-summary", "day=yesterday")
    assert result.returncode == 0, result.stdout + result.stderr
    folder = Path(ARTEFACTS.search(result.stdout).group(1))
    shots = tmp_path_factory.mktemp("daily-summary")
    page = open_page(folder / "daily-summary.html", screenshot=shots / "daily-summary.png", script=READ_KPIS)
    return SimpleNamespace(
        day=yesterday, before=before, traffic=traffic, planted=traffic["per_day"].get(yesterday.isoformat(), {}),
        after=own_figures(sandbox["postgres_dsn"], yesterday), result=result, folder=folder, page=page,
        report=json.loads((folder / "daily-summary.json").read_text()),
        html=(folder / "daily-summary.html").read_text(), markdown=(folder / "daily-summary.md").read_text())


def kpi(report: dict, name: str) -> dict:
    return next(item for item in report["kpis"] if item["name"] == name)


def test_the_report_is_the_day_in_johannesburg(summary):
    period = summary.report["period"]
    assert period["label"] == summary.day.isoformat() and period["timezone"] == "Africa/Johannesburg"
    assert period["local_start"] == f"{summary.day.isoformat()}T00:00:00+02:00" and period["complete"]
    # The history's incident day, with the 00:01 payment in it and the 23:59 one the day before.
    assert summary.traffic["incident_day"] == summary.day.isoformat()
    assert summary.traffic["per_day"][(summary.day - timedelta(days=1)).isoformat()]["made"] >= 1


def test_payments_equal_what_was_there_plus_what_was_planted_and_the_tests_own_sql(summary):
    report, before, planted, after = summary.report, summary.before, summary.planted, summary.after
    counts = report["details"]["counts"]
    assert counts["total"] == before["total"] + planted["made"] == after["total"]
    assert counts["completed"] == before["completed"] + planted["completed"] == after["completed"]
    assert counts["failed"] == before["failed"] + planted["failed"] == after["failed"]
    assert kpi(report, "payments")["value"] == after["total"]
    rate = round(100.0 * after["completed"] / (after["completed"] + after["failed"]), 2)
    assert kpi(report, "payment success rate")["value"] == rate
    assert kpi(report, "payment success rate")["verdict"] == ("met" if rate > 95 else "missed")
    # The test-mode payment is left out, and counted as such.
    assert report["details"]["test_payments"] == before["test_payments"] + 1 == after["test_payments"]


def test_revenue_is_completed_minus_refunded_in_cents(summary):
    before, planted, after = summary.before, summary.planted, summary.after
    assert after["completed_cents"] == before["completed_cents"] + planted["completed_cents"]["ZAR"]
    assert after["refunded_cents"] == before["refunded_cents"] + 10000
    revenue = after["completed_cents"] - after["refunded_cents"]
    assert summary.report["details"]["revenue_by_currency"] == {"ZAR": revenue}
    assert kpi(summary.report, "revenue ZAR")["value"] == revenue


def test_security_incidents_and_switch_changes_are_judged(summary):
    incidents = kpi(summary.report, "security incidents")
    assert incidents["value"] == summary.after["security_incidents"] >= 1 and incidents["verdict"] == "missed"
    assert kpi(summary.report, "switch changes")["value"] == summary.after["switch_events"] >= 1
    switches = next(table for table in summary.report["tables"] if table["title"] == "Switches changed")
    # The planted reason, masked by payops_mask: the card as its first six and last four, the e-mail
    # address as its first letter and domain.
    reasons = [row[4] for row in switches["rows"] if row[3] == "tests"]
    digits = CARD.replace(" ", "")
    masked = f"card {digits[:6]}{'*' * (len(digits) - 10)}{digits[-4:]} reported by {EMAIL[0]}***@{EMAIL.split('@')[1]}"
    assert masked in reasons, reasons


def test_api_figures_equal_the_tests_own_promql(summary, sandbox):
    period = summary.report["period"]
    seconds = int((datetime.fromisoformat(period["until"]) - datetime.fromisoformat(period["start"])).total_seconds())
    requests_total = prometheus(sandbox, f"sum(increase(betaskill_http_requests_total[{seconds}s]))", period["until"])
    error_rate = kpi(summary.report, "api error rate")
    if not requests_total:
        assert error_rate["value"] is None and error_rate["verdict"] == "no data"
    else:
        errors = prometheus(sandbox, f'sum(increase(betaskill_http_requests_total{{status=~"5.."}}[{seconds}s]))',
                            period["until"]) or 0.0
        assert error_rate["value"] == round(100.0 * errors / requests_total, 3)


def test_sources_that_do_not_exist_say_so(summary):
    item = kpi(summary.report, "open incidents")
    assert item["value"] is None and item["verdict"] == "no data" and item["detail"].startswith("not available:")


def test_the_gateway_reconciliation_is_in_the_summary(summary):
    item = kpi(summary.report, "gateway reconciliation")
    assert isinstance(item["value"], int) and "matched against iKhokha's history" in item["detail"]
    assert int(item["detail"].split(" payments matched")[0]) >= summary.planted["made"]


@pytest.fixture(scope="module")
def today(sandbox):
    """Today's summary: Prometheus has today's samples (requests, durations, the blackbox probe)."""
    requests.get(sandbox["edge_url"] + "/", timeout=10)
    result, _ = run("reports:daily-summary", "day=today")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((Path(ARTEFACTS.search(result.stdout).group(1)) / "daily-summary.json").read_text())


def test_todays_uptime_and_api_figures_equal_the_tests_own_promql(today, sandbox):
    period = today["period"]
    assert not period["complete"]
    seconds = int((datetime.fromisoformat(period["until"]) - datetime.fromisoformat(period["start"])).total_seconds())
    at = period["until"]
    uptime = prometheus(sandbox, 'avg(avg_over_time((max_over_time(probe_success{probe="edge"}[1m]))'
                                 f"[{seconds}s:1m]))", at)
    assert kpi(today, "uptime")["value"] == (None if uptime is None else round(100.0 * uptime, 3))
    total = prometheus(sandbox, f"sum(increase(betaskill_http_requests_total[{seconds}s]))", at)
    assert total, "the app's requests of today are in Prometheus"
    errors = prometheus(sandbox, f'sum(increase(betaskill_http_requests_total{{status=~"5.."}}[{seconds}s]))', at)
    assert kpi(today, "api error rate")["value"] == round(100.0 * (errors or 0.0) / total, 3)
    average = prometheus(sandbox, f"sum(increase(betaskill_http_request_duration_seconds_sum[{seconds}s]))"
                                  f" / sum(increase(betaskill_http_request_duration_seconds_count[{seconds}s]))", at)
    assert kpi(today, "api response time (average)")["value"] == round(average, 3)
    assert kpi(today, "api response time (average)")["verdict"] == ("met" if average < 5 else "missed")


def test_the_page_is_self_contained_and_shows_the_same_numbers(summary):
    assert_self_contained(summary.page)
    assert summary.page.screenshot.stat().st_size > 10_000
    shown = summary.page.value
    for item in summary.report["kpis"]:
        if item["value"] is None:
            assert shown[item["name"]] == "no data", item["name"]
        else:
            assert float(shown[item["name"]]) == pytest.approx(item["value"]), item["name"]
    assert float(shown["payments"]) == summary.after["total"]
    assert "<svg" in summary.html and "Payment success rate by hour" in summary.html
    assert f"| payments | {summary.after['total']} |" in summary.markdown


def test_no_card_number_email_address_or_secret_is_in_the_report(summary, sandbox):
    secrets = [sandbox[key] for key in ("postgres_password", "ikhokha_app_secret", "aws_secret_access_key",
                                        "notify_url") if sandbox.get(key)]
    for text in (summary.html, summary.markdown, json.dumps(summary.report)):
        assert CARD not in text and CARD.replace(" ", "") not in text and EMAIL not in text
        assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text)
        for secret in secrets:
            assert secret not in text


def test_the_report_is_uploaded_and_announced(summary, sandbox):
    location = summary.report["details"]["location"]
    s3 = boto3.client("s3", endpoint_url=sandbox["s3_endpoint"], region_name=sandbox["s3_region"],
                      aws_access_key_id=sandbox["aws_access_key_id"],
                      aws_secret_access_key=sandbox["aws_secret_access_key"])
    prefix = location["prefix"]
    assert prefix.startswith(f"reports/daily-summary/{summary.day.isoformat()}/")
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=location["bucket"], Prefix=prefix + "/")["Contents"]}
    assert keys == {f"{prefix}/daily-summary.{ext}" for ext in ("html", "json", "md")}
    uploaded = json.loads(s3.get_object(Bucket=location["bucket"], Key=f"{prefix}/daily-summary.json")["Body"].read())
    assert uploaded["kpis"] == summary.report["kpis"]
    messages = requests.get(sandbox["notify_url"].rsplit("/", 1)[0] + "/messages", timeout=5).json()
    sent = [m["body"] for m in messages if isinstance(m.get("body"), dict)
            and m["body"].get("event") == "daily-summary" and prefix in m["body"].get("location", "")]
    assert len(sent) == 1
    assert sent[0]["location"] == f"s3://{location['bucket']}/{prefix}/"
    assert f"{summary.after['total']} payments" in sent[0]["text"] and prefix in sent[0]["text"]


def test_a_day_with_nothing_gives_no_data_not_zero(sandbox):
    empty = (datetime.now(TZ) - timedelta(days=300)).date().isoformat()
    result, _ = run("reports:daily-summary", f"day={empty}")
    assert result.returncode == 0, result.stdout
    report = json.loads((Path(ARTEFACTS.search(result.stdout).group(1)) / "daily-summary.json").read_text())
    for name in ("payments", "payment success rate", "callback latency p95", "api error rate", "revenue"):
        assert kpi(report, name)["value"] is None and kpi(report, name)["display"] == "no data", name
    assert all(table["rows"] == [] for table in report["tables"]
               if table["title"] in ("Payments by hour", "Deployments"))


def test_a_day_in_the_future_is_refused_naming_day(sandbox):
    tomorrow = (datetime.now(TZ) + timedelta(days=1)).date().isoformat()
    result, _ = run("reports:daily-summary", f"day={tomorrow}")
    assert result.returncode != 0
    assert f"day='{tomorrow}' is in the future" in result.stdout


@pytest.fixture(scope="module")
def performance(sandbox, tmp_path_factory):
    """performance:daily-review of today (the queries performance:generate-report asks too, from
    playbooks/vars/performance.yml), and its page in the browser."""
    result, _ = run("performance:daily-review", "day=today")
    assert result.returncode == 0, result.stdout + result.stderr
    folder = Path(ARTEFACTS.search(result.stdout).group(1))
    page = open_page(folder / "performance-daily-review.html",
                     screenshot=tmp_path_factory.mktemp("perf") / "perf.png", script=READ_KPIS)
    return SimpleNamespace(report=json.loads((folder / "performance-daily-review.json").read_text()), page=page)


def test_the_performance_review_equals_the_tests_own_promql(performance, sandbox):
    report = performance.report
    period = report["period"]
    seconds = report["details"]["window_seconds"]
    total = prometheus(sandbox, f"sum(increase(betaskill_http_requests_total[{seconds}s]))", period["until"])
    assert total and kpi(report, "throughput")["value"] == round(total / seconds, 4)
    errors = prometheus(sandbox, f'sum(increase(betaskill_http_requests_total{{status=~"5.."}}[{seconds}s]))',
                        period["until"]) or 0.0
    assert kpi(report, "error rate")["value"] == round(100.0 * errors / total, 3)
    routes = next(table for table in report["tables"] if table["title"] == "Routes")
    by_route = {row[0]: row[1] for row in routes["rows"]}
    own = requests.get(f"{sandbox['prometheus_url']}/api/v1/query", timeout=10, params={
        "query": f"sum by (route) (increase(betaskill_http_requests_total[{seconds}s]))", "time": period["until"]}
    ).json()["data"]["result"]
    assert by_route == {item["metric"]["route"]: int(float(item["value"][1])) for item in own}
    # The sandbox's node exporter: the machine as the platform's one host.
    memory = prometheus(sandbox, f"100 * max(1 - avg_over_time(node_memory_MemAvailable_bytes[{seconds}s])"
                                 f" / avg_over_time(node_memory_MemTotal_bytes[{seconds}s]))", period["until"])
    assert memory is not None and kpi(report, "memory utilisation (highest host)")["value"] == round(memory, 1)
    assert kpi(report, "memory utilisation (highest host)")["verdict"] == ("met" if memory < 80 else "missed")
    assert_self_contained(performance.page)
    assert performance.page.value["throughput"] == str(kpi(report, "throughput")["value"])


def test_the_performance_review_compares_with_the_same_weekday_a_week_before(performance, sandbox):
    report = performance.report
    period, seconds = report["period"], report["details"]["window_seconds"]
    week_before = datetime.fromisoformat(period["until"]) - timedelta(days=7)
    then = prometheus(sandbox, f"sum(increase(betaskill_http_requests_total[{seconds}s]))", week_before.isoformat())
    table = next(table for table in report["tables"] if table["title"] == "Against the same weekday a week before")
    requests_row = next(row for row in table["rows"] if row[0] == "requests")
    assert requests_row[2] == (None if then is None else int(then))
    assert report["details"]["week_before"]["requests"] == requests_row[2]
    assert "a week before: " in kpi(report, "throughput")["detail"]


@pytest.mark.parametrize(("variables", "message"), [
    (("since=tomorrow",), "since='tomorrow' is in the future"),
    (("since=2025-01-01", "until=2026-11-30"), "days long: at most 366 days are reported at once"),
])
def test_a_bad_window_is_refused_naming_the_variable(sandbox, variables, message):
    result, _ = run("performance:generate-report", *variables)
    assert result.returncode != 0 and message in result.stdout, result.stdout
