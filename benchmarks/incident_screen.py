#!/usr/bin/env python3
"""status:emergency (the incident screen) against the same checks by hand and a one-task playbook.

    export PATH=$PWD/.venv/bin:$PATH
    export PAYOPS_SANDBOX_DIR=/tmp/sandbox-bench   # a sandbox that is up (payops sandbox up)
    python benchmarks/incident_screen.py --runs 5

Four ways, interleaved (a slow moment of the machine falls on all of them):

  payops run        payops run status:emergency (ansible-runner, the audit callback, the screen)
  ansible-playbook  ansible-playbook playbooks/status_emergency.yml with the project's ansible.cfg
  one-task ping     a playbook of one ansible.builtin.ping on localhost, same ansible.cfg and
                    inventory: what any procedure costs before it does anything
  by hand           curl /api/health through the edge, the screen's database query with psql,
                    curl Prometheus' readiness and Alertmanager's firing alerts, one after the other

Prints each way's median of --runs and its ratio to the one-task playbook and to by hand (the
issue's goals: the screen within 3 s and 1.5x the one-task playbook). Not a test: it never fails
on a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PING = ("- name: One task\n  hosts: localhost\n  gather_facts: false\n"
        "  tasks:\n    - name: Ping\n      ansible.builtin.ping:\n")
# The screen's database query (playbooks/status_emergency.yml), as an operator would paste it.
SCREEN_SQL = """
SELECT 'switch', name, enabled::text, reason, set_by, set_at FROM payops.switches
UNION ALL SELECT 'pending', 'pending payments', count(*)::text, NULL, NULL, min(created_at)
  FROM public.payments WHERE status = 'pending'
UNION ALL SELECT 'backlog', 'webhook backlog', count(*)::text, NULL, NULL, NULL FROM public.payments
 WHERE status = 'pending' AND gateway_response ? 'paylinkID' AND created_at < now() - interval '5 minutes'
UNION ALL SELECT 'receipts', 'callbacks in the last hour', count(*)::text, NULL, NULL, max(received_at)
  FROM payops.webhook_receipts WHERE received_at > now() - interval '1 hour'
"""


def status() -> dict:
    result = subprocess.run([str(BIN / "payops"), "sandbox", "status", "--json"], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}... failed ({result.returncode}):\n{result.stdout[-2000:]}")
    return elapsed


def by_hand(sb: dict) -> float:
    env = {**os.environ, "PGPASSWORD": sb["postgres_password"]}
    commands = [
        ["curl", "-s", "-o", "/dev/null", f"{sb['edge_url']}/api/health"],
        ["psql", "-X", "-q", "-A", "-t", "-h", sb["postgres_host"], "-p", str(sb["postgres_port"]),
         "-U", sb["postgres_user"], "-d", sb["postgres_db"], "-c", SCREEN_SQL],
        ["curl", "-s", "-o", "/dev/null", f"{sb['prometheus_url']}/-/ready"],
        ["curl", "-s", "-o", "/dev/null",
         f"{sb['alertmanager_url']}/api/v2/alerts?active=true&silenced=false&inhibited=false"],
    ]
    started = time.monotonic()
    for argv in commands:
        subprocess.run(argv, env=env, capture_output=True, check=True)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each way (5)")
    args = parser.parse_args()
    sb = status()
    if any(service["state"] != "running" for service in sb["services"].values()):
        raise SystemExit("the sandbox is not up: export PAYOPS_SANDBOX_DIR=... and run `payops sandbox up` first")
    with tempfile.TemporaryDirectory(prefix="payops-incident-bench-") as tmp:
        folder = Path(tmp)
        (folder / "ping.yml").write_text(PING)
        env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
               "PAYOPS_AUDIT_LOG": str(folder / "audit.jsonl")}
        inventory = ["-i", str(ROOT / "inventories" / "local" / "hosts.yml")]
        ways = {
            "payops run": lambda: timed([str(BIN / "payops"), "run", "status:emergency"], env),
            "ansible-playbook": lambda: timed([str(BIN / "ansible-playbook"), *inventory,
                                               "playbooks/status_emergency.yml"], env),
            "one-task ping": lambda: timed([str(BIN / "ansible-playbook"), *inventory, str(folder / "ping.yml")], env),
            "by hand": lambda: by_hand(sb),
        }
        for way in ways.values():  # warm-up: imports and the page cache
            way()
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.runs):
            for name, way in ways.items():
                times[name].append(way())

    ping = statistics.median(times["one-task ping"])
    hand = statistics.median(times["by hand"])
    print(f"medians of {args.runs} runs (interleaved); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    print(f"  {'way':<18} {'median s':>9} {'min s':>7} {'max s':>7} {'vs ping':>8} {'vs by hand':>11}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<18} {median:9.2f} {min(values):7.2f} {max(values):7.2f} {median / ping:7.2f}x "
              f"{median / hand:10.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
