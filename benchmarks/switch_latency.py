#!/usr/bin/env python3
"""How long a switch takes to hold, seen from outside: payops' procedures against the same change by hand.

    export PATH=$PWD/.venv/bin:$PATH
    export PAYOPS_SANDBOX_DIR=/tmp/sandbox-bench     # a sandbox of your own
    payops sandbox up
    python benchmarks/switch_latency.py --hosts 50 --repeat 3
    payops sandbox down

For each repeat, four changes, each timed from its start until it is observed from outside: an
observer polls every web host's nginx from 127.0.0.2 (outside the operator allowlist) with an
empty checkout (POST /api/checkout {}): nginx's 503 {"error":"payments_stopped"} while payments
are stopped, the app's 400 otherwise. Nothing is bought.

  payops stop       payops run payment:emergency-stop (database switch, every web host's file,
                    test, reload, observed by the procedure itself, report)
  payops recover    payops run system:recover (lockdown, maintenance, payments lifted in order,
                    each verified; reconciliation; the emergency status)
  by hand stop      psql UPDATE payops.switches; for each host: write server.d/switch-payments_stopped.conf,
                    nginx -s reload (what an operator would type)
  by hand resume    the same undone

"seen" is when the last host began to serve the new state for good (no answer in the old state
for 0.5 s after: nginx's old workers still accept connections for a moment after a reload);
"done" is when the command returned (the procedures keep going after the switch holds: they
verify, report, reconcile). Both are printed,
medians of --repeat, with the ratios procedure / by hand.

First with the sandbox's one web host (inventories/local), then with --hosts small nginx
instances on loopback: a temporary inventory of that many web hosts (ansible_connection local,
each with its own config, pid, log, temp and release folders and its own port), converged once
by the edge role (playbooks/sandbox-edge.yml on the first host, its rendered configuration copied to
the others with their paths and port; timed as setup and left out), then the same four changes
across all of them. --hosts 0 skips that part. The instances are stopped and the
temporary folder removed at the end, and the payment stop is lifted whatever happened.

Audit lines of these runs go to a temporary file (PAYOPS_AUDIT_LOG), not the checkout's trail.
Not a test: it never fails on a time. It is load: ansible.cfg's forks (50) run at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parents[1]
OUTSIDER = "127.0.0.2"
SWITCH_FILE = "switch-payments_stopped.conf"
SWITCH_CONTENT = "# Written by hand: payments_stopped is on.\nset $payops_payments_stopped 1;\n"
SETTLE = 0.5


@dataclass
class Edge:
    """One web host's nginx as the benchmark reaches it."""

    url: str
    config_dir: Path
    log_dir: Path

    def reload_argv(self) -> list[str]:
        return ["nginx", "-e", str(self.log_dir / "error.log"), "-c", str(self.config_dir / "nginx.conf"),
                "-s", "reload"]

    @property
    def switch_path(self) -> Path:
        return self.config_dir / "payops" / "server.d" / SWITCH_FILE


class SourceAddressAdapter(HTTPAdapter):
    def __init__(self, source: str, **kwargs) -> None:
        self.source = source
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def stopped(session: requests.Session, edge: Edge) -> bool | None:
    try:
        response = session.post(edge.url + "/api/checkout", data=b"{}", timeout=5,
                                headers={"Content-Type": "application/json", "Connection": "close"})
    except requests.RequestException:
        return None
    if response.status_code == 503 and "json" in response.headers.get("Content-Type", ""):
        return response.json().get("error") == "payments_stopped"
    return False if response.status_code == 400 else None


class Observer(threading.Thread):
    """Polls every host until each serves the wanted state for good; `seen` is when the last one began to.

    "For good": without a break for SETTLE seconds. After a reload nginx's old workers still
    accept connections for a moment (the master tells them to stop 100 ms after starting the new
    ones, later on a busy machine), so one answer in the new state can be followed by the old one.
    """

    def __init__(self, edges: list[Edge], want_stopped: bool, started: float, timeout: float = 900) -> None:
        super().__init__(daemon=True)
        self.edges, self.want, self.started, self.timeout = edges, want_stopped, started, timeout
        self.seen: float | None = None

    def run(self) -> None:
        session = requests.Session()
        session.trust_env = False
        session.mount("http://", SourceAddressAdapter(OUTSIDER))
        streaks: dict[int, float | None] = dict.fromkeys(range(len(self.edges)))
        settled: dict[int, float] = {}
        while len(settled) < len(self.edges) and time.monotonic() - self.started < self.timeout:
            for index, edge in enumerate(self.edges):
                if index in settled:
                    continue
                now = time.monotonic()
                if stopped(session, edge) is self.want:
                    streaks[index] = streaks[index] or now
                    if now - streaks[index] >= SETTLE:
                        settled[index] = streaks[index]
                else:
                    streaks[index] = None
            time.sleep(0.02)
        if len(settled) == len(self.edges):
            self.seen = max(settled.values()) - self.started


