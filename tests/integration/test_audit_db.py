"""The audit trail in PostgreSQL (payops.audit_trail, schema/migrations/0004_audit_trail.sql): the
callback's database sink, its anchors and archive in the sandbox's bucket under S3 Object Lock,
and the verification that spans them.

Each test has a database of its own in the sandbox's cluster (BetaSkill's tables and the payops
schema, installed by the sandbox's own code), so its chain starts at row 1 and no other run writes
to it. The callback writes as the sandbox's payops_audit login (a member of payops_audit_writer:
it may append and nothing else); the procedures read the trail as the inventory's user.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from ansible_collections.betaskill.payops.plugins.module_utils.payops_audit import GENESIS, canonical, row_hash
from conftest import ROOT, payops, wait_until
from psycopg.rows import dict_row

pytestmark = [pytest.mark.sandbox]

BETASKILL_SQL = ROOT / "src" / "payops" / "sandbox" / "betaskill.sql"


class TrailDB:
    """A database of the sandbox's cluster for one test, dropped at the end."""

    def __init__(self, status: dict, install: bool = True) -> None:
        from payops.sandbox.services.postgres import install_payops_schema

        self.status = status
        self.name = f"payops_audit_{uuid.uuid4().hex[:10]}"
        self.prefix = f"tests/{self.name}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        with psycopg.connect(self.dsn(), autocommit=True, row_factory=dict_row) as conn:
            conn.execute(BETASKILL_SQL.read_text())
            if install:
                install_payops_schema(conn, run_id="test-audit-db")

    def dsn(self, db: str | None = None) -> str:
        s = self.status
        return (
            f"postgresql://{s['postgres_user']}:{s['postgres_password']}@{s['postgres_host']}:{s['postgres_port']}/"
            f"{db or self.name}"
        )

    def audit_dsn(self, password: str | None = None) -> str:
        s = self.status
        return (
            f"postgresql://{s['audit_db_user']}:{password or s['audit_db_password']}@{s['postgres_host']}:"
            f"{s['postgres_port']}/{self.name}"
        )

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(text) for (text,) in self.query("SELECT record::text FROM payops.audit_trail ORDER BY seq")]

    def drop(self) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture
def trail(sandbox) -> Iterator[TrailDB]:
    db = TrailDB(sandbox)
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture(scope="module")
def bucket(sandbox):
    client = boto3.client(
        "s3",
        endpoint_url=sandbox["s3_endpoint"],
        region_name=sandbox["s3_region"],
        aws_access_key_id=sandbox["aws_access_key_id"],
        aws_secret_access_key=sandbox["aws_secret_access_key"],
    )
    return client


def locked(client, bucket: str, key: str) -> tuple[str, datetime.datetime]:
    """The object's Object Lock mode and retain-until date, as S3 states them on the object (moto
    answers GetObjectRetention with the object's body)."""
    head = client.head_object(Bucket=bucket, Key=key)
    return head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]


