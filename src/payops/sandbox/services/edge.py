"""The edge: nginx configured by the edge role (playbooks/sandbox-edge.yml on the sandbox's web host),
serving web-1's `current` frontend release and proxying /api to the app."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

from payops.errors import PayopsError
from payops.sandbox import process
from payops.sandbox.services.base import (
    HOST,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    DeployRoot,
    Markers,
    Package,
    Service,
    State,
    beside_python,
    find_program,
    read_pid_file,
)

EDGE_PLAYBOOK = "playbooks/sandbox-edge.yml"


class EdgeService(Service):
    name = "edge"
    preferred_port = 18080
    depends_on = ("app",)
    package = Package("nginx", "nginx")
    health_path = "/"
    any_answer_is_healthy = True  # a switched-on edge answers 503 by design
    # The edge playbook is the slowest step (Ansible's per-task cost) and needs only the ports in
    # state.json: it runs while the other services start.
    in_background = True

    @property
    def log_path(self) -> Path:
        return self.directory / "logs" / "error.log"

    @property
    def nginx_conf(self) -> Path:
        return self.directory / "conf" / "nginx.conf"

    @property
    def pid_file(self) -> Path:
        return self.directory / "run" / "nginx.pid"

    def deploy_root(self) -> DeployRoot:
        return DeployRoot(self.ctx.frontend_root, "frontend.tar.gz")

    def find_tools(self) -> dict[str, str]:
        playbook = beside_python("ansible-playbook") or shutil.which("ansible-playbook")
        if not playbook:
            raise PayopsError("ansible-playbook is not installed: run scripts/bootstrap")
        self.tools["ansible-playbook"] = playbook
        self.tools["edge"] = find_program(self.package)
        return self.tools

    def markers(self) -> Markers:
        return Markers(("nginx", str(self.nginx_conf)))

    def pid(self, state: State) -> int | None:
        pid = read_pid_file(self.pid_file)
        return pid if process.is_ours(pid, self.markers().words) else None

    def answering(self, state: State) -> bool:
        return self.pid(state) is not None and self.healthy(state)

    # ----------------------------------------------------------------------------- start
    def start(self, state: State) -> None:
        self.pid_file.unlink(missing_ok=True)  # stale after a crash or a reboot
        if self.unchanged(state) and not self.ctx.force_edge and self.start_as_converged(state):
            # The role wrote this config from these very inputs (same fingerprint): start nginx the
            # way its command service manager does and skip Ansible's per-task cost.
            self.ctx.say(f"started edge (nginx pid {self.pid(state)}) on "
                         f"{HOST}:{state['ports']['edge']} with the edge role's configuration")
            return
        self.converge(state)
        self.ctx.say(f"started edge (nginx pid {self.pid(state)}) on {HOST}:{state['ports']['edge']}")

    def refresh(self, state: State) -> None:
        if self.unchanged(state) and not self.ctx.force_edge:
            return
        self.converge(state)
        self.ctx.say("edge reconfigured by the edge role")

    def fingerprint(self, state: State) -> str:
        """Of everything the edge playbook's result depends on: the ports, the role, the inventory."""
        root = self.ctx.root
        digest = hashlib.sha256()
        ports = {name: state["ports"].get(name) for name in ("edge", "app")}
        digest.update(json.dumps(ports, sort_keys=True).encode())
        inputs = [root / EDGE_PLAYBOOK]
        for folder in (root / "roles" / "edge", root / "inventories" / "local"):
            inputs.extend(sorted(p for p in folder.rglob("*") if p.is_file()))
        for path in inputs:
            digest.update(str(path.relative_to(root)).encode())
            with contextlib.suppress(OSError):
                digest.update(path.read_bytes())
        return digest.hexdigest()

    def unchanged(self, state: State) -> bool:
        return state.get("edge_fingerprint") == self.fingerprint(state) and self.nginx_conf.exists()

    def start_as_converged(self, state: State) -> bool:
        result = subprocess.run([self.tools["edge"], "-e", str(self.log_path), "-c", str(self.nginx_conf)],
                                capture_output=True, text=True, env=self.ctx.child_env(), check=False)
        if result.returncode != 0:
            self.ctx.say(f"nginx did not start with the existing configuration ({result.stderr.strip()[-200:]}); "
                         "running the edge playbook")
            return False
        return process.wait_until(lambda: self.answering(state), READY_TIMEOUT)

    def converge(self, state: State) -> None:
        """Apply playbooks/sandbox-edge.yml to the sandbox's web host, and wait until nginx answers."""
        fingerprint = self.fingerprint(state)
        # The frontend nginx serves is web-1's `current` release (the manager's), not in here.
        for sub in ("conf", "run", "logs", "temp"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        log = self.directory / "edge-playbook.log"
        env = self.ctx.child_env()
        env.setdefault("ANSIBLE_FORCE_COLOR", "0")
        with log.open("a") as handle:
            handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} ansible-playbook {EDGE_PLAYBOOK}\n")
            handle.flush()
            result = subprocess.run(
                [self.tools["ansible-playbook"], "-i", str(self.ctx.root / "inventories" / "local"),
                 EDGE_PLAYBOOK],
                cwd=self.ctx.root, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
        self.timings["edge_playbook"] = time.monotonic() - t0
        if result.returncode != 0:
            raise PayopsError(f"the edge playbook ({EDGE_PLAYBOOK}) failed; the last lines of {log}:\n"
                              + process.tail(log, 15))
        if not process.wait_until(lambda: self.answering(state), READY_TIMEOUT):
            self.fail("(nginx) did not answer after the edge playbook ran")
        with self.ctx.state_lock:
            state["edge_fingerprint"] = fingerprint

    # ------------------------------------------------------------------------------ stop
    def stop(self, state: State, pid: int) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        subprocess.run([nginx, "-c", str(self.nginx_conf), "-s", "quit"], capture_output=True, check=False)
        if not process.wait_gone(pid, STOP_TIMEOUT):
            process.terminate(pid, 2.0, group=False)

