"""The `payops` command (a first skeleton; list/run/audit are being written)."""

from __future__ import annotations

import argparse
import sys

from payops.errors import PayopsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payops", description=__doc__)
    sub = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    try:
        from payops.sandbox.cli import add_parser as add_sandbox_parser
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("payops.sandbox"):
            raise
    else:
        add_sandbox_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
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
