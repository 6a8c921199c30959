"""`payops run`: one catalog entry through ansible-runner, with readable progress and kept artefacts."""

from __future__ import annotations

import datetime
import getpass
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ansible_collections.betaskill.payops.plugins.module_utils.payops_redact import Redactor

from payops.catalog import Entry
from payops.errors import PayopsError


@dataclass
class RunRequest:
    entry: Entry
    root: Path
    inventory: Path
    extravars: dict[str, Any] = field(default_factory=dict)
    check: bool = False
    limit: str | None = None
    verbosity: int = 0


def parse_extravars(entry: Entry, items: list[str]) -> dict[str, Any]:
    """`-e key=value` (typed by the catalog), `-e @file.yml` and `-e '{"json": 1}'`, checked."""
    import yaml

    values: dict[str, Any] = {}
    for item in items:
        if item.startswith("@"):
            path = Path(item[1:])
            try:
                loaded = yaml.safe_load(path.read_text())
            except OSError as exc:
                raise PayopsError(f"-e {item}: cannot read {path}: {exc.strerror}") from None
            except yaml.YAMLError as exc:
                raise PayopsError(f"-e {item}: {path} is not valid YAML: {exc}") from None
            if not isinstance(loaded, dict):
                raise PayopsError(f"-e {item}: {path} must hold a mapping of variables")
            values.update(loaded)
        elif item.lstrip().startswith("{"):
            try:
                loaded = json.loads(item)
            except ValueError as exc:
                raise PayopsError(f"-e {item!r}: not a JSON object: {exc}") from None
            values.update(loaded)
        else:
            if "=" not in item:
                raise PayopsError(f"-e {item!r}: expected key=value, @file.yml or a JSON object")
            for pair in _split_pairs(item):
                key, _, raw = pair.partition("=")
                key = key.strip()
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                    raise PayopsError(f"-e {pair!r}: {key!r} is not a valid variable name")
                spec = entry.var(key)
                values[key] = spec.coerce(raw) if spec else raw
    for spec in entry.vars:
        if spec.name in values and not isinstance(values[spec.name], str) and spec.type == "str":
            values[spec.name] = str(values[spec.name])
    missing = [spec for spec in entry.vars if spec.required and values.get(spec.name) in (None, "")]
    if missing:
        wanted = "; ".join(f"-e {spec.name}=... ({spec.description or spec.type})" for spec in missing)
        raise PayopsError(f"{entry.command} needs {wanted}")
    return values


def _split_pairs(item: str) -> list[str]:
    """`a=1 b=2` as Ansible reads it; a value with spaces is quoted or passed as its own -e."""
    import shlex

    try:
        parts = shlex.split(item)
    except ValueError as exc:
        raise PayopsError(f"-e {item!r}: {exc}") from None
    if all("=" in part for part in parts):
        return parts
    return [item]


def new_run_dir(root: Path, command: str) -> Path:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    slug = re.sub(r"[^a-z0-9]+", "-", command.lower()).strip("-")[:48]
    run_dir = root / ".payops" / "runs" / f"{stamp}-{slug}-{secrets.token_hex(3)}"
    run_dir.mkdir(parents=True, mode=0o750)
    return run_dir


