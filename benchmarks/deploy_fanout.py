#!/usr/bin/env python3
"""How long a deployment takes on 1, 10 and 50 web hosts: deploy:production against the same steps by hand.

    export PATH=$PWD/.venv/bin:$PATH
    export PAYOPS_SANDBOX_DIR=/tmp/sandbox-bench     # a sandbox of your own
    payops sandbox up
    python benchmarks/deploy_fanout.py --hosts 1,10 --repeat 3
    python benchmarks/deploy_fanout.py --hosts 50 --repeat 1
    payops sandbox down

For each --hosts N, a temporary inventory of N web hosts and nothing else (ansible_connection
local; each host its own deploy root <folder>/hosts/web-NN/frontend and its own port), served by
one nginx started for the purpose with one `server` per host whose root is that host's
frontend/current (the deploy role's health gate reads http://127.0.0.1:<port>/version.json
there). Every host gets the sandbox's fixture release 1.0.0 by hand first (setup, left out);
then, for each repeat, two changes, each timed from its start until it returned:

  payops     ansible-playbook playbooks/deploy_production.yml -e release=1.1.0 (the project's ansible.cfg, so
             the audit callback is on and the preflight passes): checks and SHA-256 of the release,
             the deploy lock in the sandbox's PostgreSQL, on every host (forks=50, one batch)
             unpack, switch, edge reload entry point (nginx -t, nginx -s reload), health gate,
             prune; the lock given back, the deployment recorded in payops.deployments, the report
  by hand    back to 1.0.0, host after host: unpack frontend.tar.gz into releases/<id>, a new
             symlink renamed over current, nginx -s reload, one GET of /version.json that must
             report the release (what an operator's loop would do: no checksums, lock, record)

so that every change really switches, and really unpacks: the folder of the release a change
goes to is removed from every host beforehand (setup, left out). Printed: each change's time,
medians of --repeat, the ratio payops / by hand, and the requests that failed under steady traffic
during each change: TRAFFIC_THREADS threads ask every host's nginx in turn for / and
/version.json, each on a new connection; a failed request is a connection error or a status
other than 200. The load average is printed with the figures: the machine is shared.

The inventory's only other variables are what deploy_production.yml needs: payops_environment local, the
sandbox's database (the deploy lock, the record), payops_release_source = the sandbox's release
store, the edge role's variables for its reload entry point. Audit lines of these runs go to a
temporary file (PAYOPS_AUDIT_LOG), reports to the temporary folder. nginx, a running
ansible-playbook, a deploy lock left by an interrupted run and the temporary folder (unless
--keep) are cleaned up at the end, also on Ctrl-C or SIGTERM. Not a test: it never fails on a time;
it stops when a deployment fails, with the failed task and its message.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
FROM_RELEASE, TO_RELEASE = "1.0.0", "1.1.0"
TRAFFIC_THREADS = 4
TRAFFIC_PAUSE = 0.05  # seconds between two requests of one thread: steady traffic, not a load test
TRAFFIC_PATHS = ("/", "/version.json")
RUN_ID_PREFIX = f"bench-deploy-fanout-{os.getpid()}-"


@dataclass
class Host:
    """One web host's deploy root and the nginx server that serves its frontend/current."""

    name: str
    port: int
    base: Path  # <deploy_root>/frontend

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Fleet:
    """N web hosts, their inventory and the one nginx serving them all."""

    folder: Path
    hosts: list[Host]
    inventory: Path
    nginx: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.folder / "nginx" / "nginx.conf"

    def nginx_argv(self, *extra: str) -> list[str]:
        return [nginx_binary(), "-e", str(self.folder / "nginx" / "logs" / "error.log"), "-c", str(self.conf), *extra]

    def start(self) -> None:
        # In the foreground and in its own session: this process owns it, Ctrl-C does not reach it,
        # and stop() ends it with every worker (old ones still finishing after reloads included).
        self.nginx = subprocess.Popen(self.nginx_argv("-g", "daemon off;"), start_new_session=True)
        wait_for(self.hosts, lambda response: response.status_code == 404, "nginx to answer")

    def stop(self) -> None:
        if self.nginx is None:
            return
        if self.nginx.poll() is None:
            self.nginx.terminate()
            try:
                self.nginx.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.nginx.pid, signal.SIGKILL)
        self.nginx = None


