#!/usr/bin/env python3
"""reports:daily-summary over a month of history at two sizes, against its own query by hand.

    export PAYOPS_SANDBOX_DIR=/tmp/sandbox-bench   # a sandbox that is up (payops sandbox up)
    python benchmarks/daily_summary.py --runs 3 --sizes 10000 100000

For each size, plants that many payments (with their callbacks) over 30 days that end 400 days ago,
so that no other history is in their way, then reports one day of them, --runs times, interleaved:

  procedure   payops run reports:daily-summary -e day=<the 15th day>: every source, the page,
              the upload and the notification
  by hand     the procedure's own SQL statement (playbooks/files/daily-summary.sql) over psycopg

and prints the medians, the ratio, the largest process the run's controller had (max RSS of the
children) and the rows the database handed over to the controller, at each size: with the
aggregation in the database, both stay the same when the history grows tenfold. Deletes what it
planted when done. Not a test: it never fails on a time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
import payops_time  # noqa: E402 - the procedure's own period arithmetic, loaded from the checkout

TZ = ZoneInfo("Africa/Johannesburg")
TEST_USER = str(uuid.uuid5(uuid.UUID("361E6D51-FAEC-444A-9079-341386DA8E2E"), "payops-payment-flow"))
COURSE = "00000000-0000-4000-8000-000000000001"
PLANT = """
WITH made AS (
    INSERT INTO public.payments (user_id, course_id, amount, status, transaction_reference, gateway_response,
                                 created_at, updated_at)
    SELECT gen_random_uuid(), %(course)s, 29900 + (n %% 3) * 30000,
           CASE WHEN n %% 25 = 0 THEN 'failed' WHEN n %% 97 = 0 THEN 'pending' ELSE 'completed' END,
           'BENCH-' || n, jsonb_build_object('paylinkID', 'PLBENCH' || n),
           %(start)s::timestamptz + (n * %(step)s) * interval '1 second',
           %(start)s::timestamptz + (n * %(step)s + 30) * interval '1 second'
      FROM generate_series(1, %(size)s) AS n
    RETURNING id, status, gateway_response ->> 'paylinkID' AS paylink, updated_at
)
INSERT INTO payops.webhook_receipts (paylink_id, status, payment_id, source, received_at)
SELECT paylink, CASE WHEN status = 'completed' THEN 'SUCCESS' ELSE 'FAILURE' END, id, 'webhook', updated_at
  FROM made WHERE status <> 'pending'
"""
CLEAN = [
    "DELETE FROM payops.webhook_receipts WHERE paylink_id LIKE 'PLBENCH%%'",
    "DELETE FROM public.payments WHERE transaction_reference LIKE 'BENCH-%%'",
]


def status() -> dict:
    out = subprocess.run([sys.executable, "-m", "payops.cli", "sandbox", "status", "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def plant(dsn: str, size: int, first_day) -> None:
    start = datetime.combine(first_day, datetime.min.time(), tzinfo=TZ)
    with psycopg.connect(dsn) as conn:
        for statement in CLEAN:
            conn.execute(statement)
        conn.execute(PLANT, {"course": COURSE, "start": start, "step": 30 * 86400 / size, "size": size})


def by_hand(dsn: str, day: str) -> tuple[float, int]:
    period = payops_time.parse_day(day)
    sql = (ROOT / "playbooks" / "files" / "daily-summary.sql").read_text()
    began = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        cursor = conn.execute(sql, {"start": period["start"], "upto": period["until"], "tz": "Africa/Johannesburg",
                                    "test_users": TEST_USER, "environment": "local", "pending_minutes": 30})
        rows = cursor.fetchall()
    return time.perf_counter() - began, len(rows)


def procedure(day: str) -> tuple[float, int, dict, float]:
    """(seconds, rows the database handed the controller, the report, the largest process's MiB)."""
    with tempfile.TemporaryFile("w+") as output:
        began = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "payops.cli", "run", "reports:daily-summary", "-e",
                                  f"day={day}"], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        _pid, code, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(code)
        elapsed = time.perf_counter() - began
        output.seek(0)
        text = output.read()
    if child.returncode != 0:
        raise SystemExit(f"reports:daily-summary failed:\n{text[-4000:]}")
    folder = Path(re.search(r"run artefacts in (\S+)", text).group(1))
    rows = 0
    for path in (folder / "job_events").glob("*.json"):
        event = json.loads(path.read_text())
        data = event.get("event_data", {})
        if event["event"] == "runner_on_ok" and "database's figures" in data.get("task", ""):
            rows = data["res"].get("rowcount", 0)
    report = json.loads((folder / "daily-summary.json").read_text())
    # wait4's maximum resident set: the largest of the run's processes (ansible-playbook, a module).
    return elapsed, rows, report, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    os.environ.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
    dsn = status()["postgres_dsn"]
    first_day = (datetime.now(UTC).astimezone(TZ) - timedelta(days=430)).date()
    day = (first_day + timedelta(days=15)).isoformat()
    results = {}
    try:
        for size in args.sizes:
            plant(dsn, size, first_day)
            runs, hands, memory, counts = [], [], [], None
            for _ in range(args.runs):
                elapsed, rows, report, rss = procedure(day)
                runs.append(elapsed)
                memory.append(rss)
                counts = report["details"]["counts"]
                hand, hand_rows = by_hand(dsn, day)
                hands.append(hand)
            results[size] = {"procedure_s": statistics.median(runs), "by_hand_s": statistics.median(hands),
                             "rows_to_controller": rows, "rows_by_hand": hand_rows,
                             "max_child_rss_mib": round(max(memory), 1), "payments_in_day": counts["total"]}
    finally:
        with psycopg.connect(dsn) as conn:
            for statement in CLEAN:
                conn.execute(statement)
    print(f"reports:daily-summary of {day}, 30 days of history, medians of {args.runs} runs")
    print(f"{'payments':>10} {'in the day':>10} {'procedure':>10} {'by hand':>9} {'ratio':>7} "
          f"{'rows (proc/hand)':>17} {'largest process':>16}")
    for size, item in results.items():
        ratio = item["procedure_s"] / item["by_hand_s"]
        print(f"{size:>10} {item['payments_in_day']:>10} {item['procedure_s']:>9.2f}s {item['by_hand_s']:>8.3f}s "
              f"{ratio:>6.0f}x {item['rows_to_controller']:>8}/{item['rows_by_hand']:<8} "
              f"{item['max_child_rss_mib']:>12.1f} MiB")
    sizes = list(results)
    if len(sizes) >= 2:
        small, large = results[sizes[0]], results[sizes[-1]]
        print(f"\n{sizes[-1] // sizes[0]}x the history: the procedure takes "
              f"{large['procedure_s'] / small['procedure_s']:.2f}x as long, the query by hand "
              f"{large['by_hand_s'] / small['by_hand_s']:.2f}x; rows to the controller "
              f"{small['rows_to_controller']} and {large['rows_to_controller']}; largest process "
              f"{small['max_child_rss_mib']:.0f} and {large['max_child_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
