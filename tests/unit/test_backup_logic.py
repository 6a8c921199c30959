"""Pure logic of the backup modules: manifests, layout, retention, the multipart writer's bookkeeping."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]




def manifest(backup_id="20261127T020000Z-daily-abcdef", started="2026-11-27T02:00:00Z", **extra):
    body = {
        "format": "payops-backup/1", "backup_id": backup_id, "kind": "database", "environment": "local",
        "started_at": started, "finished_at": started,
        "objects": [{"name": "dump.zst", "size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}],
    }
    body.update(extra)
    return body


def test_a_sound_manifest_parses(backup_utils):
    parsed = backup_utils.parse_manifest(json.dumps(manifest()))
    assert parsed["objects"][0]["name"] == "dump.zst"


@pytest.mark.parametrize(("data", "says"), [
    ("{not json", "does not parse"),
    ("[]", "not a JSON object"),
    (json.dumps({k: v for k, v in manifest().items() if k != "objects"}), "lacks objects"),
    (json.dumps(manifest(format="other/9")), "format"),
    (json.dumps(manifest(objects=[{"name": "dump.zst", "size": 1, "sha256": "xyz"}])), "no valid sha256"),
    (json.dumps(manifest(started_at="yesterday")), "unreadable start"),
])
def test_a_bad_manifest_is_refused_with_the_reason(backup_utils, data, says):
    with pytest.raises(backup_utils.BackupError, match=says):
        backup_utils.parse_manifest(data)


def test_backup_ids_sort_by_time_and_carry_the_label(backup_utils):
    early = backup_utils.new_backup_id(datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), "Pre Deployment")
    late = backup_utils.new_backup_id(datetime.datetime(2026, 1, 2, 3, 4, 6, tzinfo=datetime.UTC), "daily")
    assert early.startswith("20260102T030405Z-pre-deployment-")
    assert sorted([late, early]) == [early, late]
    backup_utils.check_backup_id(early)
    with pytest.raises(backup_utils.BackupError):
        backup_utils.check_backup_id("../../etc")


def test_objects_without_a_manifest_are_an_incomplete_backup(backup_utils):
    now = datetime.datetime.now(datetime.UTC)
    keys = [
        {"key": "p/local/database/A/dump.zst", "size": 3, "last_modified": now},
        {"key": "p/local/database/A/manifest.json", "size": 9, "last_modified": now},
        {"key": "p/local/database/A/verification-20261127T040000Z.json", "size": 9, "last_modified": now},
        {"key": "p/local/database/B/dump.zst", "size": 3, "last_modified": now},
    ]
    grouped = backup_utils.group_backups(keys, "p/local/database/")
    assert grouped["A"]["has_manifest"] and grouped["A"]["verifications"] == ["verification-20261127T040000Z.json"]
    assert not grouped["B"]["has_manifest"]


def entry(day, verified=False, state="complete"):
    started = f"2026-{day}T02:00:00Z"
    backup_id = f"2026{day.replace('-', '')}T020000Z-daily-000000"
    return {"backup_id": backup_id, "state": state, "manifest": manifest(backup_id, started),
            "last_verification": {"result": "passed"} if verified else None}


def test_retention_keeps_generations_and_the_newest_verified(backup_utils):
    days = ["11-27", "11-26", "11-25", "11-20", "11-02", "10-15", "09-01"]
    entries = [entry(day, verified=(day == "09-01")) for day in days]
    keep, delete = backup_utils.retention_plan(entries, keep_daily=2, keep_weekly=2, keep_monthly=1)
    kept_days = sorted(backup_id[4:8] for backup_id in keep)
    # daily: 27, 26; weekly: the weeks of 27 and of 20; monthly: November (27); newest verified: 09-01
    assert kept_days == ["0901", "1120", "1126", "1127"]
    assert sorted(backup_id[4:8] for backup_id in delete) == ["1015", "1102", "1125"]


def test_retention_with_nothing_to_keep_still_keeps_the_newest_and_the_newest_verified(backup_utils):
    entries = [entry("11-27"), entry("11-26", verified=True), entry("11-25", verified=True)]
    keep, delete = backup_utils.retention_plan(entries, 0, 0, 0)
    assert set(keep) == {entries[0]["backup_id"], entries[1]["backup_id"]}
    assert delete == [entries[2]["backup_id"]]


def test_retention_ignores_incomplete_and_unreadable_backups(backup_utils):
    entries = [entry("11-27"), entry("11-20", state="incomplete"), {"backup_id": "x", "state": "unreadable"}]
    _, delete = backup_utils.retention_plan(entries, 0, 0, 0)
    assert delete == []


def test_row_count_comparison_names_each_difference(backup_utils):
    expected = {"public.a": 2, "public.b": 1, "public.c": 0}
    problems = backup_utils.compare_counts(expected, {"public.a": 2, "public.b": 0})
    assert problems == ["public.b: 0 rows, manifest says 1", "public.c: missing after the restore (manifest: 0 rows)"]


def test_listing_must_hold_the_data_of_every_counted_table(backup_utils):
    listing = "3; 0 16390 TABLE DATA public payments postgres\n"
    assert backup_utils.listing_problems(listing, {"public.payments": 1}) == []
    assert backup_utils.listing_problems(listing, {"auth.users": 1}) == [
        "auth.users: no TABLE DATA entry in the archive"]


def test_only_payops_scratch_databases_are_dropped(backup_utils):
    executed = []

    class Cursor:
        def execute(self, sql):
            executed.append(sql)

    with pytest.raises(backup_utils.BackupError, match="refusing to drop"):
        backup_utils.drop_scratch_database(Cursor(), "betaskill")
    backup_utils.drop_scratch_database(Cursor(), "payops_verify_x")
    assert executed == ['DROP DATABASE IF EXISTS "payops_verify_x" WITH (FORCE)']


class FakeS3:
    def __init__(self, fail_on_part=None):
        self.parts = {}
        self.aborted = False
        self.completed = None
        self.fail_on_part = fail_on_part

    def create_multipart_upload(self, **kwargs):
        self.create_args = kwargs
        return {"UploadId": "u1"}

    def upload_part(self, PartNumber, Body, **kwargs):
        if PartNumber == self.fail_on_part:
            raise ValueError("the network is gone")
        self.parts[PartNumber] = Body
        return {"ETag": f"e{PartNumber}"}

    def complete_multipart_upload(self, MultipartUpload, **kwargs):
        self.completed = MultipartUpload
        return {"VersionId": "v1"}

    def abort_multipart_upload(self, **kwargs):
        self.aborted = True


def test_the_writer_hashes_and_uploads_every_byte_in_order(backup_utils):
    data = bytes(range(256)) * 50_000  # 12.8 MB: three parts of 5 MiB
    client = FakeS3()
    stored = backup_utils.MultipartWriter(client, "b", "k/dump.zst", 5 * 1024 * 1024, sse="AES256").upload(
        io.BytesIO(data))
    assert stored["sha256"] == hashlib.sha256(data).hexdigest() and stored["size"] == len(data)
    assert b"".join(client.parts[n] for n in sorted(client.parts)) == data
    assert [p["PartNumber"] for p in client.completed["Parts"]] == [1, 2, 3]
    assert client.create_args["ServerSideEncryption"] == "AES256"


def test_a_failed_part_aborts_the_upload_and_never_completes_it(backup_utils):
    client = FakeS3(fail_on_part=2)
    with pytest.raises(ValueError, match="network"):
        backup_utils.MultipartWriter(client, "b", "k", 5 * 1024 * 1024).upload(io.BytesIO(b"x" * (12 * 1024 * 1024)))
    assert client.aborted and client.completed is None


def test_a_tool_that_failed_aborts_instead_of_completing(backup_utils):
    client = FakeS3()

    def pg_dump_failed():
        raise backup_utils.BackupError("pg_dump failed (exit 1)")

    with pytest.raises(backup_utils.BackupError):
        backup_utils.MultipartWriter(client, "b", "k", 5 * 1024 * 1024).upload(io.BytesIO(b"abc"), pg_dump_failed)
    assert client.aborted and client.completed is None
