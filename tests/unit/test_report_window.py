"""Report periods (plugins/module_utils/payops_time.py): a day is the calendar day in
payops_timezone, a window has its bounds checked, and every bad input names its variable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ansible_collections.betaskill.payops.plugins.module_utils import payops_time

# 2026-12-03 09:30 in Johannesburg (UTC+2, no daylight saving).
NOW = datetime(2026, 12, 3, 7, 30, tzinfo=UTC)


def test_a_day_is_the_calendar_day_in_johannesburg():
    period = payops_time.parse_day("2026-12-02", now=NOW)
    assert (period["start"], period["end"]) == ("2026-12-01T22:00:00Z", "2026-12-02T22:00:00Z")
    assert period["label"] == "2026-12-02" and period["complete"] and period["timezone"] == "Africa/Johannesburg"
    assert period["local_start"] == "2026-12-02T00:00:00+02:00"
    # Unix times for Prometheus, whatever the controller's own zone.
    assert (period["start_epoch"], period["end_epoch"]) == (1796162400, 1796248800)


def test_today_is_the_default_and_runs_until_now():
    period = payops_time.parse_day("", now=NOW)
    assert period["label"] == "2026-12-03" and not period["complete"]
    assert period["until"] == "2026-12-03T07:30:00Z"
    assert payops_time.parse_day("yesterday", now=NOW)["label"] == "2026-12-02"


def test_just_after_midnight_local_today_is_already_the_next_utc_day():
    period = payops_time.parse_day("today", now=datetime(2026, 12, 2, 22, 1, tzinfo=UTC))
    assert period["label"] == "2026-12-03"


def test_a_day_with_a_clock_change_has_its_own_length():
    period = payops_time.parse_day("2026-03-29", timezone="Europe/Berlin", now=NOW)
    assert (period["start"], period["end"]) == ("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z")


@pytest.mark.parametrize(("text", "message"), [
    ("2026-12-04", "day='2026-12-04' is in the future"),
    ("tomorrow", "day='tomorrow' is in the future"),
    ("someday", "day='someday' is not a day"),
    ("02/12/2026", "is not a day"),
])
def test_a_bad_day_is_refused_naming_the_variable(text, message):
    with pytest.raises(ValueError, match=message):
        payops_time.parse_day(text, now=NOW)


def test_an_unknown_time_zone_is_refused_naming_payops_timezone():
    with pytest.raises(ValueError, match="payops_timezone='Mars/Olympus' is not a time zone"):
        payops_time.parse_day("", timezone="Mars/Olympus", now=NOW)


def test_a_window_of_dates_covers_whole_local_days():
    period = payops_time.parse_window("2026-11-01", "2026-11-30", now=NOW)
    assert (period["start"], period["end"]) == ("2026-10-31T22:00:00Z", "2026-11-30T22:00:00Z")
    assert payops_time.parse_window("2026-12-01", now=NOW)["end"] == "2026-12-03T07:30:00Z"
    assert payops_time.parse_window("2026-12-02T18:00:00+02:00", "now", now=NOW)["start"] == "2026-12-02T16:00:00Z"


@pytest.mark.parametrize(("since", "until", "message"), [
    ("", "", "since is required"),
    ("2026-12-04", "", "since='2026-12-04' is in the future"),
    ("tomorrow", "", "since='tomorrow' is in the future"),
    ("2026-12-02", "2026-12-01", "until='2026-12-01' is not after since='2026-12-02'"),
    ("2025-01-01", "2026-12-01", "is 700 days long: at most 366 days"),
    ("last week", "", "since='last week' does not parse"),
    ("2026-12-01", "soon", "until='soon' does not parse"),
])
def test_a_bad_window_is_refused_naming_the_variable(since, until, message):
    with pytest.raises(ValueError, match=message):
        payops_time.parse_window(since, until, now=NOW)