def timed(edges: list[Edge], want_stopped: bool, change) -> tuple[float, float]:
    """(seconds until observed from outside, seconds until the change's command returned)."""
    started = time.monotonic()
    observer = Observer(edges, want_stopped, started)
    observer.start()
    change()
    done = time.monotonic() - started
    observer.join()
    if observer.seen is None:
        raise SystemExit(f"the change was never observed on every host (wanted stopped={want_stopped})")
    return observer.seen, done


def payops(env: dict[str, str], inventory: Path, command: str, *extra: str) -> None:
    result = subprocess.run([sys.executable, "-m", "payops.cli", "run", command, "-i", str(inventory), *extra],
                            cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"payops run {command} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")


def psql(dsn: str, enabled: bool, reason: str) -> None:
    sql = ("UPDATE payops.switches SET enabled = :'enabled'::boolean, reason = :'reason', set_by = 'benchmark',"
           " set_at = now() WHERE name = 'payments_stopped';\n")
    subprocess.run(["psql", dsn, "-qX", "-v", "ON_ERROR_STOP=1", "-v", f"enabled={str(enabled).lower()}",
                    "-v", f"reason={reason}"], input=sql, text=True, check=True, stdout=subprocess.DEVNULL)


def by_hand(dsn: str, edges: list[Edge], on: bool) -> None:
    psql(dsn, on, "benchmark by hand")
    for edge in edges:
        if on:
            edge.switch_path.write_text(SWITCH_CONTENT)
        else:
            edge.switch_path.unlink(missing_ok=True)
        subprocess.run(edge.reload_argv(), check=True)


def measure(label: str, env: dict[str, str], inventory: Path, dsn: str, edges: list[Edge],
            repeat: int) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in
                                                      ("payops stop", "payops recover", "by hand stop",
                                                       "by hand resume")}
    for attempt in range(1, repeat + 1):
        results["payops stop"].append(timed(edges, True, lambda: payops(
            env, inventory, "payment:emergency-stop", "-e", "reason=benchmark")))
        results["payops recover"].append(timed(edges, False, lambda: payops(env, inventory, "system:recover")))
        results["by hand stop"].append(timed(edges, True, lambda: by_hand(dsn, edges, True)))
        results["by hand resume"].append(timed(edges, False, lambda: by_hand(dsn, edges, False)))
        print(f"  {label}: repeat {attempt}/{repeat}: " + ", ".join(
            f"{name} {values[-1][0]:.2f} s" for name, values in results.items()), flush=True)
    return results


def median(values: list[tuple[float, float]], index: int) -> float:
    return statistics.median(value[index] for value in values)


def show(label: str, results: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    print(f"\n{label} (medians of {len(results['payops stop'])})")
    print(f"  {'change':<16}{'seen':>10}{'done':>10}")
    for name, values in results.items():
        print(f"  {name:<16}{median(values, 0):>9.2f}s{median(values, 1):>9.2f}s")
    stop = median(results["payops stop"], 0) / median(results["by hand stop"], 0)
    recover = median(results["payops recover"], 0) / median(results["by hand resume"], 0)
    print(f"  ratio seen, payops / by hand: emergency-stop {stop:.1f}x, recover {recover:.1f}x")
    return {name: median(values, 0) for name, values in results.items()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_inventory(folder: Path, hosts: int, app_port: int) -> tuple[Path, list[Edge]]:
    """A web group of `hosts` nginx instances on loopback; every other variable from inventories/local."""
    inventory = folder / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "group_vars" / "all").symlink_to(ROOT / "inventories" / "local" / "group_vars" / "all")
    edges, web = [], {}
    for number in range(1, hosts + 1):
        name = f"web-{number:02d}"
        port = free_port()
        home = folder / "hosts" / name
        (home / "release").mkdir(parents=True)
        (home / "release" / "index.html").write_text(f"<!DOCTYPE html><title>{name}</title>\n")
        web[name] = {"edge_listen": [{"address": "127.0.0.1", "port": port}]}
        edges.append(Edge(f"http://127.0.0.1:{port}", home / "conf", home / "logs"))
    (inventory / "hosts.yml").write_text(json.dumps({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "children": {"web": {"hosts": web}},
    }}, indent=1))
    home = str(folder / "hosts") + "/{{ inventory_hostname }}"
    (inventory / "group_vars" / "web.yml").write_text(json.dumps({
        "edge_manage_package": False,
        "edge_service_manager": "command",
        "edge_nginx_binary": shutil.which("nginx") or "/usr/sbin/nginx",
        "edge_worker_processes": 1,
        "edge_worker_connections": 128,
        "edge_config_dir": f"{home}/conf",
        "edge_pid_file": f"{home}/run/nginx.pid",
        "edge_log_dir": f"{home}/logs",
        "edge_temp_dir": f"{home}/temp",
        "edge_release_dir": f"{home}/release",
        "edge_server_names": ["_"],
        "edge_hsts": False,
        "edge_api_upstreams": [f"127.0.0.1:{app_port}"],
        "edge_probe_url": "http://127.0.0.1:{{ edge_listen[0].port }}",
    }, indent=1))
    return inventory, edges


