"""What every sandbox service is: the `Service` interface, the `Context` it runs in, and the helpers
the services share (private files, pid files, templates, finding programs)."""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import string
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import requests

from payops.errors import PayopsError
from payops.sandbox import process

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

State = dict[str, Any]  # state.json as loaded: {"version", "ports", "credentials", "processes", ...}


@dataclass(frozen=True)
class Package:
    """The Debian package that provides a service's program, for the message when it is missing."""

    name: str
    program: str


class MissingPackage(PayopsError):
    """A service's Debian package is not installed; `up` collects these into one message."""

    def __init__(self, package: Package) -> None:
        super().__init__(f"{package.name} (for {package.program})")
        self.package = package


@dataclass(frozen=True)
class Markers:
    """What a live process of a service shows: words of its command line, and its working directory."""

    words: tuple[str, ...]
    cwd: Path | None = None


@dataclass(frozen=True)
class DeployRoot:
    """A deploy root {releases/<id>, shared, current} a service runs or serves `current` of."""

    path: Path
    artefact: str  # the release's tarball that is installed there
    config_link: Path | None = None  # what each release links as its config.json


@dataclass
class Context:
    """What the services share with the manager: the state directory, the checkout, how to report."""

    dir: Path
    root: Path
    say: Callable[[str], None]
    python: str = field(default_factory=lambda: sys.executable)
    as_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    force_edge: bool = False  # True: run the edge playbook even when its inputs did not change
    # The edge converges in a thread while the main thread starts the others; both record state.
    state_lock: threading.Lock = field(default_factory=threading.Lock)

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[process.SANDBOX_MARKER] = str(self.dir)
        env["PAYOPS_SANDBOX_DIR"] = str(self.dir)
        env["PYTHONUNBUFFERED"] = "1"
        return env

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


class Service:
    """One service of the sandbox. On `up` the manager, for each service in start order: reuses it
    when `pid` finds our live process and it is `healthy`; writes `config` to `config_path` and
    restarts it when that changed; `start`s it when it does not run, then `wait_ready` (unless
    `ready_before_dependents`: its `start` returns ready); then `prepare`s it. An `in_background`
    service is instead started, or when it runs `refresh`ed, in a thread of its own, and does all
    of that itself. `down` calls `stop` in reverse order.

    The default is a program spawned by the manager and tracked by the pid, start time and command
    line recorded in state.json, healthy when GET `health_path` answers 200; a subclass gives its
    `command` and, where it differs, overrides the rest.
    """

    name: ClassVar[str]
    preferred_port: ClassVar[int]
    depends_on: ClassVar[tuple[str, ...]] = ()
    package: ClassVar[Package | None] = None
    health_path: ClassVar[str] = "/health"
    # Healthy on any HTTP answer, not only 200 (moto lists buckets; a switched-on edge answers 503).
    any_answer_is_healthy: ClassVar[bool] = False
    config_name: ClassVar[str] = "config.json"
    # Its start returns once it answers, and its dependents start only after it and `prepare`.
    ready_before_dependents: ClassVar[bool] = False
    # Started (or refreshed, when it runs) in a thread while the others start: it is slow.
    in_background: ClassVar[bool] = False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tools: dict[str, str] = {}
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------------------- paths
    @property
    def directory(self) -> Path:
        return self.ctx.dir / self.name

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def config_path(self) -> Path:
        return self.directory / self.config_name

    def deploy_root(self) -> DeployRoot | None:
        """The deploy root whose `current` release it runs, if it runs one."""
        return None

    # ------------------------------------------------------------------------------- tools
    def find_tools(self) -> dict[str, str]:
        """Find the programs it needs (kept in self.tools); MissingPackage or PayopsError if absent."""
        if self.package is not None:
            self.tools[self.name] = find_program(self.package)
        return self.tools

    # ---------------------------------------------------------------------------- identity
    def markers(self) -> Markers:
        return Markers((self.name, str(self.config_path)))

    def pid(self, state: State) -> int | None:
        """The pid of our live process for the service, or None (never a recycled pid)."""
        record = state["processes"].get(self.name) or {}
        markers = self.markers()
        pid = record.get("pid")
        if process.is_ours(pid, markers.words, record.get("start_time"), markers.cwd):
            return pid
        return None

    def port(self, state: State) -> int | None:
        return state["ports"].get(self.name)

    # ------------------------------------------------------------------------------ health
    def healthy(self, state: State, timeout: float = 1.0) -> bool:
        port = self.port(state)
        if not port:
            return False
        try:
            response = requests.get(f"http://{HOST}:{port}{self.health_path}", timeout=timeout)
        except Exception:  # not answering, for whatever reason, is unhealthy
            return False
        return response.status_code < 600 if self.any_answer_is_healthy else response.status_code == 200

    def wait_ready(self, state: State, timeout: float = READY_TIMEOUT) -> None:
        def check() -> bool:
            record = state["processes"].get(self.name) or {}
            if not process.proc_info(record.get("pid")):
                raise process.StopWaiting
            return self.healthy(state)

        try:
            ok = process.wait_until(check, timeout, interval=0.1)
        except process.StopWaiting:
            self.fail("exited while starting")
        if not ok:
            self.fail(f"did not become ready within {timeout:.0f} s")

    def fail(self, what: str) -> None:
        raise PayopsError(f"{self.name} {what}; the last lines of {self.log_path}:\n{process.tail(self.log_path)}")

    # ----------------------------------------------------------------------------- lifecycle
    def before_up(self, state: State) -> None:
        """Settle, before anything else of an `up`, what an older payops left behind."""

    def config(self, state: State) -> str | None:
        """The content of its config file (config_path), or None when it has none of the manager's."""
        return None

    def command(self, state: State) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} has no command")

    def start(self, state: State) -> None:
        """Start it (it does not run); records its process in state["processes"]."""
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = self.command(state)
        pid, start_time = process.spawn(argv, self.log_path, self.directory, self.ctx.child_env())
        state["processes"][self.name] = {"pid": pid, "start_time": start_time, "argv": argv,
                                         "started_at": now()}
        self.ctx.say(f"started {self.name} (pid {pid}) on {HOST}:{self.port(state)}")

    def refresh(self, state: State) -> None:
        """Bring a running service that is reused up to date in place (only in_background ones)."""

    def prepare(self, state: State) -> None:
        """Once it answers, on every `up`: make sure of what it holds (a schema, a bucket)."""

    def stop(self, state: State, pid: int) -> None:
        process.terminate(pid, STOP_TIMEOUT)


# --------------------------------------------------------------------------------------- helpers
def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


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


def read_pid_file(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def find_program(package: Package) -> str:
    """The program on PATH or in /usr/sbin (Debian puts daemons there), or MissingPackage."""
    found = shutil.which(package.program)
    if found:
        return found
    sbin = Path("/usr/sbin") / package.program
    if sbin.exists():
        return str(sbin)
    raise MissingPackage(package)


def beside_python(program: str) -> str | None:
    candidate = Path(sys.executable).parent / program
    return str(candidate) if candidate.exists() else None
