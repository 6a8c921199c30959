# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The audit trail's hash chain, the one definition: the betaskill.payops.audit callback writes with
it and `payops audit verify` checks with it.

Each line is a JSON object carrying `prev` (the previous line's hash) and `hash`: SHA-256 over
`prev`, a newline and the line's canonical JSON without `hash`. The first line's `prev` is GENESIS.
"""

from __future__ import annotations

import hashlib
import json

GENESIS = "0" * 64


def chain_hash(prev, record):
    """The hash of one line: the previous hash and the line's own canonical JSON (without `hash`)."""
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256((prev + "\n" + body).encode("utf-8")).hexdigest()


# --- the trail in PostgreSQL (schema/migrations/0004_audit_trail.sql) ------------------------------
#
# A row's hash is SHA-256 over its prev, seq, recorded_at (payops.audit_time: UTC, microseconds) and
# the event's JSON text, joined by newlines; the database computes it when the row is appended and
# verification computes it again here. The same rows, as lines of an archive object, are JSON
# objects {seq, recorded_at, prev, hash, record} with record the event's JSON text, unchanged.


def canonical(record):
    """The event's JSON text as the callback sends it (and the database keeps it)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def row_hash(prev, seq, recorded_at, record_text):
    """payops.audit_hash: the hash of one row of payops.audit_trail."""
    body = f"{prev}\n{seq}\n{recorded_at}\n{record_text}"
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class ChainWalk:
    """Walks rows of the database trail in seq order (archived months first, then the table) and
    names what does not fit: a gap or a repeat in seq (rows removed or inserted), a prev that is not
    the hash before it (inserted or reordered), a hash that is not its content's (edited), and an
    anchor, written to S3 when that row was the head, whose hash the row no longer has (the chain was
    rewritten, however consistently). Feed it rows with add(), then finish() with the head."""

    LIMIT = 20  # problems kept; the count goes on

    def __init__(self, anchors=None):
        self.anchors = dict(anchors or {})  # seq -> (hash, where the anchor is)
        self.prev = GENESIS
        self.seq = 0
        self.rows = 0
        self.anchors_checked = 0
        self.problems = []
        self.problem_count = 0

    def problem(self, seq, text):
        self.problem_count += 1
        if len(self.problems) < self.LIMIT:
            self.problems.append({"seq": seq, "problem": text})

    def add(self, seq, recorded_at, prev, stated, record_text, source="table"):
        self.rows += 1
        if seq != self.seq + 1:
            if seq <= self.seq:
                self.problem(seq, f"{source}: row {seq} comes again or out of order after row {self.seq}")
            else:
                missing = f"row {self.seq + 1}" if seq == self.seq + 2 else f"rows {self.seq + 1} to {seq - 1}"
                self.problem(seq, f"{source}: {missing} missing (removed)")
        if prev != self.prev:
            self.problem(seq, f"{source}: row {seq} does not follow the row before it "
                              "(a row was removed, inserted or reordered here)")
        if row_hash(prev, seq, recorded_at, record_text) != stated:
            self.problem(seq, f"{source}: row {seq} was edited (its content does not match its hash)")
        anchor = self.anchors.get(seq)
        if anchor is not None:
            self.anchors_checked += 1
            if anchor[0] != stated:
                self.problem(seq, f"{source}: row {seq} is not the row anchored in {anchor[1]} "
                                  "(the chain was rewritten from here or before)")
        self.seq = max(self.seq, seq)
        self.prev = stated

    def finish(self, head_seq, head_hash):
        """The table's head row must be the last row walked; no anchor may lie beyond it."""
        if (head_seq, head_hash) != (self.seq, self.prev):
            self.problem(self.seq + 1, f"the head records row {head_seq}, the trail ends at row {self.seq}: "
                                       "rows were removed from the end, or the head was changed")
        beyond = sorted(seq for seq in self.anchors if seq > self.seq)
        if beyond:
            self.problem(beyond[0], f"an anchor in {self.anchors[beyond[0]][1]} records row {beyond[0]}, "
                                    f"the trail ends at row {self.seq}: rows were removed from the end")

    @property
    def intact(self):
        return self.problem_count == 0


# --- the PostgreSQL sink: shared by the callback (writes) and the audit_sink lookup (checks) -------

APPEND = "SELECT seq FROM payops.audit_append(%s::json)"
PROBE = """
SELECT CASE WHEN to_regprocedure('payops.audit_append(json)') IS NULL THEN 'not-installed'
            WHEN has_function_privilege(to_regprocedure('payops.audit_append(json)')::oid, 'EXECUTE') THEN 'writable'
            ELSE 'refused' END AS state
"""
# What a state means, for the operator.
SINK_PROBLEMS = {
    "not-installed": "payops.audit_append does not exist in that database: run payops:install",
    "refused": "the DSN's role may not execute payops.audit_append: grant it payops_audit_writer",
}


def dsn_parts(dsn):
    """The DSN's parameters (libpq's own parser), or None when it does not parse."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        return conninfo_to_dict(dsn)
    except Exception:
        return None


def describe_dsn(dsn):
    """Where the sink is, for messages: user, host, port and database, never the password."""
    parts = dsn_parts(dsn)
    if parts is None:
        return "the PostgreSQL audit sink (its DSN does not parse)"
    user = parts.get("user") or "(default user)"
    host = parts.get("host") or parts.get("hostaddr") or "(local socket)"
    port = parts.get("port") or "5432"
    return f"postgresql://{user}@{host}:{port}/{parts.get('dbname') or '(default database)'}"


def dsn_secrets(dsn):
    """The values a redactor must learn from a DSN: the DSN itself and its password."""
    parts = dsn_parts(dsn) or {}
    return [value for value in (dsn, parts.get("password")) if value]


def connect_sink(dsn, timeout=5):
    """An autocommit connection to the sink: each append is its own transaction, durable when it returns."""
    import psycopg

    parts = dsn_parts(dsn) or {}
    extra = {} if parts.get("connect_timeout") else {"connect_timeout": timeout}
    return psycopg.connect(dsn, autocommit=True, application_name="payops-audit", **extra)


def probe_sink(dsn, timeout=5):
    """(state, problem): 'writable' and None, or 'not-installed' / 'refused' / 'unreachable' with
    the reason in one line. Writes nothing."""
    try:
        import psycopg
    except ImportError:
        return "unreachable", "psycopg (version 3) is not installed on the controller"
    if dsn_parts(dsn) is None:
        return "unreachable", "PAYOPS_AUDIT_DSN / [callback_payops_audit] postgres_dsn does not parse as a DSN"
    try:
        with connect_sink(dsn, timeout) as conn:
            state = conn.execute(PROBE).fetchone()[0]
    except psycopg.errors.InsufficientPrivilege:
        state = "refused"
    except psycopg.Error as exc:
        return "unreachable", f"cannot connect to {describe_dsn(dsn)}: {sink_error(exc)}"
    return state, SINK_PROBLEMS.get(state)


def sink_error(exc):
    """psycopg's first line, never the DSN."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__