def converge_and_clone(env: dict[str, str], inventory: Path, edges: list[Edge]) -> None:
    """The edge role converges web-01 (and starts its nginx); the others get a copy of its
    configuration with their own paths and port, and their nginx started the same way. Converging
    every host with the role gives the same files and costs minutes of Ansible here."""
    converge = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "playbooks/sandbox-edge.yml",
         "--limit", "web-01"],
        cwd=ROOT, env={**env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}, capture_output=True, text=True, check=False)
    if converge.returncode != 0:
        raise SystemExit(f"converging web-01 with the edge role failed:\n{converge.stdout[-4000:]}")
    first = edges[0]
    first_home = first.config_dir.parent
    first_listen = "127.0.0.1:" + first.url.rsplit(":", 1)[1]
    for edge in edges[1:]:
        home = edge.config_dir.parent
        shutil.copytree(first.config_dir, edge.config_dir)
        for path in edge.config_dir.rglob("*"):
            if path.is_file():
                text = path.read_text()
                changed = text.replace(f"{first_home}/", f"{home}/").replace(
                    f"listen {first_listen} ", f"listen 127.0.0.1:{edge.url.rsplit(':', 1)[1]} ")
                if changed != text:
                    path.write_text(changed)
        for folder in ("logs", "temp", "run"):
            (home / folder).mkdir(exist_ok=True)
        subprocess.run(["nginx", "-e", str(edge.log_dir / "error.log"), "-c", str(edge.config_dir / "nginx.conf")],
                       check=True)


def stop_instances(edges: list[Edge]) -> None:
    for edge in edges:
        subprocess.run(["nginx", "-e", str(edge.log_dir / "error.log"), "-c", str(edge.config_dir / "nginx.conf"),
                        "-s", "quit"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50, help="web hosts of the scaled part (0: skip it)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each change; medians are printed")
    args = parser.parse_args()
    # Killed, it still lifts the payment stop and stops its nginx instances (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    status = json.loads(subprocess.run([sys.executable, "-m", "payops.cli", "sandbox", "status", "--json"],
                                       cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout)
    if any(service["state"] != "running" for service in status["services"].values()):
        raise SystemExit("the sandbox is not up: export PAYOPS_SANDBOX_DIR=... && payops sandbox up")
    folder = Path(tempfile.mkdtemp(prefix="payops-switch-bench-"))
    env["PAYOPS_AUDIT_LOG"] = str(folder / "audit.jsonl")
    env["PAYOPS_OPERATOR"] = "benchmark"
    state = Path(status["state_dir"]) / "edge"
    sandbox_edge = Edge(status["edge_url"], state / "conf", state / "logs")
    dsn = status["postgres_dsn"]
    many: list[Edge] = []
    try:
        print(f"1 web host (the sandbox's nginx), {args.repeat} repeats", flush=True)
        one = show("1 web host", measure("1 host", env, ROOT / "inventories" / "local", dsn, [sandbox_edge],
                                         args.repeat))
        if args.hosts > 0:
            inventory, many = write_inventory(folder, args.hosts, status["services"]["app"]["port"])
            started = time.monotonic()
            converge_and_clone(env, inventory, many)
            print(f"\nsetup (left out): {args.hosts} nginx instances, web-01's configuration rendered by the edge "
                  f"role and copied with each host's paths and port, started in {time.monotonic() - started:.1f} s",
                  flush=True)
            scaled = show(f"{args.hosts} web hosts", measure(f"{args.hosts} hosts", env, inventory, dsn, many,
                                                             args.repeat))
            print(f"\nscaling, seen on {args.hosts} hosts / seen on 1 host:")
            for name in scaled:
                print(f"  {name:<16}{scaled[name] / one[name]:>6.1f}x   ({one[name]:.2f} s -> {scaled[name]:.2f} s)")
    finally:
        for edge in [sandbox_edge, *many]:
            if edge.switch_path.exists():
                edge.switch_path.unlink()
                subprocess.run(edge.reload_argv(), check=False)
        psql(dsn, False, "benchmark cleanup")
        stop_instances(many)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