@dataclass
class Tally:
    """Requests made under steady traffic and those that failed, by reason."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    total: int = 0
    failed: collections.Counter = field(default_factory=collections.Counter)

    def add(self, failure: str | None) -> None:
        with self.lock:
            self.total += 1
            if failure:
                self.failed[failure] += 1

    @property
    def failures(self) -> int:
        return sum(self.failed.values())


class Traffic:
    """TRAFFIC_THREADS threads asking every host in turn for / and /version.json until stopped."""

    def __init__(self, hosts: list[Host]) -> None:
        self.hosts, self.tally, self.stopping = hosts, Tally(), threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(index,), daemon=True)
                        for index in range(TRAFFIC_THREADS)]

    def run(self, index: int) -> None:
        session = requests.Session()
        session.trust_env = False
        turn = index
        while not self.stopping.is_set():
            host = self.hosts[turn % len(self.hosts)]
            path = TRAFFIC_PATHS[(turn // len(self.hosts) + index) % len(TRAFFIC_PATHS)]
            turn += 1
            try:
                response = session.get(host.url + path, timeout=10, headers={"Connection": "close"})
                self.tally.add(None if response.status_code == 200 else f"{path}: status {response.status_code}")
            except requests.RequestException as exc:
                self.tally.add(f"{path}: {type(exc).__name__}")
            self.stopping.wait(TRAFFIC_PAUSE)

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        time.sleep(0.3)  # steady before the change starts
        return self

    def __exit__(self, *_) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=15)


@dataclass
class Change:
    seconds: float
    tally: Tally
    phases: dict[str, float] = field(default_factory=dict)


class DeploymentFailed(Exception):
    pass


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(session: requests.Session, url: str) -> requests.Response:
    return session.get(url, timeout=10, headers={"Connection": "close"})


def wait_for(hosts: list[Host], ready, what: str, timeout: float = 30) -> None:
    session = requests.Session()
    session.trust_env = False
    deadline = time.monotonic() + timeout
    for host in hosts:
        while True:
            try:
                if ready(fetch(session, host.url + "/version.json")):
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what} on {host.name} ({host.url})")
            time.sleep(0.1)


def nginx_conf(folder: Path, hosts: list[Host]) -> str:
    nginx = folder / "nginx"
    # Started by root, nginx would hand its workers to "nobody", who cannot enter the temporary folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {nginx / 'temp' / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    mime = "    include /etc/nginx/mime.types;\n" if Path("/etc/nginx/mime.types").is_file() else ""
    servers = "\n".join(f"""    server {{  # {host.name}
        listen 127.0.0.1:{host.port};
        root {host.base / 'current'};
        index index.html;
        location = /version.json {{ add_header Cache-Control no-store; }}
    }}""" for host in hosts)
    return f"""# deploy_fanout: one server per web host, each serving its host's frontend/current.
{user}worker_processes 1;
pid {nginx / 'nginx.pid'};
error_log {nginx / 'logs' / 'error.log'} warn;
events {{ worker_connections 1024; }}
http {{
{mime}    default_type application/octet-stream;
    access_log off;
{temp}
{servers}
}}
"""


def write_fleet(folder: Path, count: int, status: dict) -> Fleet:
    """The inventory (web hosts only), each host's deploy root and the nginx configuration."""
    hosts = [Host(f"web-{number:02d}", free_port(), folder / "hosts" / f"web-{number:02d}" / "frontend")
             for number in range(1, count + 1)]
    for host in hosts:
        (host.base / "releases").mkdir(parents=True)
        (host.base / "shared").mkdir()
    for name in ("logs", "temp"):
        (folder / "nginx" / name).mkdir(parents=True, exist_ok=True)
    (folder / "nginx" / "nginx.conf").write_text(nginx_conf(folder, hosts))
    (folder / "reports").mkdir()

    inventory = folder / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(json.dumps({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "children": {"web": {"hosts": {host.name: {
            "deploy_root": str(host.base.parent),
            "edge_listen": [{"address": "127.0.0.1", "port": host.port}],
        } for host in hosts}}},
    }}, indent=1))
    (inventory / "group_vars" / "all.yml").write_text(json.dumps({
        "payops_environment": "local",
        "payops_db_host": status["postgres_host"],
        "payops_db_port": status["postgres_port"],
        "payops_db_name": status["postgres_db"],
        "payops_db_user": status["postgres_user"],
        "payops_db_password": status["postgres_password"],
        "payops_db_sslmode": "disable",
        "payops_release_source": status["release_store"],
        "payops_report_dir": str(folder / "reports"),
    }, indent=1))
    (inventory / "group_vars" / "web.yml").write_text(json.dumps({
        "deploy_component": "frontend",
        "deploy_health_url": "http://127.0.0.1:{{ edge_listen[0].port }}/version.json",
        # The edge role's reload entry point: nginx -e <log dir>/error.log -c <config dir>/nginx.conf.
        "edge_manage_package": False,
        "edge_service_manager": "command",
        "edge_nginx_binary": nginx_binary(),
        "edge_config_dir": str(folder / "nginx"),
        "edge_log_dir": str(folder / "nginx" / "logs"),
        "edge_pid_file": str(folder / "nginx" / "nginx.pid"),
        "edge_temp_dir": str(folder / "nginx" / "temp"),
        "edge_release_dir": str(folder / "hosts") + "/{{ inventory_hostname }}/frontend/current",
    }, indent=1))
    return Fleet(folder, hosts, inventory)