def run(
    db: TrailDB, command: str, *extra: str, tmp: Path, dsn: str | None = None, check_mode: bool = False
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """payops run against the test's database, audited to it (dsn) or else to a file in tmp."""
    env = {"PAYOPS_AUDIT_DSN": dsn or "", "PAYOPS_AUDIT_LOG": str(tmp / "audit.jsonl")}
    result = payops(
        "run",
        command,
        "-e",
        f"payops_db_name={db.name}",
        "-e",
        f"audit_s3_prefix={db.prefix}",
        *extra,
        *(["--check"] if check_mode else []),
        env=env,
        check=False,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    for secret in (db.status["audit_db_password"], db.status["postgres_password"]):
        assert secret not in output, "a database password was shown"
    folder = Path(output.rsplit("run artefacts in ", 1)[1].split()[0])
    return result, folder


def report(folder: Path, name: str) -> dict[str, Any]:
    return json.loads(next(folder.rglob(f"{name}.json")).read_text())


def module(db: TrailDB, **args: Any) -> tuple[int, dict[str, Any]]:
    """betaskill.payops.audit_trail as an ad-hoc task (a real module process): (rc, result)."""
    s = db.status
    env = {
        **os.environ,
        "PGHOST": s["postgres_host"],
        "PGPORT": str(s["postgres_port"]),
        "PGDATABASE": db.name,
        "PGUSER": s["postgres_user"],
        "PGPASSWORD": s["postgres_password"],
        "AWS_ENDPOINT_URL": s["s3_endpoint"],
        "AWS_ACCESS_KEY_ID": s["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": s["aws_secret_access_key"],
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PAYOPS_AUDIT_DSN": "",
    }
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible")),
            "localhost",
            "-c",
            "local",
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-m",
            "betaskill.payops.audit_trail",
            "-a",
            json.dumps({"bucket": s["s3_bucket"], "prefix": db.prefix, "ssl_mode": "disable", **args}),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "=>" in result.stdout, result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout.split("=>", 1)[1])


def playbook(tmp: Path, name: str, tasks: int, task: str) -> Path:
    path = tmp / f"{name}.yml"
    body = "".join(f"    - name: step {n}\n" + textwrap.indent(task, "      ") for n in range(1, tasks + 1))
    path.write_text(f"- name: {name}\n  hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n{body}")
    return path


def ansible_playbook(path: Path, dsn: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PAYOPS_AUDIT_DSN": dsn, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            "localhost,",
            str(path),
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def task_names(db: TrailDB, run_id: str | None = None) -> list[str]:
    return [r["task"] for r in db.records() if r["event"] == "task" and (run_id is None or r["run_id"] == run_id)]


# --- the sink -----------------------------------------------------------------------------------


def test_concurrent_runs_make_one_chain_in_the_table_and_anchors_and_verify_see_it(trail, tmp_path, bucket):
    """Two playbooks at once, each audited to the table: every event of both is a row, and the rows
    make one chain; audit:anchor writes the head under Object Lock, audit:verify finds it intact."""
    book = playbook(tmp_path, "concurrent", 25, "ansible.builtin.debug:\n  msg: hello\n")
    runs = [ansible_playbook(book, trail.audit_dsn()) for _ in range(2)]
    outputs = [process.communicate(timeout=300)[0] for process in runs]
    assert [process.returncode for process in runs] == [0, 0], outputs
    records = trail.records()
    by_run: dict[str, list[str]] = {}
    for record in records:
        by_run.setdefault(record["run_id"], []).append(record["event"])
    assert sorted(len(events) for events in by_run.values()) == [27, 27], by_run
    assert all(events[0] == "run_start" and events[-1] == "run_end" for events in by_run.values())
    seqs = [seq for (seq,) in trail.query("SELECT seq FROM payops.audit_trail ORDER BY seq")]
    assert seqs == list(range(1, 55)), "the sequence has gaps or repeats"

    result, folder = run(trail, "audit:anchor", tmp=tmp_path, dsn=trail.audit_dsn())
    assert result.returncode == 0, result.stdout
    anchor = report(folder, "audit-anchor")["details"]["anchor"]
    assert anchor["written"] and anchor["seq"] >= 54
    key = anchor["key"]
    mode, until = locked(bucket, trail.status["s3_bucket"], key)
    assert mode == "COMPLIANCE" and until > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=360)
    # The anchor run itself is in the table, run_start to run_end, with who ran it and how.
    mine = [r for r in trail.records() if r.get("command") == "audit:anchor"]
    assert mine[0]["event"] == "run_start" and mine[-1]["event"] == "run_end" and mine[-1]["result"] == "successful"
    assert mine[0]["source"] == "payops" and mine[0]["operator"]
    text = json.dumps(trail.records())
    assert trail.status["audit_db_password"] not in text and trail.status["postgres_password"] not in text

    result, folder = run(trail, "audit:verify", tmp=tmp_path)
    assert result.returncode == 0, result.stdout
    verdict = report(folder, "audit-verify")
    assert verdict["details"]["problem_count"] == 0
    chain = next(row for row in verdict["rows"] if row["component"] == "chain")
    assert chain["state"] == "healthy" and chain["value"].startswith(f"{len(trail.records())} rows")

    # The runs above moved the head on: one anchor more, then none while nothing is appended.
    rc, first = module(trail, action="anchor")
    assert rc == 0 and first["changed"] is True and first["anchor"]["key"] != key
    rc, again = module(trail, action="anchor")
    assert rc == 0 and again["changed"] is False and again["anchor"]["key"] == first["anchor"]["key"]


def test_a_run_killed_mid_way_leaves_every_finished_task_in_the_table(trail, tmp_path):
    book = playbook(tmp_path, "killed", 40, "ansible.builtin.command: sleep 0.2\nchanged_when: false\n")
    process = ansible_playbook(book, trail.audit_dsn())
    try:
        wait_until(
            lambda: "step 5" in task_names(trail),
            timeout=120,
            interval=0.05,
            what="step 5 recorded while the run goes on",
        )
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
    names = task_names(trail)
    assert len(names) >= 5 and names == [f"step {n}" for n in range(1, len(names) + 1)], names
    assert len(names) < 40, "the run finished before it was killed"
    assert [r["event"] for r in trail.records()][-1] == "task", "a run_end was recorded for a killed run"
    rc, verdict = module(trail, action="verify")
    assert rc == 0 and verdict["intact"], verdict["problems"]


def test_mutating_procedures_refuse_an_unwritable_sink_and_emergency_switches_go_ahead_loudly(trail, tmp_path, bucket):
    wrong = trail.audit_dsn(password="not-the-password")
    result, _folder = run(trail, "audit:anchor", tmp=tmp_path, dsn=wrong)
    assert result.returncode != 0
    assert "cannot be written" in result.stdout and f"/{trail.name}" in result.stdout
    assert "not-the-password" not in result.stdout + result.stderr
    listed = bucket.list_objects_v2(Bucket=trail.status["s3_bucket"], Prefix=trail.prefix)
    assert listed.get("KeyCount", 0) == 0, "audit:anchor wrote to the bucket without an audit trail"

    reason = f"audit sink down drill {uuid.uuid4().hex[:6]}"
    try:
        result, folder = run(trail, "payment:emergency-stop", "-e", f"reason={reason}", tmp=tmp_path, dsn=wrong)
        assert result.returncode == 0, result.stdout
        assert "THE AUDIT TRAIL CANNOT BE WRITTEN" in result.stdout
        rows = {row["component"]: row for row in report(folder, "switch-payments_stopped-on")["rows"]}
        assert rows["audit trail"]["value"] == "NOT RECORDED" and rows["audit trail"]["state"] == "degraded"
        assert rows["database switch"]["state"] == "on"
        events = trail.query("SELECT enabled, reason, set_by FROM payops.switch_events WHERE name = 'payments_stopped'")
        assert [(enabled, why) for enabled, why, _by in events] == [(True, reason)]
        assert events[0][2], "switch_events does not say who"
        assert "NOT in payops.audit_trail" in result.stdout + result.stderr
    finally:
        recovered, _ = run(trail, "system:recover", tmp=tmp_path, dsn=trail.audit_dsn())
    assert recovered.returncode == 0, recovered.stdout
    assert trail.query("SELECT count(*) FROM payops.switches WHERE enabled") == [(0,)]


def test_payops_install_on_a_database_without_the_schema_is_audited_once_the_table_exists(sandbox, tmp_path):
    """A database sink whose table payops:install is about to create: the install is not refused,
    and its events reach the table as soon as the migration that creates it has run."""
    fresh = TrailDB(sandbox, install=False)
    try:
        result, _folder = run(fresh, "payops:install", tmp=tmp_path, dsn=fresh.audit_dsn())
        assert result.returncode == 0, result.stdout
        events = [(r["event"], r.get("command")) for r in fresh.records()]
        assert events[0] == ("run_start", "payops:install") and events[-1][0] == "run_end", events
        assert "Install | Apply the missing migrations, each in its own transaction" in task_names(fresh)
    finally:
        fresh.drop()


# --- tampering ------------------------------------------------------------------------------------


def fill(db: TrailDB, count: int) -> None:
    with psycopg.connect(db.audit_dsn(), autocommit=True) as conn:
        for n in range(1, count + 1):
            conn.execute("SELECT payops.audit_append(%s::json)", (canonical({"event": "task", "task": f"row {n}"}),))


def as_owner(db: TrailDB, *statements: str) -> None:
    """What someone who owns the database can do: with triggers off (session_replication_role)."""
    with psycopg.connect(db.dsn(), autocommit=False) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)
        conn.commit()


def rewrite_chain(db: TrailDB) -> None:
    """Recompute every hash from the first row on, as an attacker who edited a row would."""
    with psycopg.connect(db.dsn(), autocommit=False) as conn:
        conn.execute("SET session_replication_role = replica")
        rows = conn.execute(
            "SELECT seq, payops.audit_time(recorded_at), record::text FROM payops.audit_trail ORDER BY seq"
        ).fetchall()
        prev = GENESIS
        for seq, at, record in rows:
            digest = row_hash(prev, seq, at, record)
            conn.execute("UPDATE payops.audit_trail SET prev = %s, hash = %s WHERE seq = %s", (prev, digest, seq))
            prev = digest
        conn.execute("UPDATE payops.audit_head SET seq = %s, hash = %s", (rows[-1][0], prev))
        conn.commit()


ATTACKS = {
    "edited": (
        ['UPDATE payops.audit_trail SET record = \'{"event":"task","task":"nothing to see"}\' WHERE seq = 4'],
        "row 4 was edited",
    ),
    "deleted": (["DELETE FROM payops.audit_trail WHERE seq = 4"], "row 4 missing (removed)"),
    "inserted": (
        [
            "UPDATE payops.audit_trail SET seq = seq + 1000 WHERE seq >= 4",
            "UPDATE payops.audit_trail SET seq = seq - 999 WHERE seq > 1000",
            "INSERT INTO payops.audit_trail SELECT 4, recorded_at, hash, repeat('a', 64), '{\"event\":\"forged\"}'"
            " FROM payops.audit_trail WHERE seq = 3",
        ],
        "row 5 does not follow the row before it",
    ),
    "reordered": (
        [
            "UPDATE payops.audit_trail SET seq = CASE seq WHEN 4 THEN 1005 ELSE 1004 END WHERE seq IN (4, 5)",
            "UPDATE payops.audit_trail SET seq = seq - 1000 WHERE seq > 1000",
        ],
        "row 4 does not follow the row before it",
    ),
    "cut at the end": (
        [
            "DELETE FROM payops.audit_trail WHERE seq > 6",
            "UPDATE payops.audit_head SET seq = 6, hash = (SELECT hash FROM payops.audit_trail WHERE seq = 6)",
        ],
        "the trail ends at row 6: rows were removed from the end",
    ),
}


def test_verify_names_each_kind_of_tampering_and_a_consistently_rewritten_chain(trail):
    fill(trail, 8)
    rc, anchored = module(trail, action="anchor")
    assert rc == 0 and anchored["anchor"]["seq"] == 8
    rc, verdict = module(trail, action="verify")
    assert rc == 0 and verdict["intact"] and verdict["anchors_checked"] == 1, verdict
    original = trail.query("SELECT seq, recorded_at, prev, hash, record::text FROM payops.audit_trail ORDER BY seq")
    head = trail.query("SELECT seq, hash FROM payops.audit_head")[0]

    def restore() -> None:
        with psycopg.connect(trail.dsn(), autocommit=False) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute("DELETE FROM payops.audit_trail")
            for row in original:
                conn.execute("INSERT INTO payops.audit_trail VALUES (%s, %s, %s, %s, %s)", row)
            conn.execute("UPDATE payops.audit_head SET seq = %s, hash = %s", head)
            conn.commit()

    for attack, (statements, expected) in ATTACKS.items():
        as_owner(trail, *statements)
        rc, verdict = module(trail, action="verify", fail_on_problem=True)
        assert rc != 0 and not verdict["intact"], f"{attack}: not found"
        assert any(expected in problem["problem"] for problem in verdict["problems"]), (attack, verdict["problems"])
        restore()

    # The whole table rewritten with a recomputed chain: the table alone looks intact, the anchor does not.
    as_owner(trail, 'UPDATE payops.audit_trail SET record = \'{"event":"task","task":"nothing"}\' WHERE seq = 2')
    rewrite_chain(trail)
    rc, verdict = module(trail, action="verify")
    assert not verdict["intact"]
    assert [p["problem"] for p in verdict["problems"]] == [
        "table: row 8 is not the row anchored in "
        f"{anchored['anchor']['key']} (the chain was rewritten from here or before)"
    ]


def test_the_table_refuses_update_delete_and_truncate(trail):
    fill(trail, 2)
    for statement in (
        "UPDATE payops.audit_trail SET record = '{}'",
        "DELETE FROM payops.audit_trail",
        "TRUNCATE payops.audit_trail",
    ):
        with pytest.raises(psycopg.Error, match="append-only") as refused:
            trail.query(statement)
        assert refused.value.sqlstate == "PA001"
    with pytest.raises(psycopg.Error, match="no verified archive holds audit row 1") as refused:
        trail.query("SELECT payops.audit_prune(1)")
    assert refused.value.sqlstate == "PA002"
    with pytest.raises(psycopg.errors.InsufficientPrivilege), psycopg.connect(trail.audit_dsn()) as conn:
        conn.execute("SELECT count(*) FROM payops.audit_trail")
    assert trail.query("SELECT count(*) FROM payops.audit_trail") == [(2,)]


# --- archive --------------------------------------------------------------------------------------


def backdated(db: TrailDB, months: dict[str, int]) -> None:
    """Rows dated in past months (as a trail a year old has them), chained as the database chains them."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        for month, count in months.items():
            for n in range(count):
                at = f"{month}-10 12:00:0{n}+00"
                conn.execute(
                    "WITH h AS (SELECT seq, hash FROM payops.audit_head),"
                    " r AS (INSERT INTO payops.audit_trail SELECT h.seq + 1, %(at)s::timestamptz, h.hash,"
                    "   payops.audit_hash(h.hash, h.seq + 1, payops.audit_time(%(at)s::timestamptz), %(rec)s),"
                    "   %(rec)s::json"
                    "   FROM h RETURNING seq, hash)"
                    " UPDATE payops.audit_head SET seq = r.seq, hash = r.hash FROM r",
                    {"at": at, "rec": canonical({"event": "task", "task": f"{month} #{n}"})},
                )


def months_ago(count: int) -> str:
    today = datetime.datetime.now(datetime.UTC)
    index = today.year * 12 + today.month - 1 - count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def test_archive_keeps_closed_months_under_object_lock_removes_only_old_archived_rows_and_verify_spans_both(
    trail, tmp_path, bucket
):
    old, older, recent = months_ago(5), months_ago(4), months_ago(1)
    backdated(trail, {old: 3, older: 2, recent: 2})
    fill(trail, 3)  # this month's: never archived yet
    name = trail.status["s3_bucket"]

    result, folder = run(trail, "audit:archive", check_mode=True, tmp=tmp_path)
    assert result.returncode == 0, result.stdout
    details = report(folder, "audit-archive")["details"]
    assert [(m["month"], m["rows"]) for m in details["archived"]] == [(old, 3), (older, 2), (recent, 2)]
    assert details["pruned"] == 5
    assert bucket.list_objects_v2(Bucket=name, Prefix=trail.prefix).get("KeyCount", 0) == 0, "check mode wrote"
    assert trail.query("SELECT count(*) FROM payops.audit_trail") == [(10,)]
    assert trail.query("SELECT count(*) FROM payops.audit_archives") == [(0,)]

    result, folder = run(trail, "audit:archive", tmp=tmp_path)
    assert result.returncode == 0, result.stdout
    for month, rows in ((old, 3), (older, 2), (recent, 2)):
        key = f"{trail.prefix}/audit/archive/{month}.jsonl"
        lines = bucket.get_object(Bucket=name, Key=key)["Body"].read().decode().splitlines()
        assert [json.loads(json.loads(line)["record"])["task"] for line in lines] == [
            f"{month} #{n}" for n in range(rows)
        ]
        mode, until = locked(bucket, name, key)
        month_end = datetime.datetime.fromisoformat(f"{month}-01T00:00:00+00:00") + datetime.timedelta(days=28)
        assert mode == "COMPLIANCE" and until >= month_end + datetime.timedelta(days=365)
    assert trail.query(
        "SELECT to_char(month, 'YYYY-MM'), row_count, verified_at IS NOT NULL FROM payops.audit_archives ORDER BY month"
    ) == [(old, 3, True), (older, 2, True), (recent, 2, True)]
    # The two months older than the three kept left the table; the recent one and this month's stay.
    assert trail.query("SELECT min(seq), count(*) FROM payops.audit_trail") == [(6, 5)]

    rc, verdict = module(trail, action="verify")
    assert rc == 0 and verdict["intact"], verdict["problems"]
    assert (verdict["archived_rows"], verdict["table_rows"], verdict["rows"]) == (7, 5, 10)

    rc, again = module(trail, action="archive")
    assert rc == 0 and again["changed"] is False and again["archived"] == [] and again["pruned"] == 0

    # A new version of an archived month (versioning lets anyone with write access add one): found.
    key = f"{trail.prefix}/audit/archive/{old}.jsonl"
    forged = bucket.get_object(Bucket=name, Key=key)["Body"].read().replace(b"#1", b"#9")
    bucket.put_object(Bucket=name, Key=key, Body=forged)
    rc, verdict = module(trail, action="verify")
    problems = [p["problem"] for p in verdict["problems"]]
    assert not verdict["intact"] and any("not the archive payops.audit_archives recorded" in p for p in problems), (
        problems
    )
