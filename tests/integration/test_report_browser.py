"""The shared browser check (tests/browser_check.py) itself, against Debian's headless chromium: it
rejects a page with one external <img> and one console.error, naming both, and passes a report the
framework rendered, reading the KPIs back from the DOM. No sandbox needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_check import READ_KPIS, assert_self_contained, open_page

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]


def test_the_check_rejects_an_external_image_and_a_console_error(tmp_path):
    result = open_page(DATA / "not_self_contained.html", screenshot=tmp_path / "bad.png")
    assert result.requests == ["https://cdn.example.invalid/logo.png"]
    assert any("planted console error" in error for error in result.console_errors), result.console_errors
    with pytest.raises(AssertionError) as failure:
        assert_self_contained(result)
    assert "cdn.example.invalid" in str(failure.value) and "planted console error" in str(failure.value)
    assert result.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rendered_report_passes_and_its_numbers_are_read_from_the_dom(tmp_path):
    from ansible_collections.betaskill.payops.plugins.module_utils import payops_report as report

    kpis = [report.kpi("payment success rate", 97.5, "%", 95, ">"), report.kpi("incidents", None, "", 0, "==")]
    chart = {"title": "Success rate by hour", "x_label": "hour", "y_label": "success rate (%)",
             "points": [["00", 100.0], ["01", 92.0]], "target": 95}
    document = report.report_document("Daily summary", "daily-summary", {"label": "2026-12-02", "start": "s",
                                      "end": "e", "timezone": "Africa/Johannesburg"}, kpis, [], [chart], "ok")
    page = tmp_path / "daily-summary.html"
    page.write_text(report.render_html(document, (ROOT / "roles/report/templates/report.html.j2").read_text()))
    result = open_page(page, screenshot=tmp_path / "report.png", script=READ_KPIS)
    assert_self_contained(result)
    assert result.value == {"payment success rate": "97.5", "incidents": "no data"}
    assert result.screenshot.stat().st_size > 1000
