# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What payops' backup modules share: the object layout, the manifest (the commit marker), listing
backups, streaming into and out of S3 with SHA-256 on the way, PostgreSQL tool discovery, row
counts and the retention rule. Pure functions where possible, so that unit tests reach them.

Layout: <prefix>/<environment>/<kind>/<backup id>/{<objects>, manifest.json, verification-<time>.json}
A backup exists once manifest.json exists; objects without one are an incomplete backup.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import threading

from ansible_collections.betaskill.payops.plugins.module_utils.payops_s3 import with_retries

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "payops-backup/1"
KINDS = ("database", "configuration", "application")
VERIFICATION_RE = re.compile(r"^verification-(\d{8}T\d{6}(?:\d+)?Z)\.json$")
BACKUP_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[a-z0-9][a-z0-9-]{0,62}$")
# DESIGN.md, "Facts about Supabase backups": schemas Supabase manages itself.
SUPABASE_INTERNAL_SCHEMAS = [
    "_analytics", "_realtime", "_supavisor", "extensions", "graphql", "graphql_public", "net",
    "pgbouncer", "pgsodium", "pgsodium_masks", "realtime", "supabase_functions", "supabase_migrations",
    "vault", "cron", "pg_net",
]
SUPABASE_EXCLUDED_TABLE_DATA = ["storage.objects"]
CHUNK = 1024 * 1024


class BackupError(Exception):
    """A failure with an operator-facing message; modules turn it into fail_json."""


# ---------------------------------------------------------------------------------------------- time


def utcnow():
    return datetime.datetime.now(datetime.UTC)


def iso(moment):
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text):
    return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(datetime.UTC)


def stamp(moment):
    return moment.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


# -------------------------------------------------------------------------------------------- layout


def slug(text):
    cleaned = re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")
    return cleaned[:40].strip("-")


def new_backup_id(moment, label=""):
    """Sorts by time; the label is visible in listings; the random tail keeps parallel runs apart."""
    parts = [stamp(moment)]
    if slug(label):
        parts.append(slug(label))
    parts.append(secrets.token_hex(3))
    return "-".join(parts)


def kind_prefix(prefix, environment, kind):
    return "/".join(part.strip("/") for part in (prefix, environment, kind) if part.strip("/")) + "/"


def backup_prefix(prefix, environment, kind, backup_id):
    return f"{kind_prefix(prefix, environment, kind)}{backup_id}/"


def check_backup_id(backup_id):
    if not BACKUP_ID_RE.match(backup_id or ""):
        raise BackupError(f"backup id {backup_id!r} is not of the form 20261127T020000Z-<label>-<hex>")


# ------------------------------------------------------------------------------------------ manifest


REQUIRED_MANIFEST_KEYS = ("format", "backup_id", "kind", "environment", "started_at", "finished_at", "objects")


def parse_manifest(data, where="manifest"):
    """The manifest as a dict, or BackupError saying why it cannot be trusted."""
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{where} does not parse as JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BackupError(f"{where} is not a JSON object")
    missing = [key for key in REQUIRED_MANIFEST_KEYS if key not in manifest]
    if missing:
        raise BackupError(f"{where} lacks {', '.join(missing)}")
    if manifest["format"] != MANIFEST_FORMAT:
        raise BackupError(f"{where} has format {manifest['format']!r}, expected {MANIFEST_FORMAT!r}")
    objects = manifest["objects"]
    if not isinstance(objects, list) or not objects:
        raise BackupError(f"{where} lists no objects")
    for entry in objects:
        if not isinstance(entry, dict) or not {"name", "size", "sha256"} <= set(entry):
            raise BackupError(f"{where} has an object entry without name, size and sha256")
        if not re.fullmatch(r"[0-9a-f]{64}", str(entry["sha256"])):
            raise BackupError(f"{where}: {entry['name']} has no valid sha256")
    try:
        parse_time(manifest["started_at"])
        parse_time(manifest["finished_at"])
    except ValueError:
        raise BackupError(f"{where} has unreadable start or finish times") from None
    return manifest


