"""payops: BetaSkill's production runbook as Ansible procedures.

  payops list [--json|--markdown]           every runbook command, its playbook and whether it is implemented
  payops run COMMAND [-i INV] [-e k=v] [--check]
  payops audit verify [PATH]                check the audit trail's hash chain (a file)
  payops audit verify --db [-i INV]         the same for payops.audit_trail, its archive and anchors (audit:verify)
  payops sandbox up|down|status|traffic     the local copy of the platform
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from payops import audit, catalog, runner
from payops.errors import PayopsError
from payops.paths import project_root


def _catalog() -> tuple[Path, catalog.Catalog]:
    root = project_root()
    return root, catalog.load(root / "runbook.yml")


def cmd_list(args: argparse.Namespace) -> int:
    _, cat = _catalog()
    if args.json:
        json.dump([entry.as_dict() for entry in cat.entries], sys.stdout, indent=2)
        print()
        return 0
    if args.markdown:
        print(catalog.markdown_table(cat), end="")
        return 0
    implemented = sum(entry.implemented for entry in cat.entries)
    for section, entries in cat.by_section().items():
        print(f"\n{section}")
        for entry in entries:
            mark = "implemented" if entry.implemented else "planned"
            print(f"  {mark:<11}  {entry.command:<46} {entry.kind:<11}  {entry.purpose}")
    print(f"\n{implemented} of {len(cat.entries)} commands implemented; `payops list --json` for tools.")
    return 0


def cmd_run(args: argparse.Namespace, command: str | None = None) -> int:
    root, cat = _catalog()
    entry = cat.find(command or args.procedure)
    if not entry.implemented:
        raise PayopsError(
            f"{entry.command} is planned, not implemented yet: nothing was run "
            f"(`payops list` shows what is implemented)"
        )
    extravars = runner.parse_extravars(entry, args.extra_vars or [])
    inventory = Path(args.inventory) if args.inventory else root / "inventories" / "local" / "hosts.yml"
    if not inventory.exists():
        raise PayopsError(f"inventory {inventory} does not exist")
    request = runner.RunRequest(
        entry=entry,
        root=root,
        inventory=inventory,
        extravars=extravars,
        check=args.check,
        limit=args.limit,
        verbosity=args.verbose,
    )
    rc, _ = runner.run(request)
    return rc


def cmd_audit_verify(args: argparse.Namespace) -> int:
    if args.db:
        if args.path:
            raise PayopsError("payops audit verify: give a PATH (a file trail) or --db (the database's), not both")
        return cmd_run(args, "audit:verify")
    path = Path(args.path) if args.path else project_root() / ".payops" / "audit" / "audit.jsonl"
    verdict = audit.verify(path)
    print(verdict, file=sys.stdout if verdict.intact else sys.stderr)
    return 0 if verdict.intact else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="payops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")

    listing = sub.add_parser("list", help="the runbook catalog, grouped by runbook section")
    listing.add_argument("--json", action="store_true", help="the catalog as JSON, for tools")
    listing.add_argument("--markdown", action="store_true",
                         help="runbook command -> playbook file, as docs/commands.md shows it")
    listing.set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="run a runbook command's procedure")
    run.add_argument("procedure", metavar="RUNBOOK_COMMAND", help="as the runbook writes it, e.g. status:emergency")
    run.add_argument("-i", "--inventory", help="inventory (default: inventories/local, the sandbox)")
    run.add_argument(
        "-e", "--extra-vars", action="append", metavar="KEY=VALUE", help="a variable; repeat for more"
    )
    run.add_argument("--check", action="store_true", help="dry run: report what would change, change nothing")
    run.add_argument("-l", "--limit", help="only these hosts or groups")
    run.add_argument("-v", "--verbose", action="count", default=0)
    run.set_defaults(func=cmd_run)

    audit_parser = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit_parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="check the hash chain; non-zero at the first bad line")
    verify.add_argument("path", nargs="?", help="the audit log (default: .payops/audit/audit.jsonl)")
    verify.add_argument("--db", action="store_true",
                        help="verify payops.audit_trail in the inventory's database, with its archive and anchors")
    verify.add_argument("-i", "--inventory", help="with --db: inventory (default: inventories/local, the sandbox)")
    verify.add_argument("-e", "--extra-vars", action="append", metavar="KEY=VALUE", help="with --db: a variable")
    verify.set_defaults(check=False, limit=None, verbose=0)
    verify.set_defaults(func=cmd_audit_verify)

    try:
        from payops.sandbox.cli import add_parser as add_sandbox_parser
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("payops.sandbox"):
            raise
    else:
        add_sandbox_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # `payops list | head` is an ordinary thing to do: end quietly when the reader goes away.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PayopsError as exc:
        print(f"payops: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("payops: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