def current_release(host: Host) -> str | None:
    try:
        return Path(os.readlink(host.base / "current")).name
    except OSError:
        return None


def clear_target(fleet: Fleet, release: str) -> None:
    """Setup: the release a change goes to is not on any host yet, so the change really unpacks."""
    for host in fleet.hosts:
        if current_release(host) != release:
            shutil.rmtree(host.base / "releases" / release, ignore_errors=True)


def by_hand(fleet: Fleet, release: str, artefact: Path) -> None:
    session = requests.Session()
    session.trust_env = False
    for host in fleet.hosts:
        target = host.base / "releases" / release
        target.mkdir()
        with tarfile.open(artefact, "r:gz") as archive:
            archive.extractall(target, filter="data")
        link = host.base / f".current-{os.getpid()}"
        os.symlink(f"releases/{release}", link)
        os.replace(link, host.base / "current")
        subprocess.run(fleet.nginx_argv("-s", "reload"), check=True)
        version = fetch(session, host.url + "/version.json").json().get("version")
        if version != release:
            raise DeploymentFailed(f"by hand: {host.name} reports {version!r} after the switch to {release}")


def failure_summary(log: str) -> str:
    """The failed tasks (task name, host, message) and the report's last lines, from Ansible's output."""
    lines, task = [], ""
    for line in log.splitlines():
        if line.startswith("TASK ["):
            task = line.strip(" *")
        elif re.match(r"^(fatal|failed): ", line) or line.startswith("ERROR!") or line.startswith("[ERROR]"):
            lines.append(f"{task}\n    {line[:1500]}")
    recap = log[log.rfind("PLAY RECAP"):] if "PLAY RECAP" in log else log[-3000:]
    return "\n".join([*lines[:20], *([f"... {len(lines) - 20} more"] if len(lines) > 20 else []), recap.strip()])