def manifest_bytes(manifest):
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


# ------------------------------------------------------------------------------------------- listing


def list_keys(client, bucket, prefix, attempts=4):
    """Every current object under prefix: [{key, size, last_modified}]."""
    found = []
    token = None
    while True:
        kwargs = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = with_retries(client.list_objects_v2, attempts=attempts, **kwargs)
        for item in page.get("Contents", []):
            found.append({"key": item["Key"], "size": item["Size"], "last_modified": item["LastModified"]})
        if not page.get("IsTruncated"):
            return found
        token = page["NextContinuationToken"]


def list_multipart_uploads(client, bucket, prefix, attempts=4):
    """Multipart uploads started and never completed or aborted under prefix."""
    found = []
    kwargs = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = with_retries(client.list_multipart_uploads, attempts=attempts, **kwargs)
        for item in page.get("Uploads", []):
            found.append({"key": item["Key"], "upload_id": item["UploadId"], "initiated": iso(item["Initiated"])})
        if not page.get("IsTruncated"):
            return found
        kwargs["KeyMarker"] = page.get("NextKeyMarker")
        kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")


def read_object(client, bucket, key, attempts=4):
    def read():
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    return with_retries(read, attempts=attempts)


def group_backups(keys, kind_root):
    """{backup id: {objects: {name: {key, size}}, has_manifest, verifications: [names, oldest first]}}."""
    backups = {}
    for item in keys:
        rest = item["key"][len(kind_root):]
        if "/" not in rest:
            continue
        backup_id, name = rest.split("/", 1)
        entry = backups.setdefault(backup_id, {"backup_id": backup_id, "objects": {}, "has_manifest": False,
                                               "verifications": []})
        if name == MANIFEST:
            entry["has_manifest"] = True
            entry["manifest_key"] = item["key"]
        elif VERIFICATION_RE.match(name):
            entry["verifications"].append(name)
        else:
            entry["objects"][name] = {"key": item["key"], "size": item["size"],
                                      "last_modified": iso(item["last_modified"])}
    for entry in backups.values():
        entry["verifications"].sort()
    return backups


def load_backups(client, bucket, prefix, environment, kind, attempts=4, with_verifications=True):
    """Every backup of a kind, newest first, complete ones with their parsed manifest and last verdict.

    A manifest that does not parse makes the backup `unreadable` (never complete): it is reported,
    never trusted, never deleted by retention."""
    root = kind_prefix(prefix, environment, kind)
    grouped = group_backups(list_keys(client, bucket, root, attempts), root)
    result = []
    for backup_id in sorted(grouped, reverse=True):
        entry = grouped[backup_id]
        entry["kind"] = kind
        entry["prefix"] = f"{root}{backup_id}/"
        entry["last_verification"] = None
        if not entry["has_manifest"]:
            entry["state"] = "incomplete"
            result.append(entry)
            continue
        try:
            entry["manifest"] = parse_manifest(read_object(client, bucket, entry["manifest_key"], attempts),
                                               where=f"s3://{bucket}/{entry['manifest_key']}")
            entry["state"] = "complete"
        except BackupError as exc:
            entry["state"] = "unreadable"
            entry["error"] = str(exc)
        if with_verifications and entry["verifications"]:
            name = entry["verifications"][-1]
            try:
                record = json.loads(read_object(client, bucket, entry["prefix"] + name, attempts))
                entry["last_verification"] = {
                    "name": name, "result": record.get("result"), "verified_at": record.get("verified_at"),
                    "deep": bool(record.get("deep")), "problems": record.get("problems", []),
                }
            except ValueError:
                entry["last_verification"] = {"name": name, "result": "unreadable"}
        result.append(entry)
    return result


