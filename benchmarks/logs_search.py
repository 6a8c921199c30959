#!/usr/bin/env python3
"""logs:application over generated logs on many hosts, against grep run by hand on each host.

    export PATH=$PWD/.venv/bin:$PATH
    python benchmarks/logs_search.py                      # 10 hosts, 100 MB and 300 MB in all
    python benchmarks/logs_search.py --sizes 100M 1G      # the issue's figures (1 GB takes a while to write)

For each size, writes that much of app-like JSON lines over --hosts hosts (half web, half app; each
host a live log and a rotated .gz one, the gzip'd one a third of its lines) under --dir, with one
request's lines (a known X-Request-ID) on every host, and a generated inventory of local hosts whose
logs_sources point there. Then, interleaved, --runs times each:

  logs:application  ansible-playbook playbooks/logs_application.yml -e request_id=<id> over every
                    host at once (each host filters its own files; forks = the number of hosts)
  by hand           what an operator does without it: on each host in turn, grep -F the id in the
                    live file and zgrep -F in the rotated one (no ssh: the hosts are this machine)

Prints each way's median, their ratio, the bytes the search returned (they stay under the cap:
--limit lines a host) and the controller's peak memory (ansible-playbook's own maximum RSS, not
its workers'), which stays flat from one size to the next: lines are filtered on the hosts and
only matches travel. Not a test: it never fails on a time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROUTES = ("/api/checkout", "/api/health", "/api/webhooks/ikhokha", "/metrics")


def size_bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)B?", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: a size such as 100M or 1G")
    return int(float(match.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[match.group(2)])


def line(rng: random.Random, moment: float, request_id: str) -> str:
    return json.dumps({
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}Z",
        "level": "info", "logger": "app", "message": "request", "request_id": request_id,
        "event": "request", "method": "POST", "route": rng.choice(ROUTES), "status": rng.choice((200, 201, 400, 503)),
        "duration_ms": round(rng.random() * 200, 1), "db_ms": round(rng.random() * 50, 1), "gateway_ms": 0.0,
        "payment_reference": f"SKILL-{int(moment * 1000)}-{rng.getrandbits(32):08x}",
    }, separators=(",", ":")) + "\n"


def write_host(folder: Path, size: int, needle: str, seed: int, now: float) -> None:
    """~size bytes of lines over the last 50 minutes: a rotated .gz third, then the live log."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sample = len(line(rng, now, "x" * 32))
    count = max(size // sample, 10)
    start = now - 3000
    step = 3000 / count
    rotated_count = count // 3
    needles = {rotated_count // 2, rotated_count + (count - rotated_count) // 2}
    def request_id(index: int) -> str:
        return needle if index in needles else f"{rng.getrandbits(128):032x}"

    with gzip.open(folder / "app.log.1.gz", "wt", compresslevel=1) as rotated:
        for index in range(rotated_count):
            rotated.write(line(rng, start + index * step, request_id(index)))
    with (folder / "app.log").open("w") as live:
        for index in range(rotated_count, count):
            live.write(line(rng, start + index * step, request_id(index)))
    old = now - 1000
    os.utime(folder / "app.log.1.gz", (old, old))


def write_inventory(base: Path, hosts: list[str]) -> Path:
    lines = ["all:", "  vars:", "    ansible_connection: local", f"    ansible_python_interpreter: {sys.executable}",
             "    payops_environment: bench", "    logs_journal: []", "  children:"]
    for group in ("web", "app"):
        lines += [f"    {group}:", "      hosts:"]
        for host in hosts:
            if host.startswith(group):
                source = f"{{name: app, groups: [all], kinds: [application], paths: [{base / host / 'app.log'}]}}"
                lines += [f"        {host}:", "          logs_sources:", f"            - {source}"]
    path = base / "hosts.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def payops_search(inventory: Path, needle: str, hosts: int, limit: int, report_dir: Path) -> tuple[float, int, dict]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORKS": str(hosts),
           "PAYOPS_AUDIT_LOG": str(report_dir / "audit.jsonl")}
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks" / "logs_application.yml"),
            "-e", f"request_id={needle}", "-e", "since=2h", "-e", f"limit={limit}",
            "-e", f"payops_report_dir={report_dir}"]
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def watch() -> None:  # the controller's own high-water mark (VmHWM), not its workers'
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                return
            found = re.search(r"VmHWM:\s+(\d+) kB", status)
            if found:
                peak[0] = max(peak[0], int(found.group(1)))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output, _ = proc.communicate()
    watcher.join()
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"logs:application failed:\n{output[-3000:]}")
    report = json.loads((report_dir / "logs-application.json").read_text())
    return elapsed, peak[0], report


def by_hand(base: Path, hosts: list[str], needle: str) -> float:
    started = time.monotonic()
    for host in hosts:
        subprocess.run(["grep", "-F", needle, str(base / host / "app.log")], capture_output=True, check=False)
        subprocess.run(["zgrep", "-F", needle, str(base / host / "app.log.1.gz")], capture_output=True, check=False)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=size_bytes, default=[size_bytes("100M"), size_bytes("300M")],
                        help="total log sizes over all hosts (default 100M 300M; the issue's: 100M 1G)")
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=200, help="the per-host cap (logs:application's limit)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/payops-bench-logs"))
    args = parser.parse_args()
    hosts = [f"{'web' if index % 2 == 0 else 'app'}-{index:02d}" for index in range(args.hosts)]
    needle = "benchneedle" + "0" * 21
    print(f"{'size':>8} {'way':<18} {'median s':>9} {'ratio':>7}  returned  controller peak")
    for total in args.sizes:
        base = args.dir / f"{total // 1024**2}M"
        now = time.time()
        if not (base / "hosts.yml").exists():
            for index, host in enumerate(hosts):
                write_host(base / host, total // args.hosts, needle, index, now)
            write_inventory(base, hosts)
        else:  # reused: keep the lines inside the window
            for host in hosts:
                os.utime(base / host / "app.log", (now, now))
        inventory = base / "hosts.yml"
        report_dir = base / "reports"
        report_dir.mkdir(exist_ok=True)
        searched, manual, peaks, returned = [], [], [], 0
        for _ in range(args.runs):
            elapsed, peak, report = payops_search(inventory, needle, len(hosts), args.limit, report_dir)
            searched.append(elapsed)
            peaks.append(peak)
            returned = sum(host["bytes_returned"] for host in report["details"]["hosts"])
            found = report["details"]["matched"]
            manual.append(by_hand(base, hosts, needle))
        expected = 2 * len(hosts)
        label = f"{total / 1024**2:.0f}M"
        ratio = statistics.median(searched) / statistics.median(manual)
        print(f"{label:>8} {'logs:application':<18} {statistics.median(searched):9.2f} {ratio:7.2f}  "
              f"{returned:>8} B  {max(peaks) / 1024:.0f} MiB  ({found} of {expected} needle lines found)")
        print(f"{label:>8} {'by hand (grep)':<18} {statistics.median(manual):9.2f} {1.0:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