def phases(dsn: str, run_id: str) -> dict[str, float]:
    """Seconds per phase (check, migrations, rollout) from the deployment's record in payops.deployments."""
    result = subprocess.run(["psql", dsn, "-qAtX", "-v", "ON_ERROR_STOP=1", "-v", f"run_id={run_id}"],
                            input="SELECT phases FROM payops.deployments WHERE run_id = :'run_id';\n",
                            capture_output=True, text=True, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return {}
    return {phase["phase"]: (datetime.fromisoformat(phase["finished"]) - datetime.fromisoformat(phase["started"]))
            .total_seconds() for phase in json.loads(result.stdout)}


def deploy(env: dict[str, str], fleet: Fleet, release: str, run_id: str, log_path: Path) -> None:
    """ansible-playbook playbooks/deploy_production.yml -e release=<release> against the fleet's inventory."""
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(fleet.inventory),
            "playbooks/deploy_production.yml", "-e", f"release={release}"]
    with log_path.open("w") as log:
        # Its own session: an interrupted benchmark ends it with its forks (the finally below).
        process = subprocess.Popen(argv, cwd=ROOT, env={**env, "PAYOPS_RUN_ID": run_id}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = process.wait()
        finally:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
    if returncode != 0:
        raise DeploymentFailed(f"ansible-playbook playbooks/deploy_production.yml -e release={release} on "
                               f"{len(fleet.hosts)} hosts exited {returncode} (output: {log_path}, kept with --keep):\n"
                               f"{failure_summary(log_path.read_text())}")
    wrong = [host.name for host in fleet.hosts if current_release(host) != release]
    if wrong:
        raise DeploymentFailed(f"deploy_production.yml succeeded but {', '.join(wrong)} do not run {release}")


def timed(fleet: Fleet, change, *args) -> Change:
    with Traffic(fleet.hosts) as traffic:
        started = time.monotonic()
        change(*args)
        seconds = time.monotonic() - started
    return Change(seconds, traffic.tally)


def measure(env: dict[str, str], status: dict, fleet: Fleet, repeat: int) -> dict[str, list[Change]]:
    store = Path(status["release_store"])
    results: dict[str, list[Change]] = {"payops": [], "by hand": []}
    for attempt in range(1, repeat + 1):
        run_id = f"{RUN_ID_PREFIX}{len(fleet.hosts)}-{attempt}"
        clear_target(fleet, TO_RELEASE)
        payops = timed(fleet, deploy, env, fleet, TO_RELEASE, run_id, fleet.folder / f"deploy-{attempt}.log")
        payops.phases = phases(status["postgres_dsn"], run_id)
        wait_for(fleet.hosts, lambda response: response.json().get("version") == TO_RELEASE, TO_RELEASE)
        results["payops"].append(payops)
        clear_target(fleet, FROM_RELEASE)
        results["by hand"].append(timed(fleet, by_hand, fleet, FROM_RELEASE, store / FROM_RELEASE / "frontend.tar.gz"))
        print(f"  {len(fleet.hosts)} host{'s' * (len(fleet.hosts) != 1)}: repeat {attempt}/{repeat}: "
              + ", ".join(f"{name} {values[-1].seconds:.2f} s ({values[-1].tally.failures} of "
                          f"{values[-1].tally.total} requests failed)" for name, values in results.items())
              + ("; payops phases " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in payops.phases.items())
                 if payops.phases else ""), flush=True)
    return results


def show(results: dict[int, dict[str, list[Change]]], loads: dict[int, tuple[float, ...]]) -> None:
    print(f"\ndeployment of the frontend ({FROM_RELEASE} -> {TO_RELEASE} by payops, back by hand), "
          f"medians; failed requests summed over the repeats")
    print(f"  {'hosts':>5}{'repeats':>9}{'payops':>10}{'by hand':>10}{'ratio':>9}   failed requests: payops"
          f" / by hand   load average at the end (1, 5, 15 min)")
    for count, result in results.items():
        payops = statistics.median(change.seconds for change in result["payops"])
        hand = statistics.median(change.seconds for change in result["by hand"])
        failed = {name: (sum(change.tally.failures for change in changes),
                         sum(change.tally.total for change in changes)) for name, changes in result.items()}
        print(f"  {count:>5}{len(result['payops']):>9}{payops:>9.2f}s{hand:>9.2f}s{ratio(payops / hand):>9}   "
              f"{failed['payops'][0]} of {failed['payops'][1]} / {failed['by hand'][0]} of {failed['by hand'][1]}"
              f"{'':>10}{', '.join(f'{value:.2f}' for value in loads[count])}")
        reasons = collections.Counter()
        for changes in result.values():
            for change in changes:
                reasons.update(change.tally.failed)
        for reason, number in reasons.most_common(5):
            print(f"        {number} x {reason}")