def is_verified(entry):
    return entry.get("state") == "complete" and (entry.get("last_verification") or {}).get("result") == "passed"


def newest(entries, verified=False):
    for entry in entries:  # newest first
        if entry.get("state") == "complete" and (not verified or is_verified(entry)):
            return entry
    return None


def find_backup(entries, backup_id):
    for entry in entries:
        if entry["backup_id"] == backup_id:
            return entry
    known = ", ".join(e["backup_id"] for e in entries[:5]) or "none"
    raise BackupError(f"backup {backup_id} does not exist (newest: {known})")


# ------------------------------------------------------------------------------------------ upload


class MultipartWriter:
    """Streams a file-like source into one S3 multipart upload: SHA-256 and size on the way, at most
    three parts in memory (one uploading, one waiting, one filling), aborted on any failure so nothing half-written
    is left behind as if complete."""

    def __init__(self, client, bucket, key, part_size, sse=None, kms_key_id=None, attempts=4, metadata=None):
        self.client = client
        self.bucket = bucket
        self.key = key
        self.part_size = max(int(part_size), 5 * 1024 * 1024)
        self.attempts = attempts
        self.extra = {}
        if sse:
            self.extra["ServerSideEncryption"] = sse
            if kms_key_id:
                self.extra["SSEKMSKeyId"] = kms_key_id
        self.metadata = metadata or {}
        self.upload_id = None
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.parts = []

    def upload(self, source, before_complete=None):
        """Upload everything source yields; before_complete() may raise to abort instead of completing
        (a pg_dump that failed after writing part of its output)."""
        created = with_retries(self.client.create_multipart_upload, attempts=self.attempts, Bucket=self.bucket,
                               Key=self.key, Metadata=self.metadata, **self.extra)
        self.upload_id = created["UploadId"]
        pending = queue.Queue(maxsize=1)
        failure = []

        def uploader():
            while True:
                item = pending.get()
                if item is None:
                    return
                number, data = item
                if failure:
                    continue
                try:
                    answer = with_retries(self.client.upload_part, attempts=self.attempts, Bucket=self.bucket,
                                          Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data)
                    self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                except Exception as exc:  # handed back to the reading thread
                    failure.append(exc)

        thread = threading.Thread(target=uploader, name="payops-s3-upload", daemon=True)
        thread.start()
        try:
            number = 0
            while not failure:
                data = read_full(source, self.part_size)
                if not data and number > 0:
                    break
                number += 1
                self.sha256.update(data)
                self.size += len(data)
                # Blocks while one part uploads and one waits: memory stays at a few parts.
                pending.put((number, data))
                if not data:
                    break  # an empty source is one empty part
            pending.put(None)
            thread.join()
            if failure:
                raise failure[0]
            if before_complete is not None:
                before_complete()
            self.parts.sort(key=lambda part: part["PartNumber"])
            answer = with_retries(self.client.complete_multipart_upload, attempts=self.attempts, Bucket=self.bucket,
                                  Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts})
        except BaseException:
            failure.append(RuntimeError("stopped"))
            drain(pending)
            pending.put(None)
            thread.join(timeout=60)
            self.abort()
            raise
        return {"name": self.key.rsplit("/", 1)[-1], "key": self.key, "size": self.size,
                "sha256": self.sha256.hexdigest(), "parts": len(self.parts), "version_id": answer.get("VersionId")}

    def abort(self):
        """Best effort: when S3 itself is gone, backup:verify-status lists the upload and cleanup removes it."""
        if not self.upload_id:
            return False
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            return True
        except Exception:
            return False


def drain(pending):
    try:
        while True:
            pending.get_nowait()
    except queue.Empty:
        pass


def read_full(source, size):
    """Up to size bytes: a pipe returns what it has, so read until the part is full or the stream ends."""
    chunks = []
    wanted = size
    while wanted > 0:
        data = source.read(min(wanted, 8 * CHUNK))
        if not data:
            break
        chunks.append(data)
        wanted -= len(data)
    return b"".join(chunks)