class Progress:
    """Prints a run as an operator reads it: plays, tasks, and one line per host result."""

    def __init__(self, out: TextIO, redactor: Redactor, learned: Path | None = None):
        self.out = out
        self.redactor = redactor
        self.failures: list[str] = []
        self._last_task: str | None = None
        self._play: str | None = None
        # The audit callback writes the secret values it learned from the inventory here.
        self._learned = learned
        self._learned_mtime = 0.0

    def learn(self) -> None:
        if self._learned is None:
            return
        try:
            mtime = self._learned.stat().st_mtime
            if mtime != self._learned_mtime:
                self.redactor.values.update(json.loads(self._learned.read_text()))
                self._learned_mtime = mtime
        except (OSError, ValueError):
            return

    def scrub(self, text: str) -> str:
        self.learn()
        return self.redactor.scrub_text(text)

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            # Shown with the play's first result: a play that --tags leaves empty is not shown.
            self._play = data.get("play") or data.get("name")
        elif kind == "playbook_on_task_start":
            self._last_task = data.get("task")
        elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped"):
            self._host_result(kind, data)
        elif kind == "warning" and event.get("stdout"):
            # Ansible's own warnings (the audit callback's among them) are for the operator too.
            self._print("  " + str(event["stdout"]).strip().replace("\n", "\n  "))
        return True

    def _host_result(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "runner_on_skipped":
            return
        if self._play:
            self._print(f"\n== {self._play}")
            self._play = None
        host = data.get("host", "?")
        task = data.get("task") or self._last_task or ""
        result = data.get("res") or {}
        if kind == "runner_on_ok":
            state = "changed" if result.get("changed") else "ok"
            line = f"  {state:<8} {host:<16} {task}"
            shown = task.startswith("Report") or " WARNING" in task
            message = result.get("payops_summary") or (result.get("msg") if shown else None)
            if isinstance(message, str) and message:
                line += "\n" + "\n".join(f"           {row}" for row in message.splitlines())
            self._print(line)
            return
        if data.get("ignore_errors"):
            self._print(f"  {'ignored':<8} {host:<16} {task}")
            return
        state = "FAILED" if kind == "runner_on_failed" else "UNREACH"
        message = result.get("msg") or result.get("stderr") or ""
        if result.get("censored"):
            message = "(output hidden: no_log)"
        first = str(message).strip().splitlines()[0] if str(message).strip() else ""
        self.failures.append(f"{host}: {task}: {first}")
        self._print(f"  {state:<8} {host:<16} {task}" + (f"\n           {message}" if message else ""))

    def _print(self, text: str) -> None:
        print(self.scrub(text), file=self.out, flush=True)


def redact_tree(directory: Path, redactor: Redactor) -> None:
    """Remove secret values and URL passwords from every file a run left behind."""
    for path in directory.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        clean = redactor.scrub_text(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")


def run(request: RunRequest, out: TextIO = sys.stdout) -> tuple[int, Path]:
    """Run the entry's playbook; return (exit code, the run's directory)."""
    import ansible_runner

    entry = request.entry
    assert entry.playbook is not None
    if not request.inventory.exists():
        raise PayopsError(f"inventory {request.inventory} does not exist")
    run_dir = new_run_dir(request.root, entry.command)
    extravars = {**request.extravars, "payops_report_dir": str(run_dir)}
    # Secret by name, or declared secret in the catalog; the audit callback adds what it learns.
    redactor = Redactor(extra_names=[spec.name for spec in entry.vars if spec.secret])
    redactor.learn_variables(request.extravars)
    cmdline = []
    if request.check:
        cmdline += ["--check", "--diff"]
    if request.limit:
        cmdline += ["--limit", request.limit]
    env = {
        "ANSIBLE_CONFIG": str(request.root / "ansible.cfg"),
        "PAYOPS_RUN_ID": run_dir.name,
        "PAYOPS_COMMAND": entry.command,
        "PAYOPS_SOURCE": "payops",
        "PAYOPS_OPERATOR": os.environ.get("PAYOPS_OPERATOR") or getpass.getuser(),
        "PAYOPS_HOME": str(request.root),
        "ANSIBLE_NOCOLOR": "1",
        # ansible-playbook from the same environment as payops, whatever PATH the caller has.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    mode = " in check mode (nothing is changed)" if request.check else ""
    print(f"payops: {entry.command} - {entry.purpose}{mode}", file=out, flush=True)
    # ansible-runner keeps its inputs (extra variables included) in private_data_dir: a private
    # temporary folder, removed afterwards, so that no secret given with -e stays on disk.
    private = Path(tempfile.mkdtemp(prefix="payops-run-"))
    env["PAYOPS_SECRETS_FILE"] = str(private / "learned-secrets.json")
    progress = Progress(out, redactor, private / "learned-secrets.json")
    try:
        result = ansible_runner.run(
            private_data_dir=str(private),
            artifact_dir=str(run_dir.parent),
            ident=run_dir.name,
            project_dir=str(request.root),
            playbook=str(request.root / entry.playbook),
            inventory=str(request.inventory.resolve()),
            extravars=extravars,
            cmdline=" ".join(cmdline) if cmdline else None,
            envvars=env,
            quiet=True,
            verbosity=request.verbosity or None,
            event_handler=progress,
            suppress_env_files=True,
        )
        progress.learn()
        redact_tree(run_dir, progress.redactor)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    rc = result.rc if result.rc is not None else 1
    status = result.status
    print("", file=out)
    if status == "successful" and rc == 0:
        print(f"payops: {entry.command} succeeded", file=out)
    else:
        print(f"payops: {entry.command} {status} (exit {rc})", file=out)
        for failure in progress.failures:
            print(f"  {progress.scrub(failure)}", file=out)
        if not progress.failures:  # Ansible stopped before any task (a playbook that does not parse, ...)
            for line in ansible_error(run_dir / "stdout"):
                print(f"  {progress.scrub(line)}", file=out)
    print(f"payops: run artefacts in {run_dir}", file=out)
    return (0 if status == "successful" and rc == 0 else (rc or 1)), run_dir


def ansible_error(stdout: Path, limit: int = 12) -> list[str]:
    """Ansible's own error message from a run's stdout: from its first [ERROR] line, a few lines."""
    try:
        lines = stdout.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for number, line in enumerate(lines):
        if "ERROR" in line:
            return [text for text in lines[number:number + limit] if text.strip()]
    return []
