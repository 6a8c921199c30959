#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_trail
short_description: Verify, anchor and archive payops' audit trail in PostgreSQL (payops.audit_trail)
description:
  - The trail the betaskill.payops.audit callback writes with C(postgres_dsn) set - one row per event,
    numbered, stamped and hash-chained by the database (schema/migrations/0004_audit_trail.sql).
  - C(anchor) writes the chain's head (its last seq and hash) to an object in the bucket under S3
    Object Lock, where nobody who controls the database can change it. Nothing is written when the
    newest anchor already holds the head.
  - C(archive) copies each closed month (UTC) not archived yet to one object under Object Lock, kept
    O(retention_months) after the month ends, reads it back and checks it chains on from the month
    before, and records it in C(payops.audit_archives). Then it removes from the table the rows of
    months older than O(keep_months) that a verified archive holds, and anchors the head. Check mode
    names the months it would archive and the rows it would remove, and changes nothing.
  - C(verify) walks the whole chain - the archived months from S3, then the table - and compares it
    with every anchor. It names an edited, removed, inserted or reordered row, rows removed from the
    end, and a chain rewritten consistently from some row on (which no longer matches the anchors
    written before). It never fails the task for what it finds; O(fail_on_problem) does.
  - Objects are C(<prefix>/audit/anchors/<seq>-<hash>.json) and C(<prefix>/audit/archive/<YYYY-MM>.jsonl);
    an archive's lines are C({seq, recorded_at, prev, hash, record}), C(record) the event's JSON text.
author: payops contributors (!UNKNOWN)
options:
  action:
    description: What to do.
    type: str
    choices: [verify, anchor, archive]
    default: verify
  keep_months:
    description: C(archive) keeps this many months before the current one in the table (PCI DSS 10.5.1 - three at hand).
    type: int
    default: 3
  retention_months:
    description: How long S3 keeps an archive after its month ends, and an anchor after it is written (Object Lock).
    type: int
    default: 12
  lock_mode:
    description: The Object Lock mode; C(COMPLIANCE) cannot be shortened by anyone, C(GOVERNANCE) by special permission.
    type: str
    choices: [COMPLIANCE, GOVERNANCE]
    default: COMPLIANCE
  fail_on_problem:
    description: With C(verify), fail the task when the trail is not intact.
    type: bool
    default: false
extends_documentation_fragment:
  - betaskill.payops.payops_db
  - betaskill.payops.payops_s3
notes:
  - Takes the database options of the C(betaskill.payops.database) group and the bucket options of the
    C(betaskill.payops.s3) group (O(prefix) defaults to C(payops)); the role needs to read the trail,
    and for C(archive) to call C(payops.audit_prune) and write C(payops.audit_archives).
  - The bucket must have Object Lock enabled (only a new bucket can be given it).
requirements: [psycopg >= 3, boto3]
"""

EXAMPLES = r"""
- name: Anchor the audit trail's head in S3
  betaskill.payops.audit_trail:
    action: anchor
    bucket: payops-backups

- name: Verify the trail against the archive and the anchors
  betaskill.payops.audit_trail:
    action: verify
    bucket: payops-backups
  register: audit_verdict
"""

RETURN = r"""
intact:
  description: (verify) Whether the trail has no problem.
  type: bool
  returned: action is verify
problems:
  description: (verify) The first problems found, C({seq, problem}), in chain order.
  type: list
  elements: dict
  returned: action is verify
problem_count:
  description: (verify) How many problems in all.
  type: int
  returned: action is verify
rows:
  description: (verify) Rows walked - archived months and the table.
  type: int
  returned: action is verify
table_rows:
  description: Rows in payops.audit_trail now.
  type: int
  returned: always
archived_rows:
  description: (verify) Rows read from archive objects.
  type: int
  returned: action is verify
anchors:
  description: (verify) Anchors found; anchors_checked - those whose row was walked.
  type: int
  returned: action is verify
head:
  description: The chain's head, C({seq, hash}).
  type: dict
  returned: always
anchor:
  description: (anchor, archive) The anchor written (or that would be), C({key, seq, hash, written}).
  type: dict
  returned: action is anchor or archive
archived:
  description:
    - (archive) The months archived (or that would be),
      C({month, rows, first_seq, last_seq, key, retain_until, sha256}).
  type: list
  elements: dict
  returned: action is archive
pruned:
  description: (archive) Rows removed from the table (or that would be).
  type: int
  returned: action is archive
