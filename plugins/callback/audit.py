# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: audit
type: notification
short_description: payops' audit trail, one hash-chained record per event, to a file or PostgreSQL
description:
  - Records one event per line of a JSON-lines file, or per row of C(payops.audit_trail) when
    C(postgres_dsn) is set - the run's start, each task's result on each host, and the run's end.
  - Each line names the run, the operator, the source (C(payops), plain C(ansible-playbook) or AWX),
    the runbook command when known, the playbook, host, task and module, whether it changed, failed
    or was skipped, how long it took, and its arguments with secrets removed.
  - Secrets are removed three ways, because C(no_log) alone has been shown not to be enough
    (ARA's users found them in facts and extra vars) - results of C(no_log) tasks are dropped;
    values under keys that look secret are replaced; and the values of variables known to be secret
    are replaced wherever they appear, as are passwords inside URLs.
  - Each line carries the hash of the line before it and its own hash, and a small head file beside
    the log records the count and the last hash, so C(payops audit verify) finds any line that was
    edited, removed, inserted or reordered, including at the end.
  - Writers on one machine take an exclusive lock on the log, so runs at the same time interleave
    whole lines and keep the chain intact.
requirements:
  - enable in configuration (C(callbacks_enabled = betaskill.payops.audit))
options:
  log_path:
    description: The JSON-lines file the trail is appended to; its folder is created if missing.
    type: path
    default: ~/.local/state/payops/audit.jsonl
    ini:
      - section: callback_payops_audit
        key: log_path
    env:
      - name: PAYOPS_AUDIT_LOG
  postgres_dsn:
    description:
      - A libpq DSN (C(postgresql://user:password@host:port/db?sslmode=require)). When set, the trail
        goes to the table C(payops.audit_trail) of that database instead of the file, one row per
        event, each its own committed transaction, sent in order by a thread of the callback so that
        the run does not wait for each round trip; every event is committed before the next task
        starts (a run killed mid-way leaves every finished task recorded). The database numbers,
        stamps and hashes each row under an advisory lock, so jobs on several controllers at once
        make one chain (schema/migrations/0004_audit_trail.sql).
      - The DSN's role needs only EXECUTE on C(payops.audit_append) (the role C(payops_audit_writer)).
        The DSN is a secret; it never appears in output or the trail.
      - When the database cannot be written, the events are kept and written at the next event
        (a run of payops:install creates the table mid-run); what is still unwritten when the run
        ends goes to C(log_path), with a warning naming how many.
    type: str
    ini:
      - section: callback_payops_audit
        key: postgres_dsn
    env:
      - name: PAYOPS_AUDIT_DSN
  secret_words:
    description:
      - Words that mark a variable or argument name as secret when they appear as a part of it
        (parts are separated by C(_), C(-) or C(.)), compared without case.
    type: list
    elements: str
    default: [password, passwd, pass, secret, token, key, dsn, credential, credentials, authorization,
              cookie, apikey, private, sign, signature, vault]
    ini:
      - section: callback_payops_audit
        key: secret_words
    env:
      - name: PAYOPS_AUDIT_SECRET_WORDS
  safe_names:
    description: Names that look secret but are not, kept as they are (an S3 object key, say).
    type: list
    elements: str
    default: [key_prefix, object_key, backup_key, sort_key, no_log]
    ini:
      - section: callback_payops_audit
        key: safe_names
    env:
      - name: PAYOPS_AUDIT_SAFE_NAMES
"""

import collections
import datetime
import fcntl
import hashlib
import importlib.util
import json
import os
import threading
import time
import uuid

from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible_collections.betaskill.payops.plugins.module_utils.payops_audit import (
    APPEND,
    GENESIS,
    canonical,
    chain_hash,
    connect_sink,
    describe_dsn,
    dsn_secrets,
    sink_error,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_operator import identify
from ansible_collections.betaskill.payops.plugins.module_utils.payops_redact import Redactor


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "betaskill.payops.audit"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._path = None
        self._head_path = None
        self._head_fd = None  # the head file, open for the run: rewritten in place after each line
        self._cache = None  # (size of the log after our last write, its last hash)
        self._run_id = os.environ.get("PAYOPS_RUN_ID") or str(uuid.uuid4())
        self._playbook = None
        self._started = None
        self._run_open = False
        self._redactor = Redactor()
        self._task_starts = {}
        self._source = None
        self._operator = None
        self._command = os.environ.get("PAYOPS_COMMAND") or None
        self._broken = None
        self._dsn = None
        self._writer = None  # the PostgreSQL sink's writer thread, started with the first event
        self._templated_hosts = set()  # hosts whose full variables' secrets are learned
        self._warned = set()

    # --- configuration ----------------------------------------------------------------------

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._path = os.path.expanduser(self.get_option("log_path"))
        self._head_path = self._path + ".head"
        self._redactor = Redactor(self.get_option("secret_words") or [], self.get_option("safe_names") or [])
        self._dsn = self.get_option("postgres_dsn") or None
        for secret in dsn_secrets(self._dsn) if self._dsn else ():
            self._redactor.learn(secret)
        if self._dsn and importlib.util.find_spec("psycopg") is None:
            self._display.warning("betaskill.payops.audit: postgres_dsn is set but psycopg (version 3) is not "
                                  f"installed on this controller: auditing to the file {self._path} instead")
            self._dsn = None

    # --- redaction (plugins/module_utils/payops_redact.py) -----------------------------------

    def _scrub(self, value):
        return self._redactor.redact(value)[0]

    def _learn_secrets(self, variables, templar=None):
        """Remember the values of variables whose names are secret, templated where possible."""
        for name, value in (variables or {}).items():
            if not self._redactor.is_secret_name(name):
                continue
            if templar is not None:
                try:
                    value = templar.template(value)
                except Exception:  # noqa: S112 - an undefined or failing template is no secret to learn
                    continue
            self._redactor.learn(value)

    # --- writing ----------------------------------------------------------------------------

    def _emit(self, record):
        record = {"v": 1, "time": _now(), "run_id": self._run_id, **record}
        if self._dsn:
            if self._writer is None:
                self._writer = DatabaseWriter(self._dsn)
            self._writer.put(canonical(record))
            self._report_writer()
        else:
            self._emit_file(record)

    # --- the PostgreSQL sink ----------------------------------------------------------------

    def _drain(self):
        """Before a task starts: every event so far is committed (the writer has had the time since
        the last result to do it), unless the database is failing - then the run goes on."""
        if self._writer is not None:
            self._writer.drain(timeout=5.0)
            self._report_writer()

    def _report_writer(self):
        for key, text in self._writer.take_problems():
            self._warn_once(key, text)

    def _warn_once(self, key, text):
        if key not in self._warned:
            self._warned.add(key)
            self._display.warning(text)

    def _close_sink(self):
        """At the run's end: the writer's last try; what the database still has not taken goes to the file."""
        missed = self._writer.stop()
        self._report_writer()
        self._writer = None
        if not missed:
            return
        for text in missed:
            self._emit_file(json.loads(text))
        where = self._path if not self._broken else "nowhere (the file cannot be written either)"
        self._display.warning(f"betaskill.payops.audit: {len(missed)} event(s) of this run are NOT in "
                              f"payops.audit_trail at {describe_dsn(self._dsn)}; they were written to {where}")

    # --- the file sink ----------------------------------------------------------------------

    def _emit_file(self, record):
        if self._broken:
            return
        try:
            directory = os.path.dirname(self._path)
            if directory:
                os.makedirs(directory, mode=0o750, exist_ok=True)
            with open(self._path, "a+", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    size = os.fstat(handle.fileno()).st_size
                    prev, count = self._tail(handle, size)
                    record["prev"] = prev
                    record["hash"] = chain_hash(prev, record)
                    line = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str) + "\n"
                    handle.write(line)
                    handle.flush()
                    size = handle.tell()
                    self._cache = (size, record["hash"], count + 1)
                    self._write_head(count + 1, record["hash"])
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError as exc:
            self._broken = str(exc)
            self._display.warning(f"betaskill.payops.audit: cannot write the audit trail {self._path}: {exc}")

    def _tail(self, handle, size):
        """The last line's hash and the line count, from our cache when no one else wrote since."""
        if self._cache and self._cache[0] == size:
            return self._cache[1], self._cache[2]
        if size == 0:
            return GENESIS, 0
        head = _read_head(self._head_path)
        handle.seek(max(0, size - 65536))
        last = handle.read().splitlines()[-1]
        handle.seek(0, os.SEEK_END)
        try:
            prev = json.loads(last)["hash"]
        except (ValueError, KeyError, TypeError):
            # A damaged last line: chain on from its raw bytes; `payops audit verify` reports it.
            prev = hashlib.sha256(last.encode("utf-8")).hexdigest()
        count = head["lines"] if head and head.get("hash") == prev else _count_lines(self._path)
        return prev, count

    def _write_head(self, count, last_hash):
        """The head file after each line, under the log's lock: one write of HEAD_BYTES at offset 0 of
        a file kept open (a temporary file renamed over it cost ~1 ms a line, a fifth of a 200-task
        run's overhead). The JSON is padded with spaces to a fixed length, so each write replaces
        all of it and the file never holds two heads' bytes."""
        text = json.dumps({"lines": count, "hash": last_hash}).ljust(HEAD_BYTES - 1) + "\n"
        if self._head_fd is None:
            self._head_fd = os.open(self._head_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
            os.pwrite(self._head_fd, text.encode("utf-8"), 0)
            os.ftruncate(self._head_fd, HEAD_BYTES)  # a longer head of an earlier version, cut
            return
        os.pwrite(self._head_fd, text.encode("utf-8"), 0)

    # --- events -----------------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        self._playbook = os.path.relpath(playbook._file_name) if playbook._file_name else None
        self._started = time.monotonic()

    def v2_playbook_on_play_start(self, play):
        manager = play.get_variable_manager()
        extra = dict(manager.extra_vars) if manager is not None else {}
        self._learn_secrets(extra)
        if manager is not None:
            self._learn_play_secrets(play, manager)
        self._share_secrets()
        if self._run_open:
            return
        self._run_open = True
        self._source, self._operator, awx_job = identify(extra)
        if awx_job and not os.environ.get("PAYOPS_RUN_ID"):
            self._run_id = f"awx-{awx_job}"
        self._command = self._command or extra.get("payops_command")
        self._emit(
            {
                "event": "run_start",
                **self._context(),
                "check_mode": bool(context.CLIARGS.get("check", False)),
                "tags": list(context.CLIARGS.get("tags") or []),
                "limit": context.CLIARGS.get("subset"),
                "extra_vars": self._scrub(extra),
            }
        )

    def _share_secrets(self):
        """Under `payops run`, hand the learned secret values to payops (through a file in its
        private temporary folder, removed after the run) so that it can remove them from what it
        prints and from the run's artefacts, which Ansible's own output also reaches."""
        target = os.environ.get("PAYOPS_SECRETS_FILE")
        if not target or not self._redactor.values:
            return
        try:
            temporary = f"{target}.{os.getpid()}"
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(sorted(self._redactor.values), handle)
            os.replace(temporary, target)
        except OSError as exc:
            self._display.warning(f"betaskill.payops.audit: cannot share secrets for redaction: {exc.strerror}")

    def _learn_play_secrets(self, play, manager):
        """Secrets of the play's hosts: every host's own values, and the templated values of one
        host's full variables (inventory variables that point at a vault or a lookup)."""
        inventory = manager._inventory
        hosts = inventory.get_hosts(play.hosts) if inventory is not None else []
        for host in hosts:
            self._learn_secrets(host.get_vars())
            for group in host.get_groups():
                self._learn_secrets(group.get_vars())
        if not hosts:
            return
        # Templating one host's full variables is the costly part (each secret may be a lookup):
        # once per first host for the run. A later play on the same host only brings its own
        # variables; they are templated when one of them has a secret name.
        first = hosts[0].get_name()
        play_secrets = {name for name in (play.get_vars() or {}) if self._redactor.is_secret_name(name)}
        if first in self._templated_hosts and not play_secrets:
            return
        try:
            from ansible.template import Templar

            variables = manager.get_vars(play=play, host=hosts[0])
            templar = Templar(loader=play._loader, variables=variables)
        except Exception:  # learning secrets must never break a run; the raw values are known
            return
        if first in self._templated_hosts:
            variables = {name: variables[name] for name in play_secrets if name in variables}
        self._templated_hosts.add(first)
        self._learn_secrets(variables, templar)

    def _context(self):
        return {
            "operator": self._operator,
            "source": self._source,
            "command": self._command,
            "playbook": self._playbook,
        }

    def v2_runner_on_start(self, host, task):
        self._drain()
        self._task_starts[(host.get_name(), task._uuid)] = time.monotonic()

    def _result(self, result, outcome):
        task = result._task
        host = result._host.get_name()
        started = self._task_starts.pop((host, task._uuid), None)
        data = result._result or {}
        hidden = bool(task.no_log) or bool(data.get("_ansible_no_log"))
        record = {
            "event": "task",
            **self._context(),
            "host": host,
            "task": task.get_name(),
            "module": task.action,
            "changed": bool(data.get("changed", False)),
            "failed": outcome in ("failed", "unreachable"),
            "skipped": outcome == "skipped",
            "unreachable": outcome == "unreachable",
            "ignored": outcome == "failed" and bool(getattr(task, "ignore_errors", False)),
            "duration_ms": round((time.monotonic() - started) * 1000) if started else None,
            "args": "censored: no_log" if hidden else self._scrub(_arguments(task)),
        }
        if outcome in ("failed", "unreachable"):
            record["msg"] = "censored: no_log" if hidden else self._scrub(str(data.get("msg", ""))[:2000])
        self._emit(record)

    def v2_runner_on_ok(self, result):
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for host in sorted(stats.processed.keys()):
            hosts[host] = stats.summarize(host)
        failed = any(s["failures"] or s["unreachable"] for s in hosts.values())
        if not self._run_open:  # a playbook that never started a play still gets its end recorded
            self._source, self._operator, _awx_job = identify({})
        self._emit(
            {
                "event": "run_end",
                **self._context(),
                "result": "failed" if failed else "successful",
                "hosts": hosts,
                "duration_ms": round((time.monotonic() - self._started) * 1000) if self._started else None,
            }
        )
        if self._writer is not None:
            self._close_sink()
        if self._head_fd is not None:
            os.close(self._head_fd)
            self._head_fd = None


def _arguments(task):
    """The task's arguments as the operator wrote them, without Ansible's internal ones."""
    args = {k: v for k, v in (task.args or {}).items() if not str(k).startswith("_ansible_")}
    if task.action in ("validate_argument_spec", "ansible.builtin.validate_argument_spec"):
        return {"provided_arguments": args.get("provided_arguments", {})}
    return args


HEAD_BYTES = 128  # {"lines": ..., "hash": 64 hex digits} is 90 bytes with a 20-digit count


def _now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _read_head(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _count_lines(path):
    with open(path, "rb") as handle:
        return sum(1 for _line in handle)


class DatabaseWriter(threading.Thread):
    """Sends the events to payops.audit_append in order, one committed transaction each, on a thread
    of its own: the run does not wait for the database's round trip and commit after each result,
    only - rarely - before the next task starts (drain). When the database fails, the events stay
    queued and are tried again every RETRY_SECONDS and once more when the run ends; stop() returns
    those it never could send."""

    RETRY_SECONDS = 2.0

    def __init__(self, dsn):
        super().__init__(name="payops-audit-writer", daemon=True)
        self._dsn = dsn
        self._queue = collections.deque()  # JSON texts, oldest first; the head is sent next
        self._cond = threading.Condition()
        self._stopping = False
        self._failing = False
        self._problems = []
        self._conn = None
        self.start()

    def put(self, text):
        with self._cond:
            self._queue.append(text)
            self._cond.notify()

    def drain(self, timeout):
        """Wait until every event put so far is committed, unless the database is failing."""
        with self._cond:
            self._cond.wait_for(lambda: not self._queue or self._failing, timeout=timeout)

    def take_problems(self):
        with self._cond:
            problems, self._problems = self._problems, []
        return problems

    def stop(self):
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self.join(timeout=30)
        with self._cond:
            return list(self._queue)

    def run(self):
        import psycopg

        while True:
            with self._cond:
                if self._failing:  # the next try: after RETRY_SECONDS, or now when the run ends
                    self._cond.wait_for(lambda: self._stopping, timeout=self.RETRY_SECONDS)
                else:
                    self._cond.wait_for(lambda: self._queue or self._stopping)
                if not self._queue:
                    if self._stopping:
                        break
                    continue
                text = self._queue[0]
            try:
                if self._conn is None:
                    self._conn = connect_sink(self._dsn)
                self._conn.execute(APPEND, (text,))
            except psycopg.Error as exc:
                self._failed(psycopg, exc)
                if self._stopping:
                    break
                continue
            with self._cond:
                self._queue.popleft()
                self._failing = False
                self._cond.notify_all()
        if self._conn is not None:
            self._conn.close()

    def _failed(self, psycopg, exc):
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if isinstance(exc, (psycopg.errors.UndefinedFunction, psycopg.errors.InvalidSchemaName)):
            problem = ("not-installed", f"betaskill.payops.audit: {describe_dsn(self._dsn)} has no payops.audit_append "
                       "yet (run payops:install): this run's events are kept and written as soon as it does")
        else:
            problem = (type(exc).__name__, f"betaskill.payops.audit: cannot write the audit trail to "
                       f"{describe_dsn(self._dsn)}: {sink_error(exc)}. THIS RUN IS NOT BEING AUDITED until it "
                       "can be; its events are kept and tried again")
        with self._cond:
            self._failing = True
            self._problems.append(problem)
            self._cond.notify_all()
