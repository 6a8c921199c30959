"""The database trail's chain walk (module_utils/payops_audit.ChainWalk), its hash, the DSN's
description and the archive's month arithmetic: pure logic. The same walk against a real database,
archive and anchors is tests/integration/test_audit_db.py."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from ansible_collections.betaskill.payops.plugins.module_utils.payops_audit import (
    GENESIS,
    ChainWalk,
    canonical,
    describe_dsn,
    dsn_secrets,
    row_hash,
)
from ansible_collections.betaskill.payops.plugins.modules.audit_trail import add_months, month_start

AT = "2026-11-03T10:00:00.000000Z"


def chain(count: int) -> list[tuple[int, str, str, str, str]]:
    rows, prev = [], GENESIS
    for seq in range(1, count + 1):
        record = canonical({"event": "task", "task": f"step {seq}"})
        digest = row_hash(prev, seq, AT, record)
        rows.append((seq, AT, prev, digest, record))
        prev = digest
    return rows


def walk(rows, anchors=None, head=None) -> ChainWalk:
    walker = ChainWalk(anchors)
    for row in rows:
        walker.add(*row)
    last = rows[-1] if rows else (0, "", "", GENESIS, "")
    walker.finish(*(head or (last[0], last[3])))
    return walker


def test_the_hash_is_sha256_over_prev_seq_time_and_record_joined_by_newlines():
    expected = hashlib.sha256(f"{GENESIS}\n1\n{AT}\n{{}}".encode()).hexdigest()
    assert row_hash(GENESIS, 1, AT, "{}") == expected


def test_an_intact_chain_with_its_anchors_passes():
    rows = chain(5)
    walker = walk(rows, anchors={3: (rows[2][3], "a3"), 5: (rows[4][3], "a5")})
    assert walker.intact and walker.rows == 5 and walker.anchors_checked == 2


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda rows: [*rows[:2], (3, AT, rows[2][2], rows[2][3], '{"task":"x"}'), *rows[3:]], "row 3 was edited"),
    (lambda rows: rows[:2] + rows[3:], "row 3 missing (removed)"),
    (lambda rows: rows[:1] + rows[3:], "rows 2 to 3 missing (removed)"),
    (lambda rows: [*rows[:2], rows[3], rows[2], *rows[4:]], "comes again or out of order"),
    (lambda rows: [*rows[:3], rows[2], *rows[3:]], "row 3 comes again"),
])
def test_each_kind_of_damage_is_named(damage, expected):
    rows = chain(6)
    walker = walk(damage(rows), head=(6, rows[5][3]))
    assert not walker.intact
    assert any(expected in p["problem"] for p in walker.problems), walker.problems


def test_a_consistently_rewritten_chain_is_found_only_by_an_anchor():
    rows = chain(4)
    anchor = {4: (rows[3][3], "anchors/4")}
    forged, prev = [], GENESIS
    for seq, at, _prev, _hash, record in rows:
        record = record.replace("step 2", "nothing") if seq == 2 else record
        digest = row_hash(prev, seq, at, record)
        forged.append((seq, at, prev, digest, record))
        prev = digest
    assert walk(forged).intact, "without anchors a recomputed chain looks intact"
    walker = walk(forged, anchors=anchor)
    assert [p["problem"] for p in walker.problems] == [
        "table: row 4 is not the row anchored in anchors/4 (the chain was rewritten from here or before)"]


def test_rows_cut_from_the_end_show_against_the_head_and_against_a_later_anchor():
    rows = chain(5)
    walker = walk(rows[:3], head=(5, rows[4][3]))
    assert "the head records row 5, the trail ends at row 3" in walker.problems[0]["problem"]
    walker = walk(rows[:3], anchors={5: (rows[4][3], "anchors/5")})
    assert "records row 5, the trail ends at row 3: rows were removed from the end" in walker.problems[0]["problem"]


def test_problems_are_counted_beyond_those_kept():
    rows = chain(60)
    broken = [(seq, at, prev, "0" * 64, record) for seq, at, prev, _h, record in rows]
    walker = walk(broken, head=(60, "0" * 64))
    assert len(walker.problems) == ChainWalk.LIMIT and walker.problem_count > ChainWalk.LIMIT


def test_a_dsn_is_described_without_its_password_and_its_secrets_are_the_dsn_and_the_password():
    dsn = "postgresql://payops_audit:s3cr3t-pw@db.example.test:6543/postgres?sslmode=require"
    assert describe_dsn(dsn) == "postgresql://payops_audit@db.example.test:6543/postgres"
    assert dsn_secrets(dsn) == [dsn, "s3cr3t-pw"]
    assert "s3cr3t" not in describe_dsn("host=db user=u password=s3cr3t dbname=d")
    assert describe_dsn("postgresql://[not a dsn") == "the PostgreSQL audit sink (its DSN does not parse)"


def test_months_for_the_archive():
    assert month_start(datetime.datetime(2026, 12, 3, 7, tzinfo=datetime.UTC)) == datetime.datetime(
        2026, 12, 1, tzinfo=datetime.UTC)
    start = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
    assert add_months(start, 1) == datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    assert add_months(start, 2) == datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
    assert add_months(start, -11) == datetime.datetime(2025, 12, 1, tzinfo=datetime.UTC)
    assert add_months(start, 13) == datetime.datetime(2027, 12, 1, tzinfo=datetime.UTC)
    leap = datetime.datetime(2028, 2, 29, 12, tzinfo=datetime.UTC)
    assert add_months(leap, 12) == datetime.datetime(2029, 2, 28, 12, tzinfo=datetime.UTC)
    assert add_months(datetime.datetime(2027, 1, 31, tzinfo=datetime.UTC), 1).day == 28