"""

import calendar
import datetime
import hashlib
import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_audit import GENESIS, ChainWalk, row_hash
from ansible_collections.betaskill.payops.plugins.module_utils.payops_db import (
    connect,
    db_argument_spec,
    first_line,
    psycopg,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_s3 import (
    error_code,
    is_s3_error,
    list_keys,
    s3_argument_spec,
    s3_client,
    s3_message,
    with_retries,
)

ROWS = (
    "SELECT seq, payops.audit_time(recorded_at) AS recorded_at, prev, hash, record::text AS record"
    " FROM payops.audit_trail"
)


def month_start(day):
    return datetime.datetime(day.year, day.month, 1, tzinfo=datetime.UTC)


def add_months(start, months):
    """The same day and time `months` later (or earlier), on the month's last day when it is shorter."""
    index = start.year * 12 + start.month - 1 + months
    year, month = index // 12, index % 12 + 1
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))


class AuditTrail:
    def __init__(self, module, conn, client):
        self.module = module
        self.conn = conn
        self.client = client
        self.params = module.params
        self.root = f"{self.params['prefix'].strip('/')}/audit"

    # --- S3 -----------------------------------------------------------------------------------

    def s3(self, call, doing, **kwargs):
        try:
            return with_retries(call, attempts=self.params["retries"], Bucket=self.params["bucket"], **kwargs)
        except Exception as exc:
            if is_s3_error(exc):
                self.module.fail_json(msg=s3_message(exc, self.params, doing), **self.facts())
            raise

    def keys(self, folder):
        try:
            return sorted(
                item["key"]
                for item in list_keys(
                    self.client, self.params["bucket"], f"{self.root}/{folder}/", self.params["retries"]
                )
            )
        except Exception as exc:
            if is_s3_error(exc):
                self.module.fail_json(msg=s3_message(exc, self.params, f"list {self.root}/{folder}/"), **self.facts())
            raise

    def put_locked(self, key, body, retain_until, metadata):
        return self.s3(
            self.client.put_object,
            f"write {key}",
            Key=key,
            Body=body,
            ChecksumAlgorithm="SHA256",
            ContentType="application/json",
            ObjectLockMode=self.params["lock_mode"],
            ObjectLockRetainUntilDate=retain_until,
            Metadata=metadata,
        )

    def read(self, key):
        return self.s3(self.client.get_object, f"read {key}", Key=key)["Body"].read()

    # --- the database -------------------------------------------------------------------------

    def head(self):
        row = self.conn.execute("SELECT seq, hash FROM payops.audit_head").fetchone()
        return {"seq": row["seq"], "hash": row["hash"]}

    def table_rows(self):
        return self.conn.execute("SELECT count(*) AS n FROM payops.audit_trail").fetchone()["n"]

    def facts(self):
        try:
            return {"head": self.head(), "table_rows": self.table_rows()}
        except psycopg.Error:
            return {}

    # --- anchor -------------------------------------------------------------------------------

    def anchor(self, written_now):
        head = self.head()
        key = f"{self.root}/anchors/{head['seq']:012d}-{head['hash']}.json"
        existing = self.keys("anchors")
        if head["seq"] == 0 or (existing and existing[-1] == key):
            return {"key": key, **head, "written": False}
        if not self.module.check_mode:
            body = {
                "format": "payops-audit-anchor/1",
                "seq": head["seq"],
                "hash": head["hash"],
                "database": self.conn.execute("SELECT current_database() AS db").fetchone()["db"],
                "written_at": written_now.isoformat(timespec="seconds"),
            }
            self.put_locked(
                key,
                (json.dumps(body, sort_keys=True) + "\n").encode(),
                add_months(written_now, self.params["retention_months"]),
                {"seq": str(head["seq"])},
            )
        return {"key": key, **head, "written": True}

    # --- archive ------------------------------------------------------------------------------

    def last_archive(self):
        row = self.conn.execute(
            "SELECT last_seq, last_hash FROM payops.audit_archives ORDER BY month DESC LIMIT 1"
        ).fetchone()
        return (row["last_seq"], row["last_hash"]) if row else (0, GENESIS)

    def closed_segments(self, now):
        """Each closed month's rows not archived yet: (month start, rows), oldest first. A month's
        rows are the contiguous seq range after the previous archive up to its last row."""
        current = month_start(now)
        last_seq, last_hash = self.last_archive()
        segments = []
        while True:
            first = self.conn.execute(
                "SELECT seq, recorded_at FROM payops.audit_trail WHERE seq > %s AND recorded_at < %s "
                "ORDER BY seq LIMIT 1",
                (last_seq, current),
            ).fetchone()
            if first is None:
                return segments
            month = month_start(first["recorded_at"].astimezone(datetime.UTC))
            end = self.conn.execute(
                "SELECT max(seq) AS seq FROM payops.audit_trail WHERE seq > %s AND recorded_at < %s",
                (last_seq, add_months(month, 1)),
            ).fetchone()["seq"]
            rows = self.conn.execute(f"{ROWS} WHERE seq > %s AND seq <= %s ORDER BY seq", (last_seq, end)).fetchall()
            walk = ChainWalk()
            walk.seq, walk.prev = last_seq, last_hash
            for row in rows:
                walk.add(row["seq"], row["recorded_at"], row["prev"], row["hash"], row["record"])
            if not walk.intact:
                self.module.fail_json(
                    msg=f"the trail of {month:%Y-%m} does not verify ({walk.problems[0]['problem']}): "
                    "nothing was archived; run audit:verify",
                    problems=walk.problems,
                )
            segments.append((month, rows))
            last_seq, last_hash = rows[-1]["seq"], rows[-1]["hash"]

    def archive(self, now):
        archived = []
        for month, rows in self.closed_segments(now):
            key = f"{self.root}/archive/{month:%Y-%m}.jsonl"
            body = "".join(
                json.dumps(
                    {
                        "seq": r["seq"],
                        "recorded_at": r["recorded_at"],
                        "prev": r["prev"],
                        "hash": r["hash"],
                        "record": r["record"],
                    },
                    sort_keys=True,
                )
                + "\n"
                for r in rows
            ).encode("utf-8")
            digest = hashlib.sha256(body).hexdigest()
            retain_until = add_months(add_months(month, 1), self.params["retention_months"])
            entry = {
                "month": f"{month:%Y-%m}",
                "rows": len(rows),
                "first_seq": rows[0]["seq"],
                "last_seq": rows[-1]["seq"],
                "key": key,
                "retain_until": retain_until.isoformat(),
                "sha256": digest,
            }
            archived.append(entry)
            if self.module.check_mode:
                continue
            version = self.upload(key, body, digest, retain_until, entry)
            if hashlib.sha256(self.read(key)).hexdigest() != digest:
                self.module.fail_json(
                    msg=f"the archive {key} does not read back as written: nothing was removed", archived=archived
                )
            self.conn.execute(
                "INSERT INTO payops.audit_archives (month, first_seq, last_seq, last_hash, row_count, object_key,"
                " version_id, sha256, retain_until, verified_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
                (
                    month.date(),
                    entry["first_seq"],
                    entry["last_seq"],
                    rows[-1]["hash"],
                    len(rows),
                    key,
                    version,
                    digest,
                    retain_until,
                ),
            )
        return archived

    def upload(self, key, body, digest, retain_until, entry):
        """Write the month's object; one already there (a run stopped before recording it) is taken
        when it holds exactly these rows, and refused otherwise: Object Lock keeps it either way."""
        try:
            found = with_retries(
                self.client.head_object, attempts=self.params["retries"], Bucket=self.params["bucket"], Key=key
            )
        except Exception as exc:
            if not (is_s3_error(exc) and error_code(exc) in ("404", "NoSuchKey", "NotFound")):
                if is_s3_error(exc):
                    self.module.fail_json(msg=s3_message(exc, self.params, f"look for {key}"))
                raise
            found = None
        if found is not None:
            if found.get("Metadata", {}).get("sha256") != digest:
                self.module.fail_json(
                    msg=f"{key} exists with other rows than the table's for {entry['month']}: "
                    "nothing was archived or removed; run audit:verify"
                )
            return found.get("VersionId")
        answer = self.put_locked(
            key,
            body,
            retain_until,
            {"sha256": digest, "first-seq": str(entry["first_seq"]), "last-seq": str(entry["last_seq"])},
        )
        return answer.get("VersionId")

    def prune(self, now, archived):
        """Rows of months before the kept ones that verified archives hold: how many were (or, in
        check mode, with the months just planned, would be) removed."""
        keep_from = add_months(month_start(now), -self.params["keep_months"])
        row = self.conn.execute(
            "SELECT max(last_seq) AS seq FROM payops.audit_archives WHERE verified_at IS NOT NULL AND month < %s",
            (keep_from.date(),),
        ).fetchone()
        candidates = [row["seq"]] if row["seq"] is not None else []
        if self.module.check_mode:
            candidates += [entry["last_seq"] for entry in archived if entry["month"] < f"{keep_from:%Y-%m}"]
        if not candidates:
            return 0
        through = max(candidates)
        count = self.conn.execute(
            "SELECT count(*) AS n FROM payops.audit_trail WHERE seq <= %s", (through,)
        ).fetchone()["n"]
        if count and not self.module.check_mode:
            self.conn.execute("SELECT payops.audit_prune(%s)", (through,))
        return count

    # --- verify -------------------------------------------------------------------------------

    def verify(self):
        anchors = {}
        for key in self.keys("anchors"):
            name = key.rsplit("/", 1)[1].removesuffix(".json")
            seq, _dash, digest = name.partition("-")
            if seq.isdigit() and len(digest) == 64:
                anchors[int(seq)] = (digest, key)
        walk = ChainWalk(anchors)
        table_first = self.conn.execute("SELECT min(seq) AS seq FROM payops.audit_trail").fetchone()["seq"]
        archived_rows = 0
        overlap = {}  # archived rows still in the table: seq -> hash, compared with the table's
        recorded = {
            r["object_key"]: r
            for r in self.conn.execute(
                "SELECT object_key, sha256, first_seq, last_seq FROM payops.audit_archives"
            ).fetchall()
        }
        for key in self.keys("archive"):
            body = self.read(key)
            known = recorded.pop(key, None)
            if known and hashlib.sha256(body).hexdigest() != known["sha256"]:
                walk.problem(
                    known["first_seq"], f"{key} is not the archive payops.audit_archives recorded (SHA-256 differs)"
                )
            source = f"archive {key.rsplit('/', 1)[1]}"
            for number, line in enumerate(body.decode("utf-8", "replace").splitlines(), start=1):
                try:
                    item = json.loads(line)
                    values = (int(item["seq"]), item["recorded_at"], item["prev"], item["hash"], item["record"])
                except (ValueError, KeyError, TypeError):
                    walk.problem(walk.seq + 1, f"{source}: line {number} is not an audit row")
                    continue
                archived_rows += 1
                walk.add(*values, source=source)
                if table_first is not None and values[0] >= table_first:
                    overlap[values[0]] = values[3]
        for key, known in recorded.items():
            walk.problem(known["first_seq"], f"{key}, recorded in payops.audit_archives, is missing from the bucket")
        table = 0
        with self.conn.cursor(name="payops_audit_verify") as cursor:
            cursor.itersize = 5000
            cursor.execute(f"{ROWS} ORDER BY seq")
            for row in cursor:
                table += 1
                if row["seq"] in overlap:
                    if overlap.pop(row["seq"]) != row["hash"]:
                        walk.problem(row["seq"], f"table: row {row['seq']} differs from its archived copy")
                    elif row_hash(row["prev"], row["seq"], row["recorded_at"], row["record"]) != row["hash"]:
                        walk.problem(
                            row["seq"], f"table: row {row['seq']} was edited (its content does not match its hash)"
                        )
                    continue
                walk.add(row["seq"], row["recorded_at"], row["prev"], row["hash"], row["record"])
        for seq in sorted(overlap):
            walk.problem(seq, f"table: row {seq}, archived and not yet due for removal, is missing")
        head = self.head()
        walk.finish(head["seq"], head["hash"])
        return {
            "intact": walk.intact,
            "problems": walk.problems,
            "problem_count": walk.problem_count,
            "rows": walk.rows,
            "table_rows": table,
            "archived_rows": archived_rows,
            "anchors": len(anchors),
            "anchors_checked": walk.anchors_checked,
            "head": head,
        }


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(s3_argument_spec())
    argument_spec.update(
        action=dict(type="str", choices=["verify", "anchor", "archive"], default="verify"),
        keep_months=dict(type="int", default=3),
        retention_months=dict(type="int", default=12),
        lock_mode=dict(type="str", choices=["COMPLIANCE", "GOVERNANCE"], default="COMPLIANCE"),
        fail_on_problem=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    if params["keep_months"] < 0 or params["retention_months"] < 1:
        module.fail_json(
            msg="keep_months must be 0 or more and retention_months 1 or more, got "
            f"{params['keep_months']} and {params['retention_months']}"
        )
    client = s3_client(module)
    conn = connect(module)
    trail = AuditTrail(module, conn, client)
    now = datetime.datetime.now(datetime.UTC)
    try:
        if params["action"] == "verify":
            result = trail.verify()
            conn.rollback()
            if params["fail_on_problem"] and not result["intact"]:
                module.fail_json(msg=f"the audit trail is not intact: {result['problems'][0]['problem']}", **result)
            module.exit_json(changed=False, **result)
        if params["action"] == "anchor":
            anchor = trail.anchor(now)
            conn.commit()
            module.exit_json(changed=anchor["written"], anchor=anchor, **trail.facts())
        archived = trail.archive(now)
        conn.commit()
        pruned = trail.prune(now, archived)
        conn.commit()
        anchor = trail.anchor(now)
        conn.commit()
        module.exit_json(
            changed=bool(archived or pruned or anchor["written"]),
            archived=archived,
            pruned=pruned,
            anchor=anchor,
            **trail.facts(),
        )
    except psycopg.Error as exc:
        module.fail_json(msg=f"the audit trail in the database: {first_line(exc)}")
    finally:
        conn.close()


if __name__ == "__main__":
    main()