def put_small(client, bucket, key, data, sse=None, kms_key_id=None, attempts=4, content_type="application/json"):
    extra = {}
    if sse:
        extra["ServerSideEncryption"] = sse
        if kms_key_id:
            extra["SSEKMSKeyId"] = kms_key_id
    answer = with_retries(client.put_object, attempts=attempts, Bucket=bucket, Key=key, Body=data,
                          ContentType=content_type, **extra)
    return {"name": key.rsplit("/", 1)[-1], "key": key, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "version_id": answer.get("VersionId")}


# ------------------------------------------------------------------------------------------ download


def stream_object(client, bucket, key, sink=None, attempts=4):
    """Read an object once, hashing it; feed each chunk to sink(chunk) when given.

    Returns (size, sha256 hex, sink_error). A sink that breaks (a pg_restore that exits) stops
    being fed, the hash still covers the whole object."""
    answer = with_retries(client.get_object, attempts=attempts, Bucket=bucket, Key=key)
    body = answer["Body"]
    digest = hashlib.sha256()
    size = 0
    sink_error = None
    try:
        for chunk in body.iter_chunks(chunk_size=CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if sink is not None and sink_error is None:
                try:
                    sink(chunk)
                except (BrokenPipeError, OSError) as exc:
                    sink_error = exc
    finally:
        body.close()
    return size, digest.hexdigest(), sink_error


# ---------------------------------------------------------------------------------------- PostgreSQL


def tool_version(path):
    """(major, 'x.y') of a PostgreSQL client tool, from its --version."""
    try:
        # pylint: disable-next=ansible-bad-function  # a helper without the module; one --version
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupError(f"cannot run {path} --version: {exc}") from None
    match = re.search(r"(\d+)\.(\d+)(?:\.\d+)?", out)
    if not match:
        raise BackupError(f"cannot read the version of {path} from {out.strip()!r}")
    return int(match.group(1)), match.group(0)


def find_tool(name, server_major, explicit_dir=None):
    """The PostgreSQL client tool to use: in explicit_dir if given, else the newest installed
    /usr/lib/postgresql/<major>/bin/<name> that is at least the server's major, else PATH's.
    Refuses a tool older than the server, saying which version is needed."""
    candidates = []
    if explicit_dir:
        candidates = [os.path.join(explicit_dir, name)]
    else:
        versioned = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                           key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0, reverse=True)
        candidates = versioned + ([shutil.which(name)] if shutil.which(name) else [])
    if not candidates:
        raise BackupError(f"{name} is not installed: install postgresql-client-{server_major} or newer")
    chosen = None
    for path in candidates:
        if not os.access(path, os.X_OK):
            continue
        major, version = tool_version(path)
        if major >= server_major:
            return path, version
        chosen = chosen or (path, version)
    if chosen is None:
        raise BackupError(f"{name} not found at {', '.join(candidates)}")
    raise BackupError(
        f"{chosen[0]} is version {chosen[1]}, older than the server (PostgreSQL {server_major}): "
        f"{name} {server_major} or newer is needed (install postgresql-client-{server_major}, or point "
        f"pg_bin_dir at it)")


def pg_env(params, database=None):
    """libpq's environment for a child tool: the password never appears on a command line."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(PGHOST=params["login_host"], PGPORT=str(params["login_port"]), PGUSER=params["login_user"],
               PGDATABASE=database or params["login_db"], PGSSLMODE=params["ssl_mode"],
               PGCONNECT_TIMEOUT=str(params["connect_timeout"]), PGAPPNAME="payops")
    if params.get("login_password"):
        env["PGPASSWORD"] = params["login_password"]
    return env


ROW_COUNT_TABLES = """
SELECT n.nspname AS schema, c.relname AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
   AND NOT (n.nspname = ANY(%s))
 ORDER BY 1, 2
