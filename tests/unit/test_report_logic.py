"""The report framework's pure logic (plugins/module_utils/payops_report.py): KPI verdicts against
their targets, "no data" for a source with nothing, scrubbing of card numbers, e-mail addresses and
secrets, the checks a chart must pass, and a rendered page that loads nothing from anywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ansible_collections.betaskill.payops.plugins.module_utils import payops_report as report
from ansible_collections.betaskill.payops.plugins.module_utils.payops_redact import Redactor

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "roles" / "report" / "templates"


@pytest.mark.parametrize(("value", "target", "op", "verdict"), [
    (97.5, 95, ">", "met"), (95.0, 95, ">", "missed"), (95.0, 95, ">=", "met"), (0.4, 1, "<", "met"),
    (1.0, 1, "<", "missed"), (0, 0, "==", "met"), (2, 0, "==", "missed"), (4.9, 5, "<=", "met"),
    (None, 95, ">", "no data"), (12, None, None, "info"), (None, None, None, "no data"),
])
def test_each_kpi_is_judged_against_its_target(value, target, op, verdict):
    assert report.kpi("k", value, "%", target, op)["verdict"] == verdict


def test_no_data_is_never_shown_as_zero():
    item = report.kpi("payments", None, "", why_no_data="no payment in the window")
    assert item["display"] == "no data" and item["value"] is None
    assert item["detail"] == "no payment in the window"
    assert report.kpi("payments", 0)["display"] == "0"


def test_values_and_targets_are_shown_with_their_units():
    item = report.kpi("success rate", 97.456, "%", 95, ">")
    assert item["display"] == "97.5 %" and item["target_display"] == "> 95 %"
    assert report.kpi("revenue", 1234567, "ZAR cents")["display"] == "1 234 567 ZAR cents"


def test_an_unknown_comparison_is_refused():
    with pytest.raises(ValueError, match="op must be one of"):
        report.kpi("k", 1, "", 2, "=>")


def test_kpis_become_the_report_roles_verdict_rows():
    rows = report.kpi_rows([report.kpi("a", 1, "", 0, "=="), report.kpi("b", None, "", 0, "==")])
    assert [(row["component"], row["state"]) for row in rows] == [("a", "degraded"), ("b", "unknown")]


@pytest.mark.parametrize(("text", "scrubbed"), [
    ("card 4111 1111 1111 1111 declined", "card 411111******1111 declined"),
    ("card 4111-1111-1111-1111", "card 411111******1111"),
    ("pan 5555555555554444.", "pan 555555******4444."),
    ("order 1234567890123 is no card", "order 1234567890123 is no card"),  # fails the Luhn check
    ("amount 49900 cents", "amount 49900 cents"),
    ("from learner1@example.com today", "from l***@example.com today"),
    ("time 2026-12-02T23:59:00+02:00", "time 2026-12-02T23:59:00+02:00"),
])
def test_card_numbers_and_email_addresses_are_scrubbed(text, scrubbed):
    assert report.scrub_text(text) == scrubbed


def test_learned_secrets_are_scrubbed_everywhere_even_in_keys():
    redactor = Redactor()
    redactor.learn_variables({"payops_notify_url": "http://127.0.0.1:9/hooks/T0K3N", "payops_db_password": "hunter22"})
    value = {"rows": [["sent to http://127.0.0.1:9/hooks/T0K3N", 3]], "hunter22": "x", "n": 4}
    cleaned = report.scrub(value, redactor)
    assert "T0K3N" not in str(cleaned) and "hunter22" not in str(cleaned)
    assert cleaned["n"] == 4 and cleaned["rows"][0][1] == 3


def chart(**overrides):
    return {"title": "Success rate by hour", "x_label": "hour (Africa/Johannesburg)", "y_label": "success rate (%)",
            "points": [["00", 100.0], ["01", 90.0], ["02", None]], "target": 95, **overrides}


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"title": ""}, "has no title"), ({"x_label": ""}, "has no x_label"),
    ({"y_label": "rate"}, "names no unit"), ({"target": None}, "has no target"),
])
def test_a_chart_without_title_units_or_target_is_refused(overrides, problem):
    problems = report.check_document({"charts": [chart(**overrides)]})
    assert any(problem in text for text in problems), problems


def test_a_table_row_of_the_wrong_width_is_refused():
    assert report.check_document({"tables": [{"title": "t", "columns": ["a", "b"], "rows": [[1]]}]})


def sample_document():
    kpis = [report.kpi("payment success rate", 97.5, "%", 95, ">"),
            report.kpi("security incidents", None, "", 0, "==", why_no_data="public.security_events is empty")]
    tables = [{"title": "Failures by category", "columns": ["category", "count"], "rows": [["declined", 3]]},
              {"title": "Deployments", "columns": ["release"], "rows": [], "empty": "no deployment"}]
    period = {"label": "2026-12-02", "start": "2026-12-01T22:00:00Z", "end": "2026-12-02T22:00:00Z",
              "timezone": "Africa/Johannesburg"}
    return report.report_document("Daily summary", "daily-summary", period, kpis, tables, [chart()], "All good.")


def test_the_page_is_self_contained_and_carries_the_numbers():
    page = report.render_html(sample_document(), (TEMPLATES / "report.html.j2").read_text())
    assert "<script" not in page.lower() and "@font-face" not in page and "@import" not in page
    # Nothing is loaded: no src= or href= to anywhere (an SVG's xlink:href="#id" stays on the page).
    assert not re.findall(r"""(?:src|href)\s*=\s*["'](?!#)""", page)
    assert not re.findall(r"url\((?!#)", page)
    assert page.count("<svg") == 1 and "Success rate by hour" in page
    assert 'data-kpi="payment success rate"' in page and "97.5 %" in page and "no deployment" in page
    assert 'data-value="no data"' in page


