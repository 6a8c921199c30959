#!/usr/bin/env python3
"""health:check-all against the same checks run one after another, in the same run.

    export PAYOPS_SANDBOX_DIR=/tmp/sandbox-bench   # a sandbox that is up (payops sandbox up)
    python benchmarks/health_check_all.py --runs 3

Three ways to make the same checks (the edge's /api/health, a signed iKhokha getStatus three
times, the database's health and backlog queries, the payment KPIs, security events and switches,
Prometheus' targets and KPI query, Alertmanager's alerts):

  concurrent   ansible-playbook playbooks/health_check_all.yml: each inventory group's
               first host runs its share (free strategy), all groups at once
  sequential   the same health_checks role on localhost, one check after the other
  by hand      curl and psql, one after the other (what an operator would type)

each measured twice: as the sandbox is, and with the iKhokha simulator answering 1 s late (fault
injection), where running checks at the same time matters. Prints medians of --runs and the
ratios. Not a test: it never fails on a time. Restores the simulator's faults when done.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ["edge", "ikhokha", "security", "database", "payments", "monitoring", "http"]

SEQUENTIAL_PLAY = f"""
- name: Benchmark | The checks of health:check-all, one after the other on one host
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{ROOT}/playbooks/vars/health.yml]
  tasks:
    - name: Benchmark | Run every check
      ansible.builtin.include_role:
        name: betaskill.payops.health_checks
      vars:
        health_checks_components: {json.dumps(CHECKS)}
"""

DB_SQL = [
    "SELECT current_setting('server_version'), current_setting('max_connections'), "
    "pg_database_size(current_database())",
    "SELECT state, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1",
    "SELECT pid, now() - query_start, state, pg_blocking_pids(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    "SELECT count(*) FROM public.payments WHERE status = 'pending' AND gateway_response ? 'paylinkID' "
    "AND created_at < now() - interval '5 minutes'",
]
PAYMENT_SQL = [
    "SELECT status, count(*) FROM public.payments WHERE created_at > now() - interval '24 hours' GROUP BY 1",
    "SELECT error_category, count(*) FROM public.payment_errors WHERE created_at > now() - interval '24 hours' "
    "GROUP BY 1",
    "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY r.received_at - p.created_at) FROM "
    "payops.webhook_receipts r JOIN public.payments p ON p.id = r.payment_id "
    "WHERE p.created_at > now() - interval '24 hours'",
    "SELECT currency, sum(amount) FROM public.payments WHERE status = 'completed' "
    "AND created_at > now() - interval '24 hours' GROUP BY 1",
]
SECURITY_SQL = [
    "SELECT severity, count(*) FROM public.security_events WHERE created_at > now() - interval '24 hours' GROUP BY 1",
    "SELECT name, enabled FROM payops.switches",
]
KPI_QUERY = ('sum(increase(betaskill_http_requests_total{status=~"5.."}[24h])) / '
             'sum(increase(betaskill_http_requests_total[24h]))')


def status() -> dict:
    out = subprocess.run([sys.executable, "-m", "payops.cli", "sandbox", "status", "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                            check=False)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}... failed ({result.returncode}):\n{result.stdout[-2000:]}"
                         f"\n{result.stderr[-2000:]}")
    return elapsed


def by_hand(sb: dict) -> float:
    """curl and psql, one after the other, as an operator would run them."""
    env = {**os.environ, "PGPASSWORD": sb["postgres_password"]}
    psql = ["psql", "-X", "-q", "-A", "-t", "-h", sb["postgres_host"], "-p", str(sb["postgres_port"]),
            "-U", sb["postgres_user"], "-d", sb["postgres_db"]]
    url = f"{sb['ikhokha_url'].rstrip('/')}/getStatus/payops-bench-unknown"
    signature = hmac.new(sb["ikhokha_app_secret"].strip().encode(), urlsplit(url).path.encode(),
                         hashlib.sha256).hexdigest()
    commands = [["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{sb['edge_url']}/api/health"]]
    commands += [["curl", "-s", "-o", "/dev/null", "-H", f"IK-APPID: {sb['ikhokha_app_id']}",
                  "-H", f"IK-SIGN: {signature}", url]] * 3
    commands += [[*psql, "-c", sql] for sql in SECURITY_SQL + DB_SQL + PAYMENT_SQL]
    commands += [["curl", "-s", "-o", "/dev/null", f"{sb['prometheus_url']}/api/v1/targets?state=active"],
                 ["curl", "-s", "-o", "/dev/null", f"{sb['alertmanager_url']}/api/v2/alerts?active=true"],
                 ["curl", "-s", "-o", "/dev/null", f"{sb['prometheus_url']}/api/v1/query?query={quote(KPI_QUERY)}"]]
    started = time.monotonic()
    for argv in commands:
        subprocess.run(argv, env=env, capture_output=True, check=True)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs of each way, per scenario (3)")
    parser.add_argument("--latency-ms", type=int, default=1000, help="simulator latency of the second scenario")
    args = parser.parse_args()
    # Stopped with SIGTERM (timeout, kill), still put the simulator's faults back and remove the play.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sb = status()
    if any(service["state"] != "running" for service in sb["services"].values()):
        raise SystemExit("the sandbox is not up: export PAYOPS_SANDBOX_DIR=... and run `payops sandbox up` first")
    env = {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.null"}
    playbook = ["ansible-playbook", "-i", str(ROOT / "inventories/local/hosts.yml")]
    admin = sb["ikhokha_admin_url"]
    original = requests.get(f"{admin}/faults", timeout=5).json()
    with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=ROOT / "playbooks", prefix=".bench-") as play:
        play.write(SEQUENTIAL_PLAY)
        play.flush()
        ways = {
            "concurrent (health:check-all)": lambda: timed([*playbook, "playbooks/health_check_all.yml"], env),
            "sequential (same role, one host)": lambda: timed([*playbook, play.name], env),
            "by hand (curl, psql)": lambda: by_hand(sb),
        }
        results: dict[str, dict[str, float]] = {}
        try:
            for scenario, latency in (("as is", 0), (f"iKhokha +{args.latency_ms} ms", args.latency_ms)):
                requests.put(f"{admin}/faults", json={**original, "latency_ms": latency}, timeout=5).raise_for_status()
                for name, way in ways.items():
                    times = [way() for _ in range(args.runs)]
                    results.setdefault(scenario, {})[name] = statistics.median(times)
                    print(f"{scenario:<18} {name:<34} {' '.join(f'{t:6.2f}' for t in times)} s", flush=True)
        finally:
            requests.put(f"{admin}/faults", json=original, timeout=5).raise_for_status()

    print(f"\nmedians of {args.runs} runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
    print(f"{'scenario':<18} {'way':<34} {'seconds':>8} {'vs concurrent':>14}")
    for scenario, times in results.items():
        base = times["concurrent (health:check-all)"]
        for name, seconds in times.items():
            print(f"{scenario:<18} {name:<34} {seconds:8.2f} {seconds / base:13.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