"""


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def row_counts(cur, excluded_schemas, excluded_table_data=()):
    """{schema.table: exact row count} of every table outside the excluded schemas; tables whose
    data is left out of the dump are left out here too."""
    cur.execute(ROW_COUNT_TABLES, (list(excluded_schemas),))
    tables = [(row["schema"], row["name"]) for row in cur.fetchall()]
    counts = {}
    for schema, name in tables:
        qualified = f"{schema}.{name}"
        if qualified in excluded_table_data:
            continue
        cur.execute(f"SELECT count(*) AS n FROM ONLY {quote_ident(schema)}.{quote_ident(name)}")  # noqa: S608
        counts[qualified] = cur.fetchone()["n"]
    return counts


def compare_counts(expected, actual):
    """Problems, one line each, where the restored tables differ from the manifest."""
    problems = []
    for table, count in sorted(expected.items()):
        if table not in actual:
            problems.append(f"{table}: missing after the restore (manifest: {count} rows)")
        elif actual[table] != count:
            problems.append(f"{table}: {actual[table]} rows, manifest says {count}")
    return problems


def first_lines(text, limit=5):
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return "; ".join(lines[:limit])


# ----------------------------------------------------------------------------------------- retention


def retention_plan(entries, keep_daily, keep_weekly, keep_monthly, keep_last=1):
    """Grandfather-father-son over complete backups (newest first).

    Keeps the newest backup of each of the last keep_daily days, keep_weekly ISO weeks and
    keep_monthly months that have backups, the keep_last newest backups, and always the newest
    verified backup. Incomplete and unreadable backups are not this rule's business.
    Returns (keep: {backup id: [reasons]}, delete: [backup ids])."""
    complete = [entry for entry in entries if entry.get("state") == "complete"]
    complete.sort(key=lambda entry: entry["backup_id"], reverse=True)
    keep = {}

    def mark(entry, reason):
        keep.setdefault(entry["backup_id"], []).append(reason)

    for entry in complete[:max(keep_last, 0)]:
        mark(entry, "newest")
    for count, name, period in (
        (keep_daily, "daily", lambda t: t.strftime("%Y-%m-%d")),
        (keep_weekly, "weekly", lambda t: f"{t.isocalendar()[0]}-W{t.isocalendar()[1]:02d}"),
        (keep_monthly, "monthly", lambda t: t.strftime("%Y-%m")),
    ):
        seen = []
        for entry in complete:
            key = period(parse_time(entry["manifest"]["started_at"]))
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            mark(entry, f"{name} {key}")
    verified = newest(complete, verified=True)
    if verified:
        mark(verified, "newest verified")
    delete = [entry["backup_id"] for entry in complete if entry["backup_id"] not in keep]
    return keep, delete


# ---------------------------------------------------------------------------------- restore pipeline


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


def object_problems(expected, size, digest):
    problems = []
    if size != expected["size"]:
        problems.append(f"{expected['name']}: {size} bytes, manifest says {expected['size']}")
    if digest != expected["sha256"]:
        problems.append(f"{expected['name']}: SHA-256 {digest[:16]}... differs from the manifest's "
                        f"{expected['sha256'][:16]}...")
    return problems


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


# --------------------------------------------------------------------------------------- secrets


# Redaction has one home (payops_redact): the callback, the modules and the payops command share it.
from ansible_collections.betaskill.payops.plugins.module_utils.payops_redact import (  # noqa: F401 pylint: disable=unused-import
    REDACTED,
    is_secret_name,
    redact,
    scrub_text,
    secret_values_of,
)


def fill_redacted(backed_up, current):
    """The backed-up JSON value with each REDACTED placeholder taken from the current one at the same
    place; (value, [places that could not be filled])."""
    missing = []

    def walk(item, live, where):
        if item == REDACTED:
            if live is None or live == REDACTED:
                missing.append(where or "(the whole file)")
                return item
            return live
        if isinstance(item, dict):
            live = live if isinstance(live, dict) else {}
            return {key: walk(inner, live.get(key), f"{where}.{key}" if where else str(key))
                    for key, inner in item.items()}
        if isinstance(item, list):
            live = live if isinstance(live, list) else []
            return [walk(inner, live[index] if index < len(live) else None, f"{where}[{index}]")
                    for index, inner in enumerate(item)]
        return item

    return walk(backed_up, current, ""), missing


# ------------------------------------------------------------------------------ manifest and streams


def base_manifest(backup_id, kind, environment, label, started, finished, objects, run_id=None, operator=None):
    """The manifest keys every kind of backup shares; a kind adds its own section."""
    import platform

    return {
        "format": MANIFEST_FORMAT,
        "backup_id": backup_id,
        "kind": kind,
        "environment": environment,
        "label": label,
        "started_at": iso(started),
        "finished_at": iso(finished),
        "seconds": round((finished - started).total_seconds(), 3),
        "objects": objects,
        "run_id": run_id,
        "operator": operator,
        "controller": platform.node(),
    }


def upload_compressed(writer, produce, level=1, threads=0):
    """Stream what produce(sink) writes through `zstd` into writer (a MultipartWriter): the producer
    runs in a thread, zstd in a pipe, nothing is staged. Any failure of the producer or of zstd
    aborts the upload. Returns the writer's stored object."""
    import tempfile

    with tempfile.TemporaryFile() as zstd_err:
        # pylint: disable-next=ansible-bad-function  # a pipeline (producer -> zstd -> S3): run_command cannot stream
        compressor = subprocess.Popen(["zstd", "-q", "-c", f"-{level}", f"-T{threads}"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=zstd_err)
        failure = []

        def feed():
            try:
                produce(compressor.stdin)
            except BaseException as exc:  # handed back to the uploading thread
                failure.append(exc)
            finally:
                try:
                    compressor.stdin.close()
                except OSError as exc:
                    failure.append(exc)

        thread = threading.Thread(target=feed, name="payops-tar", daemon=True)
        thread.start()

        def finished_cleanly():
            thread.join()
            if failure:
                raise failure[0]
            code = compressor.wait()
            if code != 0:
                zstd_err.seek(0)
                text = first_lines(zstd_err.read().decode(errors="replace"))
                raise BackupError(f"zstd failed (exit {code}): {text or 'no message'}")

        try:
            stored = writer.upload(compressor.stdout, before_complete=finished_cleanly)
        except BaseException:
            if compressor.poll() is None:
                compressor.kill()
            compressor.wait()
            thread.join(timeout=30)
            raise
    stored.update(compression="zstd")
    return stored


def safe_member_name(name):
    """A tar member name that stays inside the folder it is unpacked into, or BackupError."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts or not parts:
        raise BackupError(f"archive member {name!r} would land outside its folder")
    return "/".join(parts)


# ------------------------------------------------------------------------------- recovery:verify


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


# --- The upload options every backup module takes (doc fragment payops_backup_upload) -------------

UPLOAD_REQUIRED_IF = [("sse", "aws:kms", ("sse_kms_key_id",))]


def upload_argument_spec():
    """Options of a backup's upload to S3, shared by supabase_backup and files_backup."""
    return dict(
        compression_threads=dict(type="int", default=0),
        part_size_mb=dict(type="int", default=16),
        sse=dict(type="str", choices=["AES256", "aws:kms", "none"], default="AES256"),
        sse_kms_key_id=dict(type="str", no_log=False),
        run_id=dict(type="str"),
        operator=dict(type="str"),
    )


def check_upload_params(module):
    """What the argument spec cannot say: S3's part size limits."""
    if not 5 <= module.params["part_size_mb"] <= 5120:
        module.fail_json(msg="part_size_mb must be between 5 and 5120 (S3's part size limits)")
