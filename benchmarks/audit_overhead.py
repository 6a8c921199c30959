#!/usr/bin/env python3
"""What the audit callback costs a run: a 200-task playbook without it, with the file sink and with
the PostgreSQL sink, side by side in the same run.

    export PATH=$PWD/.venv/bin:$PATH
    export PAYOPS_SANDBOX_DIR=/tmp/sandbox-bench     # a sandbox that is up (payops sandbox up)
    python benchmarks/audit_overhead.py --runs 5

The playbook (written to a temporary folder) has --tasks tasks on localhost, alternating
ansible.builtin.set_fact and ansible.builtin.debug with a few arguments each, so that every task
gives the callback a record to redact, hash and write. Three ways, run interleaved (none, file,
postgres, none, file, ...) so that a slow moment of the machine falls on all of them:

  none      the project's ansible.cfg without its callbacks_enabled line (a copy in the temporary folder)
  file      betaskill.payops.audit to a temporary JSON-lines file (PAYOPS_AUDIT_LOG)
  postgres  betaskill.payops.audit to payops.audit_trail in the sandbox's database, as the sandbox's
            payops_audit login (PAYOPS_AUDIT_DSN): one committed row per event

Prints each way's median wall time of --runs and its ratio to none, and the same for CPU time (user +
system of ansible-playbook and its workers, from wait4): on a busy machine wall times move with
the other load, CPU times much less. The postgres sink's work inside PostgreSQL is not in them.
The rows the postgres runs add stay in the sandbox's trail (they are a real trail's rows).
Not a test: it never fails on a time.
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


def sandbox() -> dict:
    result = subprocess.run([str(BIN / "payops"), "sandbox", "status", "--json"], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)


def write_playbook(folder: Path, tasks: int) -> Path:
    lines = ["- name: Audit overhead", "  hosts: localhost", "  connection: local", "  gather_facts: false",
             "  tasks:"]
    for number in range(tasks):
        if number % 2:
            lines += [f"    - name: Say step {number}", "      ansible.builtin.debug:",
                      f"        msg: step {number} of {tasks}", "        verbosity: 1"]
        else:
            lines += [f"    - name: Remember step {number}", "      ansible.builtin.set_fact:",
                      f"        bench_step: {number}", "        bench_note: a note about this step"]
    path = folder / "overhead.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def timed(playbook: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of ansible-playbook and every process it waited for)."""
    started = time.monotonic()
    process = subprocess.Popen([str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook),
                                "-e", f"ansible_python_interpreter={sys.executable}"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"ansible-playbook failed ({process.returncode}) with {sorted(set(env) - set(os.environ))}")
    return time.monotonic() - started, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each way (5)")
    parser.add_argument("--tasks", type=int, default=200, help="tasks in the playbook (200)")
    args = parser.parse_args()

    status = sandbox()
    with tempfile.TemporaryDirectory(prefix="payops-audit-bench-") as tmp:
        folder = Path(tmp)
        playbook = write_playbook(folder, args.tasks)
        base = {key: value for key, value in os.environ.items() if not key.startswith("PAYOPS_AUDIT")}
        base["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
        bare = folder / "ansible.cfg"
        bare.write_text("".join(line for line in (ROOT / "ansible.cfg").read_text().splitlines(keepends=True)
                                if not line.startswith("callbacks_enabled")))
        ways = {
            "none": {**base, "ANSIBLE_CONFIG": str(bare)},
            "file": {**base, "PAYOPS_AUDIT_LOG": str(folder / "audit.jsonl")},
            "postgres": {**base, "PAYOPS_AUDIT_DSN": status["audit_dsn"]},
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        cpu: dict[str, list[float]] = {name: [] for name in ways}
        for env in ways.values():  # one warm-up each: imports, the page cache, the first connection
            timed(playbook, env)
        for _ in range(args.runs):
            for name, env in ways.items():
                wall, used = timed(playbook, env)
                times[name].append(wall)
                cpu[name].append(used)
        lines = sum(1 for _ in (folder / "audit.jsonl").open())

    none = statistics.median(times["none"])
    none_cpu = statistics.median(cpu["none"])
    print(f"{args.tasks} tasks, median of {args.runs} runs each (interleaved), load average "
          f"{os.getloadavg()[0]:.2f}; the file sink wrote {lines} lines")
    print(f"  {'way':<10} {'median s':>9} {'min s':>7} {'max s':>7} {'ratio':>7} {'cpu s':>7} {'cpu ratio':>9}")
    for name, values in times.items():
        median = statistics.median(values)
        used = statistics.median(cpu[name])
        print(f"  {name:<10} {median:9.2f} {min(values):7.2f} {max(values):7.2f} {median / none:7.3f}x"
              f" {used:7.2f} {used / none_cpu:8.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
