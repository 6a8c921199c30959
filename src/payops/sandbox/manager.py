"""The local sandbox: a small, real BetaSkill platform on loopback, started and stopped as the user.

    payops sandbox up | down [--purge] | status [--json] | traffic

Everything lives under the state directory (.sandbox/ in the checkout, or $PAYOPS_SANDBOX_DIR):
state.json (ports, credentials, pids) and one directory per service holding its config, data and
log (<service>/<service>.log). Credentials are generated once and kept across up/down, so that
inventories/local and the tests see stable values; `down --purge` forgets them with the data.

The app and the frontend run from releases, as in production: releases/<id>/ is the release store
(the fixture releases 1.0.0, 1.1.0 and 1.2.0, built by release_store and also published to the
S3 bucket betaskill-releases), and hosts/web-1/frontend and hosts/app-1/app are the two deploy
roots ({releases/<id>, shared, current}). A deploy root without `current` gets release 1.0.0
installed the way a deployment would; after that `current` is the deployments' own. The app is
payops.sandbox.supervisor holding the app's socket and running <app root>/current/bin/betaskill-app
(SIGHUP to it restarts the app into whatever `current` then is, failing no request); the app's
configuration is <app root>/shared/config.json, which each release links as its config.json.

`up` is idempotent: a service that is ours (pid alive, start time and command line as recorded)
and healthy is reused; one whose config changed is restarted; a dead one (a crash, a reboot) is
started again. A service keeps the port recorded in state.json; when another program holds it
(a second sandbox on the machine, most often), `up` warns on stderr, naming the service, the port
and the one it moves to. `down` stops everything it started and then sweeps up any process still
carrying the sandbox's environment marker, so that nothing is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO

from payops.errors import PayopsError
from payops.paths import project_root
from payops.sandbox import process, release_store, services
from payops.sandbox.ports import assign_ports
from payops.sandbox.ports import parse_port_overrides as _parse_port_overrides
from payops.sandbox.services import SERVICES, Service
from payops.sandbox.services.base import HOST, Context, MissingPackage, State, write_private
from payops.sandbox.services.postgres import (
    APP_DB_ROLE,
    APP_DB_USER,
    AUDIT_DB_USER,
    DB_NAME,
    DB_USER,
    app_dsn,
    audit_dsn,
)
from payops.sandbox.services.postgres import postgres_bindir as postgres_bindir  # where tests find it
from payops.sandbox.services.s3 import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, S3_BUCKET, S3_REGION

STATE_VERSION = 1
PREFERRED_PORTS = MappingProxyType(services.preferred_ports())
INITIAL_RELEASE = "1.0.0"  # what a deploy root without `current` gets


@dataclass
class UpReport:
    started: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def default_state_dir(root: Path | None = None) -> Path:
    env = os.environ.get("PAYOPS_SANDBOX_DIR")
    if env:
        return Path(env).resolve()
    return (root or project_root()) / ".sandbox"


def parse_port_overrides(text: str | None) -> dict[str, int]:
    """PAYOPS_SANDBOX_PORTS="edge=28080,app=28081": other preferred ports (a second sandbox, tests)."""
    return _parse_port_overrides(text, PREFERRED_PORTS)


class Sandbox:
    def __init__(self, state_dir: Path | None = None, preferred_ports: dict[str, int] | None = None,
                 out: TextIO | None = None) -> None:
        self.root = project_root()
        self.dir = (state_dir or default_state_dir(self.root)).resolve()
        self.preferred = {**PREFERRED_PORTS, **parse_port_overrides(os.environ.get("PAYOPS_SANDBOX_PORTS")),
                          **(preferred_ports or {})}
        self.out = out or sys.stderr
        self.ctx = Context(dir=self.dir, root=self.root, say=self.say)
        self.services: dict[str, Service] = services.build(self.ctx)

    @property
    def force_edge(self) -> bool:
        """True: run the edge playbook even when its inputs did not change."""
        return self.ctx.force_edge

    @force_edge.setter
    def force_edge(self, value: bool) -> None:
        self.ctx.force_edge = value

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def release_store(self) -> Path:
        return self.ctx.release_store

    def say(self, message: str) -> None:
        print(f"sandbox: {message}", file=self.out, flush=True)

    # ----------------------------------------------------------------------------------- state
    def load_state(self, create: bool = True) -> State:
        """state.json; with create, the credentials a first `up` needs are generated (once)."""
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            state = {}
        except ValueError as exc:
            raise PayopsError(f"{self.state_path} is not valid JSON ({exc}); "
                              "fix or remove it (`payops sandbox down --purge` starts afresh)") from None
        state.setdefault("version", STATE_VERSION)
        state.setdefault("ports", {})
        state.setdefault("processes", {})
        credentials = state.setdefault("credentials", {})
        if not create and not credentials:
            state["credentials"] = dict.fromkeys(
                ("postgres_password", "app_db_password", "audit_db_password", "ikhokha_app_id",
                 "ikhokha_app_secret"), None)
            state["credentials"].update(aws_access_key_id=AWS_ACCESS_KEY_ID,
                                        aws_secret_access_key=AWS_SECRET_ACCESS_KEY)
            return state
        credentials.setdefault("postgres_password", secrets.token_urlsafe(18))
        credentials.setdefault("app_db_password", secrets.token_urlsafe(18))
        credentials.setdefault("audit_db_password", secrets.token_urlsafe(18))
        credentials.setdefault("ikhokha_app_id", "IKSANDBOX" + secrets.token_hex(6).upper())
        credentials.setdefault("ikhokha_app_secret", secrets.token_urlsafe(32))
        credentials.setdefault("aws_access_key_id", AWS_ACCESS_KEY_ID)
        credentials.setdefault("aws_secret_access_key", AWS_SECRET_ACCESS_KEY)
        return state

    def save_state(self, state: State) -> None:
        with self.ctx.state_lock:
            state.update(self.endpoints(state))
            text = json.dumps(state, indent=2, sort_keys=True) + "\n"
            self.dir.mkdir(parents=True, exist_ok=True)
            write_private(self.state_path, text)

    def endpoints(self, state: State) -> dict[str, Any]:
        """The flat keys of state.json and `status --json`: every endpoint and credential."""
        ports, creds = state["ports"], state["credentials"]

        def url(name: str, path: str = "") -> str | None:
            return f"http://{HOST}:{ports[name]}{path}" if ports.get(name) else None

        password = creds["postgres_password"]
        pg_port = ports.get("postgres")
        return {
            "state_dir": str(self.dir),
            "postgres_host": HOST,
            "postgres_port": pg_port,
            "postgres_user": DB_USER,
            "postgres_password": password,
            "postgres_db": DB_NAME,
            "postgres_dsn": (f"postgresql://{DB_USER}:{password}@{HOST}:{pg_port}/{DB_NAME}"
                             if pg_port else None),
            # The app's own login (Supabase's authenticator acting as service_role): what the app can do.
            "app_db_user": APP_DB_USER,
            "app_db_role": APP_DB_ROLE,
            "app_db_password": creds["app_db_password"],
            "app_db_dsn": app_dsn(state) if pg_port else None,
            # The audit callback's login (PAYOPS_AUDIT_DSN): it may append to payops.audit_trail, nothing else.
            "audit_db_user": AUDIT_DB_USER,
            "audit_db_password": creds["audit_db_password"],
            "audit_dsn": audit_dsn(state) if pg_port else None,
            "s3_endpoint": url("s3"),
            "s3_bucket": S3_BUCKET,
            "s3_region": S3_REGION,
            "aws_access_key_id": creds["aws_access_key_id"],
            "aws_secret_access_key": creds["aws_secret_access_key"],
            "ikhokha_url": url("ikhokha", "/public-api/v1/api"),
            "ikhokha_admin_url": url("ikhokha", "/_sim"),
            "ikhokha_app_id": creds["ikhokha_app_id"],
            "ikhokha_app_secret": creds["ikhokha_app_secret"],
            "app_url": url("app"),
            "edge_url": url("edge"),
            "prometheus_url": url("prometheus"),
            "alertmanager_url": url("alertmanager"),
            "notify_url": url("sink", "/notify"),
            "sink_url": url("sink"),
            "release_store": str(self.release_store),
            "release_bucket": release_store.RELEASE_BUCKET,
            "release_ids": list(release_store.fixture_ids()),
        }

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One `up` or `down` at a time per state directory (two test sessions, a impatient user)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)  # noqa: S103 - the postgres user must traverse it; secrets are 0600
        with (self.dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -------------------------------------------------------------------------------------- up
    def wanted(self, only: list[str] | None) -> list[str]:
        """The services an `up --only` starts: those named and what they need, in start order."""
        return services.with_dependencies(only) if only else list(SERVICES)

    def up(self, only: list[str] | None = None) -> UpReport:
        chosen = [self.services[name] for name in self.wanted(only)]
        report = UpReport()
        began = time.monotonic()
        with self.locked():
            state = self.load_state()
            for service in chosen:
                service.timings.clear()
                service.before_up(state)
            running = self.find_running(chosen, state, report)
            self.find_tools(chosen)
            for warning in assign_ports(state["ports"], [s.name for s in chosen], running, self.preferred,
                                        process.port_is_free, lambda avoid: process.free_port(HOST, avoid)):
                self.say(warning)
            self.save_state(state)
            self.write_configs(chosen, state, running, report)

            # The release store, and release 1.0.0 on a deploy root that has no `current` yet;
            # before nginx and the app start, which serve and run `current`.
            t0 = time.monotonic()
            self.prepare_releases(chosen)
            report.timings["releases"] = time.monotonic() - t0

            started = self.start_missing(chosen, running, state, report)
            self.save_state(state)

        for service in chosen:
            report.timings.update(service.timings)
        report.started = [s.name for s in chosen if s.name in started]
        report.reused = [s.name for s in chosen if s.name in running and s.name not in started]
        report.timings["total"] = time.monotonic() - began
        return report

    def find_running(self, chosen: list[Service], state: State, report: UpReport) -> dict[str, int]:
        """Our live processes that answer, by name; one that runs but does not answer is stopped."""
        running: dict[str, int] = {}
        for service in chosen:
            pid = service.pid(state)
            if pid is None:
                continue
            if process.wait_until(lambda s=service: s.healthy(state), 3.0):
                running[service.name] = pid
            else:
                self.say(f"{service.name} (pid {pid}) runs but does not answer; restarting it")
                self.stop_service(service, state)
                report.restarted.append(service.name)
        return running

    def find_tools(self, chosen: list[Service]) -> None:
        """Find each service's programs, or fail naming every Debian package that is missing."""
        missing = []
        for service in chosen:
            try:
                service.find_tools()
            except MissingPackage as exc:
                missing.append(exc.package)
        if missing:
            raise PayopsError("missing Debian package(s): "
                              + ", ".join(f"{p.name} (for {p.program})" for p in missing)
                              + "; scripts/bootstrap installs them (or: apt-get install "
                              + " ".join(p.name for p in missing) + ")")

    def write_configs(self, chosen: list[Service], state: State, running: dict[str, int],
                      report: UpReport) -> None:
        """Rewrite every config; a running service whose config changed is restarted."""
        for service in chosen:
            if self.write_config(service, state) and service.name in running:
                self.say(f"{service.name}'s configuration changed; restarting it")
                self.stop_service(service, state)
                running.pop(service.name)
                report.restarted.append(service.name)

    def write_config(self, service: Service, state: State) -> bool:
        """Write the service's config; True when it changed (not when it is new)."""
        service.directory.mkdir(parents=True, exist_ok=True)
        content = service.config(state)
        if content is None:
            return False
        path = service.config_path
        try:
            before = path.read_text()
        except FileNotFoundError:
            before = None
        if before == content:
            return False
        write_private(path, content)
        return before is not None

    def prepare_releases(self, chosen: list[Service]) -> None:
        """Build the release store (files rewritten only when missing or different), then install
        INITIAL_RELEASE on each deploy root that has no `current` (one that has is never touched)."""
        written = release_store.ensure_store(self.release_store)
        if written:
            self.say(f"release store {self.release_store}: wrote {len(written)} file(s) of "
                     + ", ".join(sorted({item.split('/')[0] for item in written})))
        store = self.release_store / INITIAL_RELEASE
        for service in chosen:
            root = service.deploy_root()
            if root and release_store.install(root.path, INITIAL_RELEASE, store / root.artefact, root.config_link):
                self.say(f"installed release {INITIAL_RELEASE} in {root.path} "
                         f"(current -> releases/{INITIAL_RELEASE})")

    def start_missing(self, chosen: list[Service], running: dict[str, int], state: State,
                      report: UpReport) -> list[str]:
        """Start what does not run (the in_background ones in threads meanwhile); what was started."""
        started: list[str] = []
        errors: list[BaseException] = []
        threads = [self.start_in_background(s, state, s.name in running, started, errors)
                   for s in chosen if s.in_background]
        try:
            self.start_and_wait([s for s in chosen if not s.in_background], running, state, started, report)
        finally:
            # Never leave the playbook running behind a failed `up`.
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]
        return started

    def start_in_background(self, service: Service, state: State, was_running: bool, started: list[str],
                  errors: list[BaseException]) -> threading.Thread:
        """Start (or, when it runs, refresh) a slow service while the main thread starts the others."""
        def run() -> None:
            try:
                if was_running:
                    service.refresh(state)
                else:
                    service.start(state)
                    started.append(service.name)
            except BaseException as exc:  # re-raised in the main thread
                errors.append(exc)

        thread = threading.Thread(target=run, name=f"sandbox-{service.name}", daemon=True)
        thread.start()
        return thread

    def start_and_wait(self, chosen: list[Service], running: dict[str, int], state: State,
                       started: list[str], report: UpReport) -> None:
        """Start what is not running, dependencies first, then wait until each one answers.

        What does not need a ready_before_dependents service (PostgreSQL) is started first, without
        waiting; then each of those is started and prepared; then what needs them.
        """
        gates = [s for s in chosen if s.ready_before_dependents]
        gate_names = {s.name for s in gates}
        others = [s for s in chosen if not s.ready_before_dependents]
        behind = [s for s in others if services.waits_for(s.name, gate_names)]
        spawned = [self.spawn(s, state, started) for s in others if s not in behind and s.name not in running]
        for gate in gates:
            t0 = time.monotonic()
            if gate.name not in running:
                gate.start(state)
                started.append(gate.name)
            gate.prepare(state)
            report.timings[gate.name] = time.monotonic() - t0
        spawned += [self.spawn(s, state, started) for s in behind if s.name not in running]
        t0 = time.monotonic()
        for service in spawned:
            service.wait_ready(state)
        report.timings["ready"] = time.monotonic() - t0
        for service in others:
            service.prepare(state)

    def spawn(self, service: Service, state: State, started: list[str]) -> Service:
        service.start(state)
        started.append(service.name)
        self.save_state(state)  # at once: a failing `up` must not lose track of what it started
        return service

    # ------------------------------------------------------------------------------------ down
    def stop_service(self, service: Service, state: State) -> bool:
        pid = service.pid(state)
        if pid is not None:
            service.stop(state, pid)
        state["processes"].pop(service.name, None)
        return pid is not None

    def down(self, purge: bool = False) -> list[str]:
        stopped: list[str] = []
        if not self.dir.exists():
            return stopped
        with self.locked():
            state = self.load_state()
            for service in reversed(self.services.values()):
                if self.stop_service(service, state):
                    stopped.append(service.name)
                    self.say(f"stopped {service.name}")
            self.sweep_leftovers()
            if purge:
                for child in self.dir.iterdir():
                    if child.name != ".lock":
                        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            else:
                self.save_state(state)
        if purge:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.say(f"removed {self.dir}")
        return stopped

    def sweep_leftovers(self) -> None:
        """Whatever still carries our marker (a worker of a crashed master, an orphan) goes too."""
        for info in process.marked_processes(self.dir):
            self.say(f"stopping leftover process {info.pid}: {info.command[:100]}")
            process.terminate(info.pid, 5.0, group=info.is_group_leader)
        remaining = process.marked_processes(self.dir)
        if remaining:
            raise PayopsError("could not stop: "
                              + ", ".join(f"{p.pid} ({p.command[:60]})" for p in remaining))

    # ---------------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        state = self.load_state(create=False)

        def one(service: Service) -> tuple[str, dict[str, Any]]:
            pid = service.pid(state)
            condition = "stopped"
            if pid is not None:
                condition = "running" if service.healthy(state) else "unhealthy"
            return service.name, {"state": condition, "pid": pid, "port": service.port(state),
                                  "log": str(service.log_path)}

        with ThreadPoolExecutor(max_workers=len(self.services)) as pool:
            statuses = dict(pool.map(one, self.services.values()))
        result = self.endpoints(state)
        result["services"] = statuses
        return result
