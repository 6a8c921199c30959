"""`payops sandbox up | down | status | traffic`: the local sandbox from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from payops.errors import PayopsError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sandbox", help="the local sandbox: a small, real BetaSkill platform on loopback",
        description="The local sandbox: PostgreSQL, S3 (moto), the iKhokha simulator, the BetaSkill app, "
                    "nginx (the edge role), Prometheus, Alertmanager and a notification sink, on loopback, "
                    "as the current user, with state under .sandbox/ (or $PAYOPS_SANDBOX_DIR).")
    parser.add_argument("--state-dir", type=Path, help="the state directory (default: .sandbox in the checkout)")
    sub = parser.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")

    up = sub.add_parser("up", help="start what is not running (a second `up` reuses what runs)")
    up.add_argument("--only", action="append", metavar="SERVICE",
                    help="start only this service and what it needs (repeatable)")
    up.add_argument("--json", action="store_true", help="print the status as JSON when done")
    up.add_argument("--converge-edge", action="store_true",
                    help="run the edge playbook even when its inputs did not change")
    up.set_defaults(func=run_up)

    down = sub.add_parser("down", help="stop everything the sandbox started")
    down.add_argument("--purge", action="store_true", help="also delete the data and the credentials")
    down.set_defaults(func=run_down)

    status = sub.add_parser("status", help="each service's state, the endpoints and the credentials")
    status.add_argument("--json", action="store_true", help="machine-readable, with the credentials")
    status.set_defaults(func=run_status)

    traffic = sub.add_parser(
        "traffic", help="make payment history through the real paths (checkout, paylink, callback)")
    traffic.add_argument("--payments", type=int, default=20, metavar="N", help="how many payments (20)")
    traffic.add_argument("--failure-rate", type=float, default=0.02, metavar="R",
                         help="the share that fails at the gateway, 0..1 (0.02)")
    traffic.add_argument("--days", type=int, default=0, metavar="D",
                         help="spread the payments over the last D days (back-dated; 0: now)")
    traffic.add_argument("--workers", type=int, default=4, help="concurrent customers (4)")
    traffic.add_argument("--seed", type=int, help="random seed, for a repeatable history")
    traffic.add_argument("--timezone", default="Africa/Johannesburg",
                         help="the platform's time zone, whose calendar days --days plans (Africa/Johannesburg)")
    traffic.add_argument("--json", action="store_true", help="print the summary as JSON")
    traffic.set_defaults(func=run_traffic)


def _sandbox(args: argparse.Namespace) -> Any:
    from payops.sandbox.manager import Sandbox

    return Sandbox(state_dir=args.state_dir)


def run_up(args: argparse.Namespace) -> int:
    sandbox = _sandbox(args)
    sandbox.force_edge = args.converge_edge
    report = sandbox.up(only=args.only)
    status = sandbox.status()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print_table(status)
        timings = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items())
        print(f"\nstarted: {', '.join(report.started) or 'nothing'}; reused: {', '.join(report.reused) or 'nothing'}"
              f" ({timings})")
    bad = [name for name, svc in status["services"].items()
           if svc["state"] != "running" and name in sandbox.wanted(args.only)]
    if bad:
        raise PayopsError(f"not running after up: {', '.join(bad)}")
    return 0


def run_down(args: argparse.Namespace) -> int:
    stopped = _sandbox(args).down(purge=args.purge)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    status = _sandbox(args).status()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print_table(status)
    return 0


def run_traffic(args: argparse.Namespace) -> int:
    from payops.sandbox.traffic import make_traffic

    if args.payments < 1:
        raise PayopsError("--payments must be at least 1")
    if not 0 <= args.failure_rate <= 1:
        raise PayopsError("--failure-rate must be between 0 and 1")
    if args.days < 0:
        raise PayopsError("--days must be 0 or more")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(args.timezone)
    except (ValueError, KeyError):
        raise PayopsError(f"--timezone {args.timezone!r} is not a time zone (e.g. Africa/Johannesburg)") from None
    summary = make_traffic(_sandbox(args), payments=args.payments, failure_rate=args.failure_rate,
                           days=args.days, workers=max(1, args.workers), seed=args.seed, timezone=args.timezone)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(f"payments: {summary['made']} made, {summary['completed']} completed, {summary['failed']} failed, "
              f"{summary['errors']} errors; {summary['elapsed_seconds']:.1f} s"
              + (f"; back-dated over {summary['days']} days" if summary["days"] else ""))
        for day, totals in summary["per_day"].items():
            print(f"  {day}: {totals['made']} made, {totals['completed']} completed, {totals['failed']} failed, "
                  f"{totals['completed_cents']['ZAR']} ZAR cents completed")
        for error in summary["error_samples"]:
            print(f"  error: {error}", file=sys.stderr)
    return 0 if summary["errors"] == 0 else 1


def print_table(status: dict[str, Any]) -> None:
    urls = {"postgres": status["postgres_dsn"], "s3": status["s3_endpoint"], "sink": status["notify_url"],
            "ikhokha": status["ikhokha_url"], "app": status["app_url"],
            "alertmanager": status["alertmanager_url"], "prometheus": status["prometheus_url"],
            "edge": status["edge_url"]}
    if urls["postgres"] and status.get("postgres_password"):
        urls["postgres"] = urls["postgres"].replace(status["postgres_password"], "***")
    print(f"{'SERVICE':<13}{'STATE':<11}{'PID':<9}{'PORT':<7}ENDPOINT")
    for name, svc in status["services"].items():
        print(f"{name:<13}{svc['state']:<11}{svc['pid'] or '-'!s:<9}{svc['port'] or '-'!s:<7}{urls.get(name) or '-'}")
    print(f"\nstate: {status['state_dir']} (credentials: payops sandbox status --json)")