def test_the_markdown_summary_carries_the_same_numbers():
    markdown = report.render_markdown(sample_document(), (TEMPLATES / "report.md.j2").read_text())
    assert "| payment success rate | 97.5 % | > 95 % | met |" in markdown
    assert "| security incidents | no data | = 0 | no data (public.security_events is empty) |" in markdown
    assert "| declined | 3 |" in markdown and "no deployment" in markdown


def test_a_chart_without_points_says_no_data():
    svg = report.svg_chart(chart(points=[]))
    assert svg.startswith("<svg") and "<script" not in svg


def test_prometheus_answers_are_read_as_numbers_vectors_and_series():
    from ansible_collections.betaskill.payops.plugins.filter import report as filters

    vector = {"status": "success", "data": {"result": [{"metric": {"route": "/a"}, "value": [1, "2.5"]},
                                                       {"metric": {"route": "/b"}, "value": [1, "NaN"]}]}}
    assert filters.prometheus_value(vector) == 2.5
    assert filters.prometheus_vector(vector, "route") == {"/a": 2.5}
    assert filters.prometheus_value({"status": "success", "data": {"result": []}}) is None
    assert filters.prometheus_value(None) is None and filters.prometheus_value("not json") is None
    matrix = {"status": "success", "data": {"result": [{"metric": {}, "values": [[10, "1"], [20, "NaN"]]}]}}
    assert filters.prometheus_series(matrix) == [[10, 1.0], [20, None]]


def test_the_performance_report_judges_the_window_and_says_what_it_lacks():
    from ansible_collections.betaskill.payops.plugins.filter import report as filters

    period = {"start": "2026-12-02T22:00:00Z", "until": "2026-12-02T23:00:00Z", "timezone": "Africa/Johannesburg"}
    answers = {"requests": 3600.0, "errors": 72.0, "response_avg": 0.2, "response_p95": 0.9, "cpu": 85.0,
               "by_route_requests": {"/api/checkout": 600.0, "/api/health": 3000.0},
               "by_route_errors": {"/api/checkout": 72.0}, "by_route_p95": {"/api/checkout": 1.5},
               "p95_series": [[1796248800, 0.9]], "error_series": [[1796248800, 0.02]]}
    parts = filters.performance_report(answers, period, {"response_time_max_seconds": 5, "error_rate_max": 1,
                                                         "resource_max_percent": 80})
    kpis = {item["name"]: report.kpi(item["name"], item["value"], item.get("unit", ""), item.get("target"),
                                     item.get("op")) for item in parts["kpis"]}
    assert kpis["throughput"]["value"] == 1.0 and kpis["error rate"]["value"] == 2.0
    assert kpis["error rate"]["verdict"] == "missed" and kpis["response time (average)"]["verdict"] == "met"
    assert kpis["cpu utilisation (highest host)"]["verdict"] == "missed"
    assert kpis["memory utilisation (highest host)"]["verdict"] == "no data"
    assert parts["tables"][0]["rows"][0] == ["/api/health", 3000, 0.0, None]
    assert parts["tables"][0]["rows"][1] == ["/api/checkout", 600, 12.0, 1.5]
    assert parts["charts"][1]["points"] == [["12-03 00:00", 2.0]]
    assert not report.check_document({"charts": parts["charts"]})
    assert "Missed: error rate, cpu utilisation (highest host)." in parts["summary"]


def test_the_daily_review_compares_each_figure_with_a_week_before():
    from ansible_collections.betaskill.payops.plugins.filter import report as filters

    period = {"start": "2026-12-02T22:00:00Z", "until": "2026-12-02T23:00:00Z", "timezone": "Africa/Johannesburg"}
    now = {"requests": 3600.0, "errors": 36.0, "response_avg": 0.3, "window_seconds": 3600}
    then = {"requests": 1800.0, "errors": 0.0, "response_avg": None, "window_seconds": 3600}
    parts = filters.performance_report(now, period, {"response_time_max_seconds": 5, "error_rate_max": 1,
                                                     "resource_max_percent": 80}, then)
    table = parts["tables"][0]
    assert table["title"] == "Against the same weekday a week before"
    rows = {row[0]: row[1:] for row in table["rows"]}
    assert rows["requests"] == [3600, 1800, "+100.0 %"]
    assert rows["error rate"] == [1.0, 0.0, None]  # no change from zero
    assert rows["response time (average)"] == [0.3, None, None]
    throughput = next(item for item in parts["kpis"] if item["name"] == "throughput")
    assert throughput["detail"].endswith("a week before: 0.500 req/s")


def test_the_file_trail_runs_of_a_day_are_counted_by_operator_and_command():
    from ansible_collections.betaskill.payops.plugins.filter import report as filters

    def end(time, operator, result="successful", **what):
        return json.dumps({"event": "run_end", "time": time, "operator": operator, "result": result, **what})

    lines = [
        end("2026-12-02T21:59:59+00:00", "ann", command="a"),
        end("2026-12-02T22:00:00+00:00", "ann", command="a"),
        end("2026-12-02T23:00:00+00:00", "ann", "failed", command="a"),
        end("2026-12-02T23:30:00+00:00", "bob", playbook="p.yml"),
        json.dumps({"event": "run_start", "time": "2026-12-02T23:00:00+00:00", "operator": "ann", "command": "a"}),
        'not json "run_end"',
    ]
    runs = filters.audit_runs("\n".join(lines), "2026-12-02T22:00:00Z", "2026-12-03T22:00:00Z")
    assert runs == [{"operator": "ann", "what": "a", "runs": 2, "failed": 1},
                    {"operator": "bob", "what": "p.yml", "runs": 1, "failed": 0}]
