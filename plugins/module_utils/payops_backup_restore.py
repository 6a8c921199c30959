# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring a database backup: streaming an object through zstd into pg_restore, judging the
result against the manifest, and the payops_* scratch databases restores go into."""

from __future__ import annotations

import re
import subprocess

from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import BackupError
from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_stream import first_lines, stream_object
from ansible_collections.betaskill.payops.plugins.module_utils.payops_pgtools import quote_ident


def pipe_object(client, bucket, key, compression, command, env, attempts=4):
    """Stream an object from S3 through `zstd -d` into command's stdin, hashing every byte read.

    Nothing is written to local disk but the command's own output. Returns a dict with size,
    sha256, the command's exit code, stdout and stderr (text). A command that stops reading early
    (pg_restore --list has what it needs) is not an error; a decoder failure while the command
    still read is."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as zerr:
        decoder = None
        if compression == "zstd":
            # pylint: disable-next=ansible-bad-function  # a pipeline (S3 -> zstd -> pg_restore): run_command cannot stream
            decoder = subprocess.Popen(["zstd", "-d", "-q", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=zerr)
            # pylint: disable-next=ansible-bad-function
            consumer = subprocess.Popen(command, stdin=decoder.stdout, stdout=out, stderr=err, env=env)
            decoder.stdout.close()
            feed = decoder.stdin
        else:
            # pylint: disable-next=ansible-bad-function
            consumer = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env)
            feed = consumer.stdin
        try:
            size, digest, sink_error = stream_object(client, bucket, key, sink=feed.write, attempts=attempts)
            try:
                feed.close()
            except OSError as exc:
                sink_error = sink_error or exc
        except BaseException:
            for process in (decoder, consumer):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()
            raise
        decoder_code = decoder.wait() if decoder else 0
        code = consumer.wait()
        out.seek(0)
        err.seek(0)
        zerr.seek(0)
        result = {"size": size, "sha256": digest, "rc": code, "stdout": out.read().decode(errors="replace"),
                  "stderr": err.read().decode(errors="replace"), "decoder_rc": decoder_code,
                  "decoder_stderr": zerr.read().decode(errors="replace"), "stopped_early": sink_error is not None}
    return result


def pipe_problem(name, result):
    """Why a pipe_object() run failed, or None."""
    if result["rc"] != 0:
        return f"{name} failed (exit {result['rc']}): {first_lines(result['stderr']) or 'no message'}"
    # A consumer that finished early closes the pipe: zstd then dies of SIGPIPE, which is no fault.
    sigpipe = result["decoder_rc"] == -13 and result["rc"] == 0
    if result["decoder_rc"] != 0 and not result["stopped_early"] and not sigpipe:
        return f"zstd could not decompress the object: {first_lines(result['decoder_stderr']) or 'no message'}"
    return None


def listing_problems(listing, row_counts):
    """pg_restore --list output against the manifest: every counted table has its TABLE DATA entry."""
    data = set()
    for line in listing.splitlines():
        match = re.search(r"\bTABLE DATA (\S+) (\S+) ", line)
        if match:
            data.add(f"{match.group(1)}.{match.group(2)}")
    return [f"{table}: no TABLE DATA entry in the archive" for table in sorted(row_counts) if table not in data]


def restore_command(pg_restore, database, no_owner=True, no_privileges=True, single_transaction=True, clean=False):
    command = [pg_restore, "--format=custom", "--no-password", f"--dbname={database}"]
    if no_owner:
        command.append("--no-owner")
    if no_privileges:
        command.append("--no-privileges")
    if single_transaction:
        command.append("--single-transaction")
    command.append("--exit-on-error")
    if clean:
        command += ["--clean", "--if-exists"]
    return command


def compare_counts(expected, actual):
    """Problems, one line each, where the restored tables differ from the manifest."""
    problems = []
    for table, count in sorted(expected.items()):
        if table not in actual:
            problems.append(f"{table}: missing after the restore (manifest: {count} rows)")
        elif actual[table] != count:
            problems.append(f"{table}: {actual[table]} rows, manifest says {count}")
    return problems


SCRATCH_RE = re.compile(r"^payops_[a-z0-9_]{1,50}$")


def scratch_name(kind, backup_id):
    return f"payops_{kind}_" + re.sub(r"[^a-z0-9]", "_", backup_id.lower())[:40]


def database_exists(cur, name):
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    return cur.fetchone() is not None


def create_database(cur, name):
    cur.execute(f"CREATE DATABASE {quote_ident(name)}")


def drop_scratch_database(cur, name):
    """Only databases payops created for itself (payops_ prefix) are ever dropped."""
    if not SCRATCH_RE.match(name):
        raise BackupError(f"refusing to drop {name!r}: payops drops only its own payops_* scratch databases")
    cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def user_table_count(cur):
    cur.execute("SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                " AND n.nspname NOT LIKE 'pg\\_toast%%'")
    return cur.fetchone()["n"]


def connect_to(module, database, connect, autocommit=True):
    """payops_db.connect() against another database of the same server."""
    import types

    proxy = types.SimpleNamespace(params={**module.params, "login_db": database}, fail_json=module.fail_json)
    return connect(proxy, autocommit=autocommit, application_name="payops_backup")


# Tables whose rows come and go in normal operation (sessions expire, lockdown revokes them):
# a difference either way is reported, never judged.
VOLATILE_TABLES = ("auth.sessions", "auth.refresh_tokens")


def judge_counts(expected, live, volatile=VOLATILE_TABLES):
    """Per table, the live rows against a backup's manifest, and a verdict.

    Payment data is append-mostly: rows added after the backup explain live > manifest, so equal or
    grown tables are `healthy`. A table with fewer rows than the backup (data lost since, or a
    restore from an older backup), or missing altogether, makes the verdict `degraded`. Tables in
    volatile are reported and not judged; tables created since the backup are reported as new.
    Returns (verdict, [{table, manifest, live, difference, state}])."""
    rows = []
    for table in sorted(set(expected) | set(live)):
        before, now = expected.get(table), live.get(table)
        if before is None:
            state = "new"
        elif now is None:
            state = "missing"
        elif now == before:
            state = "same"
        elif table in volatile:
            state = "volatile"
        elif now > before:
            state = "grown"
        else:
            state = "shrunk"
        rows.append({"table": table, "manifest": before, "live": now,
                     "difference": None if before is None or now is None else now - before, "state": state})
    verdict = "degraded" if any(row["state"] in ("missing", "shrunk") for row in rows) else "healthy"
    return verdict, rows