def ratio(value: float) -> str:
    return f"{value:.1f}x" if value < 10 else f"{value:.0f}x"


def release_locks(dsn: str) -> None:
    """A lock an interrupted deployment of this benchmark still holds (none after a clean run)."""
    subprocess.run(["psql", dsn, "-qX", "-v", "ON_ERROR_STOP=1", "-v", f"prefix={RUN_ID_PREFIX}%"],
                   input="DELETE FROM payops.deploy_locks WHERE run_id LIKE :'prefix';\n", text=True, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1,10,50", help="comma-separated numbers of web hosts (default 1,10,50)")
    parser.add_argument("--repeat", type=int, default=3, help="deployments per number of hosts; medians are printed")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (inventories, deploy roots, nginx logs, ansible output)")
    args = parser.parse_args()
    counts = [int(value) for value in args.hosts.split(",") if value.strip()]
    if not counts or min(counts) < 1 or args.repeat < 1:
        parser.error("--hosts takes numbers of at least 1, --repeat at least 1")
    # Killed, it still stops nginx and ansible-playbook and removes its folder (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    status = json.loads(subprocess.run([sys.executable, "-m", "payops.cli", "sandbox", "status", "--json"],
                                       cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout)
    if status["services"]["postgres"]["state"] != "running":
        raise SystemExit("the sandbox's PostgreSQL is not up: export PAYOPS_SANDBOX_DIR=... && payops sandbox up")
    store = Path(status["release_store"])
    for release in (FROM_RELEASE, TO_RELEASE):
        if not (store / release / "frontend.tar.gz").is_file():
            raise SystemExit(f"release {release} is not in the sandbox's release store {store}")
    folder = Path(tempfile.mkdtemp(prefix="payops-deploy-fanout-"))
    env.update({"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PAYOPS_AUDIT_LOG": str(folder / "audit.jsonl"),
                "PAYOPS_OPERATOR": "benchmark", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    fleet: Fleet | None = None
    results: dict[int, dict[str, list[Change]]] = {}
    loads: dict[int, tuple[float, ...]] = {}
    print(f"{os.cpu_count()} cores; load average {', '.join(f'{value:.2f}' for value in os.getloadavg())} "
          f"at the start", flush=True)
    try:
        for count in counts:
            started = time.monotonic()
            fleet = write_fleet(folder / f"{count}-hosts", count, status)
            plural = "s" * (count != 1)
            try:
                fleet.start()
                by_hand(fleet, FROM_RELEASE, store / FROM_RELEASE / "frontend.tar.gz")
                print(f"\n{count} web host{plural}: setup (left out): inventory, one nginx with {count} "
                      f"server{plural}, {FROM_RELEASE} installed by hand, {time.monotonic() - started:.1f} s",
                      flush=True)
                results[count] = measure(env, status, fleet, args.repeat)
            except DeploymentFailed as failure:
                print(f"\n{count} web host{plural}: FAILED\n{failure}", flush=True)
                release_locks(status["postgres_dsn"])
                break
            finally:
                loads[count] = os.getloadavg()
                fleet.stop()
        if results:
            show(results, loads)
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if fleet is not None:
            fleet.stop()
        release_locks(status["postgres_dsn"])
        if args.keep:
            print(f"\nkept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0 if len(results) == len(counts) else 1


if __name__ == "__main__":
    sys.exit(main())
