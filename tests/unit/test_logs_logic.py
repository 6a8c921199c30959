"""Log search logic without a sandbox: lines and their times (plugins/module_utils/payops_logs.py),
the request checks and the merge on the controller (plugins/filter/logs.py), the window
(payops_time.window_bounds)."""

from __future__ import annotations

import gzip
import json
import os
import re
from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.betaskill.payops.plugins.filter.logs import (
    clock_offset,
    log_journal_for,
    log_merge,
    log_request,
    log_rows_as_lines,
    log_sources_for,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_logs import (
    Collector,
    Filters,
    parse_journal_entry,
    parse_line,
    plain_level,
    plain_time,
    rotated_files,
    route_pattern,
    scan_lines,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import window_bounds

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
GROUPS = {"all": ["web-1", "app-1", "db-1"], "ungrouped": [], "web": ["web-1"], "app": ["app-1"], "db": ["db-1"]}
ROUTES = ["/api/health", "/api/checkout", "/api/webhooks/ikhokha"]


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize("line,expected", [
    ("2026-12-03T12:45:38.512Z level=info msg=x", "2026-12-03T12:45:38.512+00:00"),
    ("ts=2026-12-03T12:45:38.512Z caller=main.go:551 level=info", "2026-12-03T12:45:38.512+00:00"),
    ("2026-12-03 12:45:52.123 UTC [42] LOG:  checkpoint starting", "2026-12-03T12:45:52.123+00:00"),
    ("2026-12-03T14:45:52+02:00 something", "2026-12-03T12:45:52+00:00"),
])
def test_times_of_plain_lines_with_a_zone(line, expected):
    assert plain_time(line) == pytest.approx(epoch(expected))


def test_times_without_a_zone_are_the_hosts_local_time():
    local = datetime(2026, 12, 3, 12, 45, 52).astimezone().timestamp()
    assert plain_time("2026/12/03 12:45:52 [error] 12#12: *1 open() failed") == pytest.approx(local)
    assert plain_time("2026-12-03 12:45:52,761 app INFO started") == pytest.approx(local + 0.761)
    assert plain_time("Dec  3 12:45:52 web-1 sshd[1]: Failed password",
                      now=datetime(2026, 12, 3, 13, 0).astimezone()) == pytest.approx(local)
    assert plain_time("no time here") is None


@pytest.mark.parametrize("line,level", [
    ("2026/12/03 12:45:52 [error] 12#12: *1 upstream timed out", "error"),
    ("ts=... level=warn msg=slow", "warning"),
    ("2026-12-03 12:45:52.123 UTC [42] FATAL:  password authentication failed", "critical"),
    ("2026-12-03 12:45:52 supervisor[7] started child", "info"),
])
def test_levels_of_plain_lines(line, level):
    assert plain_level(line) == level


def test_json_lines_of_the_edge_and_the_app():
    edge = json.dumps({"time": "2026-12-03T12:45:52+00:00", "msec": 1796301952.764, "request_id": "r-00000001",
                       "path": "/api/checkout", "status": 502, "request_time": 0.02})
    line = parse_line(edge, "edge-access", "access.log")
    assert line.time == pytest.approx(1796301952.764)  # msec wins over the second-resolution time
    assert line.level == "error" and line.fields["status"] == 502 and line.fields["request_id"] == "r-00000001"
    app = json.dumps({"time": "2026-12-03T12:45:52.761Z", "level": "warning", "route": "/api/checkout",
                      "payment_reference": "SKILL-1-aa"})
    line = parse_line(app, "app", "app.log")
    assert line.level == "warning" and line.fields["route"] == "/api/checkout"


def test_a_journal_entry():
    entry = {"__REALTIME_TIMESTAMP": "1796301952764000", "PRIORITY": "3", "_SYSTEMD_UNIT": "nginx.service",
             "MESSAGE": "worker process exited"}
    line = parse_journal_entry(entry, "journal")
    assert line.time == pytest.approx(1796301952.764) and line.level == "error"
    assert line.text == "nginx.service: worker process exited"
    app = {"__REALTIME_TIMESTAMP": "1796301952764000", "_SYSTEMD_UNIT": "betaskill-app.service",
           "MESSAGE": json.dumps({"time": "2026-12-03T12:45:52.761Z", "request_id": "abcdefgh1", "level": "info"})}
    assert parse_journal_entry(app, "journal").fields["request_id"] == "abcdefgh1"
    # systemd's line about the unit is the unit's, not init.scope's.
    about = {"__REALTIME_TIMESTAMP": "1796301952764000", "_SYSTEMD_UNIT": "init.scope", "UNIT": "nginx.service",
             "MESSAGE": "Started nginx.service - A high performance web server."}
    assert parse_journal_entry(about, "journal").file == "journal:nginx.service"


def test_a_line_without_a_time_takes_the_one_before():
    lines = ["2026-12-03T12:00:00Z ERROR boom", "Traceback (most recent call last):", "  File x"]
    collector = Collector(10)
    filters = Filters(since=epoch("2026-12-03T11:00:00+00:00"), until=epoch("2026-12-03T13:00:00+00:00"))
    scan_lines(lines, "app", "app.log", filters, collector)
    assert [line.time for line in collector.lines()] == [epoch("2026-12-03T12:00:00+00:00")] * 3


def test_filters_window_level_route_request_id_status_grep():
    def line(minute, **fields):
        return json.dumps({"time": f"2026-12-03T12:{minute:02d}:00Z", "level": "info", **fields})
    lines = [line(1, route="/api/checkout", request_id="req-00000001", status=201),
             line(2, route="/api/health", request_id="req-00000002", status=200),
             line(3, level="error", route="/api/checkout", request_id="req-00000003", status=500),
             json.dumps({"msec": epoch("2026-12-03T12:04:00+00:00"), "path": "/api/checkout", "status": 403}),
             line(30, route="/api/checkout", request_id="req-00000004", status=201)]

    def search(**kwargs):
        collector = Collector(100)
        scan_lines(lines, "s", "f", Filters(**kwargs), collector)
        found = [json.loads(item.text) for item in collector.lines()]
        return [data.get("request_id") or data.get("status") for data in found]

    window = {"since": epoch("2026-12-03T12:00:00+00:00"), "until": epoch("2026-12-03T12:10:00+00:00")}
    assert search(**window) == ["req-00000001", "req-00000002", "req-00000003", 403]
    assert search(**window, route="/api/checkout") == ["req-00000001", "req-00000003", 403]
    assert search(**window, level="warning") == ["req-00000003", 403]
    assert search(request_id="req-00000004") == ["req-00000004"]
    assert search(**window, status=(403, 500)) == ["req-00000003", 403]
    assert search(grep=re.compile("HEALTH", re.IGNORECASE)) == ["req-00000002"]


def test_route_patterns_match_paths():
    assert route_pattern("/api/payments/{id}").match("/api/payments/abc")
    assert not route_pattern("/api/payments/{id}").match("/api/payments/abc/refund")
    assert route_pattern("/api/checkout").match("/api/checkout")


def test_the_cap_keeps_the_newest_and_counts_the_rest():
    collector = Collector(3)
    lines = [json.dumps({"time": f"2026-12-03T12:00:{second:02d}Z", "n": second}) for second in range(10)]
    scan_lines(reversed(lines), "s", "f", Filters(), collector)  # in any order
    assert [json.loads(line.text)["n"] for line in collector.lines()] == [7, 8, 9]
    assert collector.matched == 10 and collector.omitted == 7
    oldest = Collector(2, keep="oldest")
    scan_lines(lines, "s", "f", Filters(), oldest)
    assert [json.loads(line.text)["n"] for line in oldest.lines()] == [0, 1] and oldest.omitted == 8


def test_rotated_files_are_found_oldest_first_and_gzip_is_read(tmp_path):
    live = tmp_path / "access.log"
    live.write_text("live\n")
    with gzip.open(tmp_path / "access.log.2.gz", "wt") as handle:
        handle.write("two\n")
    (tmp_path / "access.log.1").write_text("one\n")
    (tmp_path / "access.log-20261201.gz").write_bytes(gzip.compress(b"dated\n"))
    (tmp_path / "access.log.bak").write_text("not a rotation\n")
    now = datetime.now().timestamp()
    for age, name in ((400, "access.log-20261201.gz"), (300, "access.log.2.gz"), (200, "access.log.1"),
                      (0, "access.log")):
        os.utime(tmp_path / name, (now - age, now - age))
    found = rotated_files(str(tmp_path / "access.log"))
    assert [os.path.basename(path) for path in found] == [
        "access.log-20261201.gz", "access.log.2.gz", "access.log.1", "access.log"]


def test_the_window_parses_and_refuses_an_end_before_its_start():
    start, end = window_bounds("2h", "", now=NOW)
    assert (start, end) == (NOW - timedelta(hours=2), NOW)
    start, end = window_bounds("2026-12-03T10:00:00Z", "30m", now=NOW)
    assert end == NOW - timedelta(minutes=30)
    with pytest.raises(ValueError, match=r"until='2h' is not after since='1h'"):
        window_bounds("1h", "2h", now=NOW)
    with pytest.raises(ValueError, match="until='soon' does not parse"):
        window_bounds("1h", "soon", now=NOW)


def test_the_request_names_each_problem_by_its_variable():
    request = log_request({"since": "1h", "until": "2h", "host": "web-1,nope", "route": "/api/nothing",
                           "limit": "0"}, GROUPS, ROUTES, ["web", "app"], now=NOW)
    problems = " | ".join(request["problems"])
    assert "until='2h'" in problems and "is not after since='1h'" in problems
    assert "host='nope' is neither a host nor a group" in problems and "groups app, db, web" in problems
    assert "route='/api/nothing' is not a route of the app: use one of /api/health" in problems
    assert "limit='0' must be a whole number of lines" in problems
    good = log_request({"since": "1h", "host": "web,db-1", "route": "/api/checkout"}, GROUPS, ROUTES, ["app"], now=NOW)
    assert good["problems"] == [] and good["hosts"] == ["web-1", "db-1"]
    assert good["window"]["since"] == "2026-12-03T11:00:00.000Z"
    assert log_request({}, GROUPS, ROUTES, ["web", "app"], now=NOW)["hosts"] == ["web-1", "app-1"]
    assert log_request({"host": "all"}, GROUPS, ROUTES, [], now=NOW)["hosts"] == ["web-1", "app-1", "db-1"]


def _result(lines, matched, clock=1000.0):
    return {"lines": lines, "matched": matched, "omitted": matched - len(lines), "masked": {"card": 1},
            "files": [{}], "clock": {"epoch": clock, "controller_epoch": 999.0, "offset_seconds": 1.0}}


def test_the_merge_orders_by_time_names_the_host_and_says_how_many_more():
    window = {"text": "12:00 to 13:00"}
    merged = log_merge({
        "web-1": _result([{"epoch": 3.0, "time": "t3", "source": "edge-access", "text": "c"}], 1),
        "app-1": _result([{"epoch": 1.0, "time": "t1", "source": "app", "text": "a"},
                          {"epoch": 5.0, "time": "t5", "source": "app", "text": "e"}], 7),
    }, window, "", log_rows_as_lines([{"epoch": 2.0, "event_type": "x", "source_ip": "card 4111111111111111"}],
                                     "db-1", "security_events"), received_epoch=1001.0)
    assert [line["text"][:1] for line in merged["lines"]] == ["a", "{", "c", "e"]
    assert [line["host"] for line in merged["lines"]] == ["app-1", "db-1", "web-1", "app-1"]
    assert "411111******1111" in merged["lines"][1]["text"] and merged["masked"]["card"] == 3
    assert merged["text"][0].split()[1] == "app-1"
    assert "... 5 more lines on app-1 matched but are not shown (7 matched, 2 shown)" in merged["text"][-1]
    assert merged["matched"] == 9 and merged["omitted"] == 5
    host = next(item for item in merged["hosts"] if item["host"] == "app-1")
    assert host["offset_seconds"] == 0.0 and host["offset_uncertainty"] == 1.0


def test_an_empty_window_says_so_and_a_failed_host_is_named():
    merged = log_merge([["web-1", _result([], 0)], ["app-1", {"failed": True, "msg": "permission denied"}]],
                       {"text": "2020-01-01T00:00:00Z to 2020-01-01T01:00:00Z"}, "grep=x")
    assert merged["empty"]
    assert merged["text"][-1] == ("no log lines in 2020-01-01T00:00:00Z to 2020-01-01T01:00:00Z on app-1, web-1 "
                                  "matching grep=x")
    assert "!!! app-1: the search failed: permission denied" in merged["text"]


def test_two_searches_of_one_host_add_up():
    merged = log_merge([["web-1", _result([{"epoch": 1.0, "source": "s", "text": "a"}], 3)],
                        ["web-1", _result([{"epoch": 2.0, "source": "s", "text": "b"}], 1)]], {})
    assert merged["matched"] == 4 and merged["returned"] == 2 and merged["omitted"] == 2


def test_clock_offset_is_centred_on_the_round_trip():
    assert clock_offset({"epoch": 105.0, "controller_epoch": 100.0}, 102.0) == (4.0, 1.0)
    assert clock_offset({"epoch": 105.0, "offset_seconds": 5.0}, None) == (5.0, None)


def test_sources_and_journal_by_kind_and_group():
    sources = [{"name": "edge", "groups": ["web"], "kinds": ["application"], "paths": ["/a"]},
               {"name": "syslog", "groups": ["all"], "kinds": ["system"], "paths": ["/b"]}]
    assert log_sources_for(sources, "application", ["web"]) == [{"name": "edge", "paths": ["/a"]}]
    assert log_sources_for(sources, "application", ["app"]) == []
    assert log_sources_for(sources, "system", ["app"]) == [{"name": "syslog", "paths": ["/b"]}]
    journal = [{"groups": ["all"], "kinds": ["system"], "units": []},
               {"groups": ["app"], "kinds": ["application"], "units": ["betaskill-app.service"]}]
    assert log_journal_for(journal, "application", ["app"]) == {"read": True, "units": ["betaskill-app.service"]}
    assert log_journal_for(journal, "application", ["web"]) == {"read": False, "units": []}
    assert log_journal_for(journal, "system", ["web"]) == {"read": True, "units": []}
