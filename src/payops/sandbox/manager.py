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
started again. `down` stops everything it started and then sweeps up any process still carrying
the sandbox's environment marker, so that nothing is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.resources
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import string
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests

from payops.errors import PayopsError
from payops.paths import project_root
from payops.sandbox import process, release_store

STATE_VERSION = 1
HOST = "127.0.0.1"
DB_NAME = "betaskill"
DB_USER = "postgres"
S3_BUCKET = "payops-backups"
S3_REGION = "us-east-1"
# moto accepts any key; fixed values keep the inventory and the docs simple.
AWS_ACCESS_KEY_ID = "sandbox-access-key"
AWS_SECRET_ACCESS_KEY = "sandbox-secret-key"  # noqa: S105 - a fake key for moto on loopback

# Start order; `down` goes backwards. Each service's dependencies come before it.
SERVICES = ("postgres", "s3", "sink", "ikhokha", "app", "alertmanager", "prometheus", "edge")
PREFERRED_PORTS = {
    "edge": 18080, "app": 18081, "ikhokha": 18082, "s3": 18083, "sink": 18084,
    "postgres": 15432, "prometheus": 19090, "alertmanager": 19093,
}
DEPENDS_ON = {
    "app": ("postgres", "ikhokha"),
    "alertmanager": ("sink",),
    "prometheus": ("app", "alertmanager"),
    "edge": ("app",),
}
# The Debian package (or pip requirement) that provides each service's program.
PACKAGES = {
    "postgres": ("initdb/pg_ctl", "postgresql"),
    "edge": ("nginx", "nginx"),
    "prometheus": ("prometheus", "prometheus"),
    "alertmanager": ("prometheus-alertmanager", "prometheus-alertmanager"),
}

# Alert thresholds: the runbook's targets. Short `for:` so that tests see them fire.
ALERT_VALUES = {
    "rate_window": "1m",
    "alert_for": "5s",
    "payment_success_rate_min": 0.95,
    "response_time_max_seconds": 5,
    "error_rate_max": 0.01,
    "webhook_backlog_max": 0,
    "webhook_backlog_for": "30s",
}

INITIAL_RELEASE = "1.0.0"  # what a deploy root without `current` gets
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
EDGE_PLAYBOOK = "playbooks/sandbox-edge.yml"


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
    overrides: dict[str, int] = {}
    for item in (text or "").replace(";", ",").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in PREFERRED_PORTS or not value.strip().isdigit():
            raise PayopsError(f"bad port override {item.strip()!r}: use NAME=PORT with NAME one of "
                              + ", ".join(sorted(PREFERRED_PORTS)))
        overrides[name] = int(value)
    return overrides


