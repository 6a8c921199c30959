"""One way to pick a backup (select_backup) and one time parser (payops_time)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ansible_collections.betaskill.payops.plugins.module_utils import payops_time
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_catalog import (
    ANY_STATE,
    WITH_MANIFEST,
    select_backup,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import BackupError


def entry(backup_id, state="complete", verified=False):
    return {"backup_id": backup_id, "state": state,
            "last_verification": {"result": "passed"} if verified else None}


ENTRIES = [  # newest first, as load_backups returns them
    entry("20261127T020000Z-c", state="incomplete"),
    entry("20261126T020000Z-b", state="unreadable"),
    entry("20261125T020000Z-a"),
    entry("20261124T020000Z-z", verified=True),
]


def test_the_newest_complete_backup_skips_incomplete_and_unreadable_ones():
    assert select_backup(ENTRIES, "database")["backup_id"] == "20261125T020000Z-a"


def test_the_newest_verified_backup_and_the_preference_for_it():
    assert select_backup(ENTRIES, "database", verified_only=True)["backup_id"] == "20261124T020000Z-z"
    assert select_backup(ENTRIES, "database", prefer_verified=True)["backup_id"] == "20261124T020000Z-z"
    unverified = ENTRIES[:3]
    assert select_backup(unverified, "database", prefer_verified=True)["backup_id"] == "20261125T020000Z-a"


def test_a_backup_with_a_manifest_includes_an_unreadable_one():
    assert select_backup(ENTRIES, "database", states=WITH_MANIFEST)["backup_id"] == "20261126T020000Z-b"


def test_a_named_backup_must_exist_and_be_usable():
    assert select_backup(ENTRIES, "database", backup_id="20261125T020000Z-a")["backup_id"] == "20261125T020000Z-a"
    assert select_backup(ENTRIES, "database", backup_id="20261127T020000Z-c", states=ANY_STATE)["state"] == "incomplete"
    with pytest.raises(BackupError, match=r"backup 20261127T020000Z-c is incomplete: it has no manifest"):
        select_backup(ENTRIES, "database", backup_id="20261127T020000Z-c")
    with pytest.raises(BackupError, match=r"backup 2020 does not exist \(newest: 20261127T020000Z-c, "):
        select_backup(ENTRIES, "database", backup_id="2020")


def test_nothing_to_choose_names_what_was_asked_and_what_exists():
    with pytest.raises(BackupError) as caught:
        select_backup(ENTRIES[:3], "database", verified_only=True, hint="run backup:verify-integrity")
    assert str(caught.value) == ("there is no verified database backup (1 complete, 0 verified, 1 incomplete, "
                                 "1 unreadable): run backup:verify-integrity")
    with pytest.raises(BackupError, match=r"there is no complete configuration backup \(no backups at all\)$"):
        select_backup([], "configuration")
    assert select_backup([], "configuration", required=False) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T21:04:00Z", datetime(2024, 5, 1, 21, 4, tzinfo=UTC)),
    ("2024-05-01T21:04:00.123456789Z", datetime(2024, 5, 1, 21, 4, 0, 123456, tzinfo=UTC)),
    ("2024-05-01 21:04:00", datetime(2024, 5, 1, 21, 4, tzinfo=UTC)),  # Ansible's now(): naive is UTC
])
def test_one_iso_parser_reads_z_nanoseconds_and_naive_utc(text, expected):
    assert payops_time.parse_time(text) == expected
    assert payops_time.parse_time_strict(text) == expected


def test_the_lenient_parser_returns_none_and_the_strict_one_raises():
    for text in ("", None, "not a time"):
        assert payops_time.parse_time(text) is None
        with pytest.raises(ValueError):
            payops_time.parse_time_strict(text)


def test_iso_writes_microseconds_for_manifests_and_seconds_for_people():
    moment = datetime(2026, 11, 27, 2, 0, 0, 5, tzinfo=UTC)
    assert payops_time.iso(moment) == "2026-11-27T02:00:00.000005Z"
    assert payops_time.iso_seconds(moment) == "2026-11-27T02:00:00Z"
