"""The sandbox's own programs, from this package: the notification sink, the iKhokha simulator, and
the reference BetaSkill app (run from its deploy root's `current` release under the supervisor)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import ClassVar

from payops.errors import PayopsError
from payops.sandbox import process
from payops.sandbox.services.base import (
    HOST,
    STOP_TIMEOUT,
    DeployRoot,
    Markers,
    Service,
    State,
    as_json,
)
from payops.sandbox.services.postgres import app_dsn


class PackageProgram(Service):
    """A program of payops.sandbox, run as `python -m payops.sandbox.<module> --config PATH`."""

    module: ClassVar[str]

    def find_tools(self) -> dict[str, str]:
        if importlib.util.find_spec(self.module) is None:
            raise PayopsError(f"{self.module} is missing from this checkout ({self.name} cannot start)")
        return self.tools

    def markers(self) -> Markers:
        return Markers((self.module, str(self.config_path)))

    def command(self, state: State) -> list[str]:
        return [self.ctx.python, "-m", self.module, "--config", str(self.config_path)]


class SinkService(PackageProgram):
    name = "sink"
    preferred_port = 18084
    module = "payops.sandbox.sink"

    def config(self, state: State) -> str:
        return as_json({"host": HOST, "port": state["ports"]["sink"],
                        "log_path": str(self.directory / "messages.jsonl")})


class IkhokhaService(PackageProgram):
    name = "ikhokha"
    preferred_port = 18082
    module = "payops.sandbox.ikhokha"
    health_path = "/_sim/health"

    def config(self, state: State) -> str:
        creds = state["credentials"]
        return as_json({
            "host": HOST, "port": state["ports"]["ikhokha"],
            "app_id": creds["ikhokha_app_id"], "app_secret": creds["ikhokha_app_secret"],
            "data_path": str(self.directory / "ikhokha.sqlite3"),
            "callback_attempts": 5, "callback_backoff_seconds": 0.5,
        })


class AppService(PackageProgram):
    """payops.sandbox.supervisor holding the app's socket and running <app root>/current/bin/betaskill-app;
    SIGHUP to it restarts the app into whatever `current` then is, failing no request."""

    name = "app"
    preferred_port = 18081
    depends_on = ("postgres", "ikhokha")
    module = "payops.sandbox.app"
    health_path = "/api/health"

    @property
    def config_path(self) -> Path:
        # Beside the app's releases, where each one links it from.
        return self.ctx.app_root / "shared" / "config.json"

    @property
    def pid_file(self) -> Path:
        """The supervisor's pid (SIGHUP to it restarts the app)."""
        return self.directory / "supervisor.pid"

    def deploy_root(self) -> DeployRoot:
        return DeployRoot(self.ctx.app_root, "app.tar.gz", self.config_path)

    def markers(self) -> Markers:
        return Markers(("payops.sandbox.supervisor", str(self.pid_file)))

    def before_up(self, state: State) -> None:
        """An app an older payops started straight from the package (no supervisor, no release)
        still holds the app's port: stop it, so that the supervised one can take it."""
        record = state["processes"].get("app") or {}
        legacy = ["payops.sandbox.app", str(self.directory / "config.json")]
        if process.is_ours(record.get("pid"), legacy, record.get("start_time")):
            self.ctx.say(f"stopping the app (pid {record['pid']}) an older payops started outside a release")
            process.terminate(record["pid"], STOP_TIMEOUT)
            state["processes"].pop("app", None)

    def config(self, state: State) -> str:
        ports, creds = state["ports"], state["credentials"]
        app_url = f"http://{HOST}:{ports['app']}"
        edge_url = f"http://{HOST}:{ports['edge']}" if ports.get("edge") else None
        return as_json({
            "host": HOST, "port": ports["app"], "dsn": app_dsn(state),
            "ikhokha_url": f"http://{HOST}:{ports['ikhokha']}/public-api/v1/api",
            "ikhokha_app_id": creds["ikhokha_app_id"], "ikhokha_app_secret": creds["ikhokha_app_secret"],
            "public_url": edge_url or app_url,
            "version": "sandbox", "environment": "local",
        })

    def command(self, state: State) -> list[str]:
        # The supervisor holds the socket; the app is whatever release `current` is at each start.
        current = self.ctx.app_root / "current"
        python = self.ctx.python
        return [python, "-m", "payops.sandbox.supervisor", "--listen", f"{HOST}:{state['ports']['app']}",
                "--pid-file", str(self.pid_file), "--",
                python, str(current / "bin" / "betaskill-app"), "--config", str(current / "config.json")]