class Sandbox:
    def __init__(self, state_dir: Path | None = None, preferred_ports: dict[str, int] | None = None,
                 out: TextIO | None = None) -> None:
        self.root = project_root()
        self.dir = (state_dir or default_state_dir(self.root)).resolve()
        self.preferred = {**PREFERRED_PORTS, **parse_port_overrides(os.environ.get("PAYOPS_SANDBOX_PORTS")),
                          **(preferred_ports or {})}
        self.out = out or sys.stderr
        self.python = sys.executable
        self.as_root = os.geteuid() == 0
        self.force_edge = False  # True: run the edge playbook even when its inputs did not change
        self._state_lock = threading.Lock()  # the edge thread and the main thread both record state

    # ----------------------------------------------------------------------------------- paths
    def service_dir(self, name: str) -> Path:
        return self.dir / name

    def log_path(self, name: str) -> Path:
        if name == "edge":
            return self.service_dir("edge") / "logs" / "error.log"
        return self.service_dir(name) / f"{name}.log"

    def config_path(self, name: str) -> Path:
        if name == "app":  # beside the app's releases, where each one links it from
            return self.app_root / "shared" / "config.json"
        return self.service_dir(name) / {
            "prometheus": "prometheus.yml", "alertmanager": "alertmanager.yml",
        }.get(name, "config.json")

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def release_store(self) -> Path:
        return self.dir / "releases"

    @property
    def frontend_root(self) -> Path:
        """web-1's deploy root for the frontend: {releases/<id>, shared, current}; nginx serves current."""
        return self.dir / "hosts" / "web-1" / "frontend"

    @property
    def app_root(self) -> Path:
        """app-1's deploy root for the app: {releases/<id>, shared, current}; the app runs current."""
        return self.dir / "hosts" / "app-1" / "app"

    @property
    def app_pid_file(self) -> Path:
        """The app's supervisor's pid (SIGHUP to it restarts the app)."""
        return self.service_dir("app") / "supervisor.pid"

    @property
    def pg_data(self) -> Path:
        return self.service_dir("postgres") / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.service_dir("postgres") / "run"

    @property
    def nginx_conf(self) -> Path:
        return self.service_dir("edge") / "conf" / "nginx.conf"

    @property
    def nginx_pid_file(self) -> Path:
        return self.service_dir("edge") / "run" / "nginx.pid"

    def say(self, message: str) -> None:
        print(f"sandbox: {message}", file=self.out, flush=True)

    # ----------------------------------------------------------------------------------- state
    def load_state(self, create: bool = True) -> dict[str, Any]:
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
                ("postgres_password", "ikhokha_app_id", "ikhokha_app_secret"), None)
            state["credentials"].update(aws_access_key_id=AWS_ACCESS_KEY_ID,
                                        aws_secret_access_key=AWS_SECRET_ACCESS_KEY)
            return state
        credentials.setdefault("postgres_password", secrets.token_urlsafe(18))
        credentials.setdefault("ikhokha_app_id", "IKSANDBOX" + secrets.token_hex(6).upper())
        credentials.setdefault("ikhokha_app_secret", secrets.token_urlsafe(32))
        credentials.setdefault("aws_access_key_id", AWS_ACCESS_KEY_ID)
        credentials.setdefault("aws_secret_access_key", AWS_SECRET_ACCESS_KEY)
        return state

    def save_state(self, state: dict[str, Any]) -> None:
        with self._state_lock:
            state.update(self.endpoints(state))
            text = json.dumps(state, indent=2, sort_keys=True) + "\n"
            self.dir.mkdir(parents=True, exist_ok=True)
            write_private(self.state_path, text)

    def endpoints(self, state: dict[str, Any]) -> dict[str, Any]:
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

    # ------------------------------------------------------------------------------ processes
    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[process.SANDBOX_MARKER] = str(self.dir)
        env["PAYOPS_SANDBOX_DIR"] = str(self.dir)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def markers(self, name: str) -> tuple[list[str], Path | None]:
        """What a live process of this service shows in its command line (and working directory)."""
        if name == "postgres":
            return ["postgres", str(self.pg_data)], None
        if name == "edge":
            return ["nginx", str(self.nginx_conf)], None
        if name == "s3":
            return ["moto", "-p"], self.service_dir("s3")
        if name == "app":
            return ["payops.sandbox.supervisor", str(self.app_pid_file)], None
        if name in ("sink", "ikhokha"):
            return [f"payops.sandbox.{name}", str(self.config_path(name))], None
        return [name, str(self.config_path(name))], None

    def pid_of(self, name: str, state: dict[str, Any]) -> int | None:
        """The pid of our live process for the service, or None (never a recycled pid)."""
        markers, cwd = self.markers(name)
        if name in ("postgres", "edge"):
            pid_file = self.pg_data / "postmaster.pid" if name == "postgres" else self.nginx_pid_file
            pid = read_pid_file(pid_file)
            return pid if process.is_ours(pid, markers) else None
        record = state["processes"].get(name) or {}
        pid = record.get("pid")
        if process.is_ours(pid, markers, record.get("start_time"), cwd):
            return pid
        return None

    # ----------------------------------------------------------------------------------- health
    def healthy(self, name: str, state: dict[str, Any], timeout: float = 1.0) -> bool:
        ports, creds = state["ports"], state["credentials"]
        port = ports.get(name)
        if not port:
            return False
        base = f"http://{HOST}:{port}"
        try:
            if name == "postgres":
                import psycopg

                with psycopg.connect(host=HOST, port=port, user=DB_USER, dbname="postgres",
                                     password=creds["postgres_password"],
                                     connect_timeout=max(1, int(timeout))) as conn:
                    conn.execute("SELECT 1")
                return True
            path = {
                "s3": "/", "sink": "/health", "ikhokha": "/_sim/health", "app": "/api/health",
                "prometheus": "/-/ready", "alertmanager": "/-/ready", "edge": "/",
            }[name]
            response = requests.get(base + path, timeout=timeout)
            if name in ("s3", "edge"):
                # Any HTTP answer: moto lists buckets, and a switched-on edge answers 503 by design.
                return response.status_code < 600
            return response.status_code == 200
        except Exception:  # not answering, for whatever reason, is unhealthy
            return False

    def wait_ready(self, name: str, state: dict[str, Any], timeout: float = READY_TIMEOUT) -> None:
        def check() -> bool:
            if name not in ("edge", "postgres"):
                record = state["processes"].get(name) or {}
                if not process.proc_info(record.get("pid")):
                    raise process.StopWaiting
            return self.healthy(name, state)

        try:
            ok = process.wait_until(check, timeout, interval=0.1)
        except process.StopWaiting:
            self.fail(name, "exited while starting")
        if not ok:
            self.fail(name, f"did not become ready within {timeout:.0f} s")

    def fail(self, name: str, what: str) -> None:
        log = self.log_path(name)
        raise PayopsError(f"{name} {what}; the last lines of {log}:\n{process.tail(log)}")

    # -------------------------------------------------------------------------------------- up
    def check_tools(self, names: list[str]) -> dict[str, str]:
        """Find each needed program, or fail naming the package that provides it."""
        tools: dict[str, str] = {}
        missing: list[str] = []
        for name in names:
            if name == "postgres":
                bindir = postgres_bindir()
                if bindir is None:
                    missing.append("postgresql (for initdb and pg_ctl)")
                else:
                    tools["initdb"], tools["pg_ctl"] = str(bindir / "initdb"), str(bindir / "pg_ctl")
            elif name in PACKAGES:
                program, package = PACKAGES[name]
                found = shutil.which(program) or (
                    f"/usr/sbin/{program}" if Path(f"/usr/sbin/{program}").exists() else None)
                if found:
                    tools[name] = found
                else:
                    missing.append(f"{package} (for {program})")
            elif name == "s3":
                found = beside_python("moto_server") or shutil.which("moto_server")
                if found:
                    tools["s3"] = found
                else:
                    raise PayopsError("moto_server is not installed in this environment: run "
                                      "scripts/bootstrap (or pip install 'moto[server]')")
            elif importlib.util.find_spec(f"payops.sandbox.{name}") is None:
                raise PayopsError(f"payops.sandbox.{name} is missing from this checkout "
                                  f"({name} cannot start)")
        if "edge" in names:
            playbook = beside_python("ansible-playbook") or shutil.which("ansible-playbook")
            if not playbook:
                raise PayopsError("ansible-playbook is not installed: run scripts/bootstrap")
            tools["ansible-playbook"] = playbook
        if missing:
            packages = " ".join(item.split(" ")[0] for item in missing)
            raise PayopsError("missing Debian package(s): " + ", ".join(missing)
                              + f"; scripts/bootstrap installs them (or: apt-get install {packages})")
        return tools

    def wanted(self, only: list[str] | None) -> list[str]:
        if not only:
            return list(SERVICES)
        unknown = sorted(set(only) - set(SERVICES))
        if unknown:
            raise PayopsError(f"unknown service(s) {', '.join(unknown)}: choose from {', '.join(SERVICES)}")
        chosen: set[str] = set()
        pending = list(only)
        while pending:
            name = pending.pop()
            if name not in chosen:
                chosen.add(name)
                pending.extend(DEPENDS_ON.get(name, ()))
        return [name for name in SERVICES if name in chosen]

    def assign_ports(self, state: dict[str, Any], names: list[str], running: dict[str, int]) -> None:
        ports = state["ports"]
        taken = {ports[name] for name in running if ports.get(name)}
        for name in names:
            if name in running:
                continue
            candidates = [p for p in (ports.get(name), self.preferred[name]) if p]
            chosen = next((p for p in dict.fromkeys(candidates)
                           if p not in taken and process.port_is_free(p)), None)
            if chosen is None:
                chosen = process.free_port(HOST, avoid=taken | set(self.preferred.values()))
                self.say(f"port {candidates[0]} for {name} is in use by another program; "
                         f"using {chosen} instead")
            ports[name] = chosen
            taken.add(chosen)

    def up(self, only: list[str] | None = None) -> UpReport:
        names = self.wanted(only)
        report = UpReport()
        began = time.monotonic()
        with self.locked():
            state = self.load_state()
            if "app" in names:
                self.stop_unsupervised_app(state)
            running: dict[str, int] = {}
            for name in names:
                pid = self.pid_of(name, state)
                if pid is None:
                    continue
                if process.wait_until(lambda n=name: self.healthy(n, state), 3.0):
                    running[name] = pid
                else:
                    self.say(f"{name} (pid {pid}) runs but does not answer; restarting it")
                    self.stop_service(name, state)
                    report.restarted.append(name)
            tools = self.check_tools(names)
            self.assign_ports(state, names, running)
            self.save_state(state)

            # Rewrite every config; a running service whose config changed is restarted.
            for name in names:
                if self.write_config(name, state) and name in running and name not in ("postgres", "edge"):
                    self.say(f"{name}'s configuration changed; restarting it")
                    self.stop_service(name, state)
                    running.pop(name)
                    report.restarted.append(name)

            # The release store, and release 1.0.0 on a deploy root that has no `current` yet;
            # before nginx and the app start, which serve and run `current`.
            t0 = time.monotonic()
            self.prepare_releases(names)
            report.timings["releases"] = time.monotonic() - t0

            # The edge playbook is the slowest step (Ansible's per-task cost) and needs only the
            # ports in state.json: it runs while the other services start.
            edge_thread = None
            edge_error: list[BaseException] = []
            if "edge" in names:
                edge_thread = threading.Thread(
                    target=self._converge_edge_guarded,
                    args=(state, tools, "edge" in running, report, edge_error), daemon=True)
                edge_thread.start()

            started_here: list[str] = []
            try:
                self._start_and_wait(names, running, state, tools, started_here, report)
            finally:
                # Never leave the playbook running behind a failed `up`.
                if edge_thread is not None:
                    edge_thread.join()
            if edge_error:
                raise edge_error[0]
            self.save_state(state)

        started = set(started_here) | set(report.started)
        report.started = [n for n in names if n in started]
        report.reused = [n for n in names if n in running and n not in report.started]
        report.timings["total"] = time.monotonic() - began
        return report

    def _start_and_wait(self, names: list[str], running: dict[str, int], state: dict[str, Any],
                        tools: dict[str, str], started_here: list[str], report: UpReport) -> None:
        """Start what is not running, dependencies first, then wait until each one answers."""
        for name in names:
            if name in ("postgres", "app", "prometheus", "edge") or name in running:
                continue
            self.start_process(name, state, tools)
            started_here.append(name)
        if "postgres" in names:
            t0 = time.monotonic()
            if "postgres" not in running:
                self.start_postgres(state, tools)
                started_here.append("postgres")
            self.prepare_database(state)
            report.timings["postgres"] = time.monotonic() - t0
        for name in ("app", "prometheus"):
            if name in names and name not in running:
                self.start_process(name, state, tools)
                started_here.append(name)
        t0 = time.monotonic()
        for name in names:
            if name in started_here and name not in ("postgres", "edge"):
                self.wait_ready(name, state)
        report.timings["ready"] = time.monotonic() - t0
        if "s3" in names:
            self.ensure_bucket(state)
            uploaded = release_store.publish(s3_client(self.endpoints(state)), self.release_store)
            if uploaded:
                self.say(f"published the release store to s3://{release_store.RELEASE_BUCKET}/releases/ "
                         f"({uploaded} objects)")

    def _converge_edge_guarded(self, state: dict[str, Any], tools: dict[str, str], was_running: bool,
                               report: UpReport, errors: list[BaseException]) -> None:
        try:
            self.converge_edge(state, tools, was_running, report)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    # --------------------------------------------------------------------------- each service
    def write_config(self, name: str, state: dict[str, Any]) -> bool:
        """Write the service's config; True when it changed."""
        ports, creds = state["ports"], state["credentials"]
        directory = self.service_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        info = self.endpoints(state)
        content: str | None = None
        if name == "sink":
            content = as_json({"host": HOST, "port": ports["sink"],
                               "log_path": str(directory / "messages.jsonl")})
        elif name == "ikhokha":
            content = as_json({
                "host": HOST, "port": ports["ikhokha"],
                "app_id": creds["ikhokha_app_id"], "app_secret": creds["ikhokha_app_secret"],
                "data_path": str(directory / "ikhokha.sqlite3"),
                "callback_attempts": 5, "callback_backoff_seconds": 0.5,
            })
        elif name == "app":
            content = as_json({
                "host": HOST, "port": ports["app"], "dsn": info["postgres_dsn"],
                "ikhokha_url": info["ikhokha_url"], "ikhokha_app_id": creds["ikhokha_app_id"],
                "ikhokha_app_secret": creds["ikhokha_app_secret"],
                "public_url": info["edge_url"] or info["app_url"],
                "version": "sandbox", "environment": "local",
            })
        elif name == "alertmanager":
            content = render("alertmanager.yml", webhook_url=f"http://{HOST}:{ports['sink']}/alertmanager")
        elif name == "prometheus":
            rules = directory / "alerts.yml"
            write_private(rules, render("alerts.yml", **alert_values()))
            content = render("prometheus.yml", rules_path=str(rules), app_port=ports["app"],
                             prometheus_port=ports["prometheus"], alertmanager_port=ports["alertmanager"])
        if content is None:
            return False
        path = self.config_path(name)
        try:
            before = path.read_text()
        except FileNotFoundError:
            before = None
        if before == content:
            return False
        write_private(path, content)
        return before is not None

    def command(self, name: str, state: dict[str, Any], tools: dict[str, str]) -> list[str]:
        port = state["ports"][name]
        directory = self.service_dir(name)
        if name == "s3":
            return [tools["s3"], "-H", HOST, "-p", str(port)]
        if name == "app":
            # The supervisor holds the socket; the app is whatever release `current` is at each start.
            current = self.app_root / "current"
            return [self.python, "-m", "payops.sandbox.supervisor", "--listen", f"{HOST}:{port}",
                    "--pid-file", str(self.app_pid_file), "--",
                    self.python, str(current / "bin" / "betaskill-app"), "--config", str(current / "config.json")]
        if name in ("sink", "ikhokha"):
            return [self.python, "-m", f"payops.sandbox.{name}", "--config", str(self.config_path(name))]
        if name == "alertmanager":
            return [tools["alertmanager"], f"--config.file={self.config_path(name)}",
                    f"--storage.path={directory / 'data'}", f"--web.listen-address={HOST}:{port}",
                    "--cluster.listen-address=", f"--web.external-url=http://{HOST}:{port}"]
        if name == "prometheus":
            return [tools["prometheus"], f"--config.file={self.config_path(name)}",
                    f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address={HOST}:{port}",
                    "--web.enable-lifecycle", "--storage.tsdb.retention.time=7d",
                    f"--web.external-url=http://{HOST}:{port}"]
        raise AssertionError(name)

    def start_process(self, name: str, state: dict[str, Any], tools: dict[str, str]) -> None:
        directory = self.service_dir(name)
        if name in ("prometheus", "alertmanager"):
            (directory / "data").mkdir(parents=True, exist_ok=True)
        argv = self.command(name, state, tools)
        pid, start_time = process.spawn(argv, self.log_path(name), directory, self.child_env())
        state["processes"][name] = {"pid": pid, "start_time": start_time, "argv": argv,
                                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.save_state(state)  # at once: a failing `up` must not lose track of what it started
        self.say(f"started {name} (pid {pid}) on {HOST}:{state['ports'][name]}")

    def as_postgres(self, argv: list[str]) -> list[str]:
        # PostgreSQL refuses to run as root: run its tools as the postgres OS user.
        return ["runuser", "-u", "postgres", "--", *argv] if self.as_root else argv

    def start_postgres(self, state: dict[str, Any], tools: dict[str, str]) -> None:
        directory = self.service_dir("postgres")
        directory.mkdir(parents=True, exist_ok=True)
        self.pg_socket_dir.mkdir(exist_ok=True)
        log = self.log_path("postgres")
        log.touch(exist_ok=True)
        if self.as_root:
            for path in (directory, self.pg_socket_dir, log):
                shutil.chown(path, "postgres", "postgres")
        if self.as_root:
            blocked = [str(p) for p in directory.parents if p.stat().st_mode & 0o001 == 0]
            if blocked:
                raise PayopsError(f"PostgreSQL runs as the postgres user, which cannot enter {blocked[0]}: "
                                  "use a state directory whose parents others may enter (chmod o+x)")
        env = self.child_env()
        if not (self.pg_data / "PG_VERSION").exists():
            if self.pg_data.exists():
                shutil.rmtree(self.pg_data)  # a half-made cluster from an interrupted first `up`
            pwfile = directory / ".pwfile"
            write_private(pwfile, state["credentials"]["postgres_password"] + "\n")
            if self.as_root:
                shutil.chown(pwfile, "postgres", "postgres")
            try:
                result = subprocess.run(
                    self.as_postgres([tools["initdb"], "-D", str(self.pg_data), "-U", DB_USER,
                                      f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                                      "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                    capture_output=True, text=True, env=env, check=False)
            finally:
                pwfile.unlink(missing_ok=True)
            with log.open("a") as handle:
                handle.write(result.stdout + result.stderr)
            if result.returncode != 0:
                self.fail("postgres", "initdb failed")
        stale = self.pg_data / "postmaster.pid"
        if stale.exists() and not process.is_ours(read_pid_file(stale), self.markers("postgres")[0]):
            # After a crash or a reboot the pid in it may belong to someone else now.
            stale.unlink()
        for lock in self.pg_socket_dir.glob(".s.PGSQL.*.lock"):
            # The socket's lock names the postmaster that made it; PostgreSQL believes any live pid.
            if not process.is_ours(read_pid_file(lock), self.markers("postgres")[0]):
                lock.unlink(missing_ok=True)
                Path(str(lock)[: -len(".lock")]).unlink(missing_ok=True)
        options = " ".join(shlex.quote(option) for option in (
            "-p", str(state["ports"]["postgres"]), "-c", f"listen_addresses={HOST}",
            "-c", f"unix_socket_directories={self.pg_socket_dir}", "-c", "max_connections=100",
        ))
        result = subprocess.run(
            self.as_postgres([tools["pg_ctl"], "-D", str(self.pg_data), "-l", str(log), "-w", "-t", "30",
                              "-o", options, "start"]),
            capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            self.fail("postgres", f"did not start ({(result.stderr or result.stdout).strip()})")
        pid = read_pid_file(stale)
        state["processes"]["postgres"] = {"pid": pid, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.say(f"started postgres (pid {pid}) on {HOST}:{state['ports']['postgres']}")

    def prepare_database(self, state: dict[str, Any]) -> None:
        """Create the betaskill database and apply schema.sql (idempotent) as the superuser."""
        import psycopg

        port, password = state["ports"]["postgres"], state["credentials"]["postgres_password"]
        try:
            conn = psycopg.connect(host=HOST, port=port, user=DB_USER, password=password,
                                   dbname="postgres", autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            if "password authentication failed" not in str(exc):
                self.fail("postgres", f"does not accept connections ({exc})")
            # The cluster outlived the credentials (state.json was removed): set the kept password.
            with psycopg.connect(host=str(self.pg_socket_dir), port=port, user=DB_USER, dbname="postgres",
                                 autocommit=True) as local:
                local.execute(f"ALTER ROLE {DB_USER} PASSWORD {quote_literal(password)}")
            conn = psycopg.connect(host=HOST, port=port, user=DB_USER, password=password,
                                   dbname="postgres", autocommit=True, connect_timeout=5)
        with conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
            if not exists:
                conn.execute(f"CREATE DATABASE {DB_NAME}")
        schema = importlib.resources.files("payops.sandbox").joinpath("schema.sql").read_text()
        with psycopg.connect(state_dsn(state), autocommit=True) as conn:
            conn.execute(schema)

    def ensure_bucket(self, state: dict[str, Any]) -> None:
        """The backup bucket, versioned. moto keeps it in memory, so every `up` makes sure of it."""
        client = s3_client(self.endpoints(state))
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=S3_BUCKET)
        client.put_bucket_versioning(Bucket=S3_BUCKET, VersioningConfiguration={"Status": "Enabled"})

    def prepare_releases(self, names: list[str]) -> None:
        """Build the release store (files rewritten only when missing or different), then install
        INITIAL_RELEASE on each deploy root that has no `current` (one that has is never touched)."""
        written = release_store.ensure_store(self.release_store)
        if written:
            self.say(f"release store {self.release_store}: wrote {len(written)} file(s) of "
                     + ", ".join(sorted({item.split('/')[0] for item in written})))
        store = self.release_store / INITIAL_RELEASE
        roots = []
        if "edge" in names:
            roots.append((self.frontend_root, store / "frontend.tar.gz", None))
        if "app" in names:
            roots.append((self.app_root, store / "app.tar.gz", self.config_path("app")))
        for root, tarball, config_link in roots:
            if release_store.install(root, INITIAL_RELEASE, tarball, config_link):
                self.say(f"installed release {INITIAL_RELEASE} in {root} (current -> releases/{INITIAL_RELEASE})")

    def stop_unsupervised_app(self, state: dict[str, Any]) -> None:
        """An app an older payops started straight from the package (no supervisor, no release)
        still holds the app's port: stop it, so that the supervised one can take it."""
        record = state["processes"].get("app") or {}
        legacy = ["payops.sandbox.app", str(self.service_dir("app") / "config.json")]
        if process.is_ours(record.get("pid"), legacy, record.get("start_time")):
            self.say(f"stopping the app (pid {record['pid']}) an older payops started outside a release")
            process.terminate(record["pid"], STOP_TIMEOUT)
            state["processes"].pop("app", None)

    def edge_fingerprint(self, state: dict[str, Any]) -> str:
        digest = hashlib.sha256()
        ports = {name: state["ports"].get(name) for name in ("edge", "app")}
        digest.update(json.dumps(ports, sort_keys=True).encode())
        inputs = [self.root / EDGE_PLAYBOOK]
        for folder in (self.root / "roles" / "edge", self.root / "inventories" / "local"):
            inputs.extend(sorted(p for p in folder.rglob("*") if p.is_file()))
        for path in inputs:
            digest.update(str(path.relative_to(self.root)).encode())
            with contextlib.suppress(OSError):
                digest.update(path.read_bytes())
        return digest.hexdigest()

    def prepare_edge_files(self) -> None:
        # The frontend nginx serves is web-1's `current` release (prepare_releases), not in here.
        directory = self.service_dir("edge")
        for sub in ("conf", "run", "logs", "temp"):
            (directory / sub).mkdir(parents=True, exist_ok=True)

    def start_nginx_as_converged(self, state: dict[str, Any]) -> bool:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        log = self.log_path("edge")
        result = subprocess.run([nginx, "-e", str(log), "-c", str(self.nginx_conf)], capture_output=True,
                                text=True, env=self.child_env(), check=False)
        if result.returncode != 0:
            self.say(f"nginx did not start with the existing configuration ({result.stderr.strip()[-200:]}); "
                     "running the edge playbook")
            return False
        return process.wait_until(
            lambda: self.pid_of("edge", state) is not None and self.healthy("edge", state), READY_TIMEOUT)

    def converge_edge(self, state: dict[str, Any], tools: dict[str, str], was_running: bool,
                      report: UpReport) -> None:
        """nginx is the edge role's: apply playbooks/sandbox-edge.yml to the sandbox's web host."""
        fingerprint = self.edge_fingerprint(state)
        unchanged = state.get("edge_fingerprint") == fingerprint and self.nginx_conf.exists()
        if was_running and unchanged and not self.force_edge:
            return
        if not was_running:
            self.nginx_pid_file.unlink(missing_ok=True)  # stale after a crash or a reboot
        if not was_running and unchanged and not self.force_edge and self.start_nginx_as_converged(state):
            # The role wrote this config from these very inputs (same fingerprint): start nginx the
            # way its command service manager does and skip Ansible's per-task cost.
            report.started.append("edge")
            self.say(f"started edge (nginx pid {self.pid_of('edge', state)}) on "
                     f"{HOST}:{state['ports']['edge']} with the edge role's configuration")
            return
        self.prepare_edge_files()
        t0 = time.monotonic()
        log = self.service_dir("edge") / "edge-playbook.log"
        env = self.child_env()
        env.setdefault("ANSIBLE_FORCE_COLOR", "0")
        with log.open("a") as handle:
            handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} ansible-playbook {EDGE_PLAYBOOK}\n")
            handle.flush()
            result = subprocess.run(
                [tools["ansible-playbook"], "-i", str(self.root / "inventories" / "local"), EDGE_PLAYBOOK],
                cwd=self.root, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
        report.timings["edge_playbook"] = time.monotonic() - t0
        if result.returncode != 0:
            raise PayopsError(f"the edge playbook ({EDGE_PLAYBOOK}) failed; the last lines of {log}:\n"
                              + process.tail(log, 15))
        def answering() -> bool:
            return self.pid_of("edge", state) is not None and self.healthy("edge", state)

        if not process.wait_until(answering, READY_TIMEOUT):
            self.fail("edge", "(nginx) did not answer after the edge playbook ran")
        with self._state_lock:
            state["edge_fingerprint"] = fingerprint
        if not was_running:
            report.started.append("edge")
            pid = self.pid_of("edge", state)
            self.say(f"started edge (nginx pid {pid}) on {HOST}:{state['ports']['edge']}")
        else:
            self.say("edge reconfigured by the edge role")

    # ------------------------------------------------------------------------------------ down
    def stop_service(self, name: str, state: dict[str, Any]) -> bool:
        pid = self.pid_of(name, state)
        if pid is None:
            state["processes"].pop(name, None)
            return False
        if name == "postgres":
            tools = self.check_tools(["postgres"])
            subprocess.run(self.as_postgres([tools["pg_ctl"], "-D", str(self.pg_data), "stop", "-m", "fast",
                                             "-w", "-t", str(int(STOP_TIMEOUT))]),
                           capture_output=True, env=self.child_env(), check=False)
            if not process.wait_gone(pid, 1.0):
                process.terminate(pid, STOP_TIMEOUT)
        elif name == "edge":
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            subprocess.run([nginx, "-c", str(self.nginx_conf), "-s", "quit"],
                           capture_output=True, check=False)
            if not process.wait_gone(pid, STOP_TIMEOUT):
                process.terminate(pid, 2.0, group=False)
        else:
            process.terminate(pid, STOP_TIMEOUT)
        state["processes"].pop(name, None)
        return True

    def down(self, purge: bool = False) -> list[str]:
        stopped: list[str] = []
        if not self.dir.exists():
            return stopped
        with self.locked():
            state = self.load_state()
            for name in reversed(SERVICES):
                if self.stop_service(name, state):
                    stopped.append(name)
                    self.say(f"stopped {name}")
            # Whatever still carries our marker (a worker of a crashed master, an orphan) goes too.
            leftovers = process.marked_processes(self.dir)
            for info in leftovers:
                self.say(f"stopping leftover process {info.pid}: {info.command[:100]}")
                process.terminate(info.pid, 5.0, group=info.is_group_leader)
            remaining = process.marked_processes(self.dir)
            if remaining:
                raise PayopsError("could not stop: "
                                  + ", ".join(f"{p.pid} ({p.command[:60]})" for p in remaining))
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

    # ---------------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        state = self.load_state(create=False)

        def one(name: str) -> tuple[str, dict[str, Any]]:
            pid = self.pid_of(name, state)
            condition = "stopped"
            if pid is not None:
                condition = "running" if self.healthy(name, state) else "unhealthy"
            return name, {"state": condition, "pid": pid, "port": state["ports"].get(name),
                          "log": str(self.log_path(name))}

        with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
            services = dict(pool.map(one, SERVICES))
        result = self.endpoints(state)
        result["services"] = services
        return result


# --------------------------------------------------------------------------------------- helpers
def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (configs and state hold secrets), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def as_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def render(template: str, **values: Any) -> str:
    text = importlib.resources.files("payops.sandbox").joinpath("templates", template).read_text()
    return string.Template(text).substitute(values)


def alert_values() -> dict[str, Any]:
    values: dict[str, Any] = dict(ALERT_VALUES)
    values["payment_success_rate_min_percent"] = f"{values['payment_success_rate_min'] * 100:g}"
    values["error_rate_max_percent"] = f"{values['error_rate_max'] * 100:g}"
    return values


def read_pid_file(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def postgres_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found and (Path(found).parent / "initdb").exists():
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    for candidate in reversed(versions):
        if (candidate.parent / "initdb").exists():
            return candidate.parent
    return None


def beside_python(program: str) -> str | None:
    candidate = Path(sys.executable).parent / program
    return str(candidate) if candidate.exists() else None


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def state_dsn(state: dict[str, Any]) -> str:
    password = state["credentials"]["postgres_password"]
    return f"postgresql://{DB_USER}:{password}@{HOST}:{state['ports']['postgres']}/{DB_NAME}"


def s3_client(info: dict[str, Any]) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=info["s3_endpoint"], region_name=info["s3_region"],
                        aws_access_key_id=info["aws_access_key_id"],
                        aws_secret_access_key=info["aws_secret_access_key"])
