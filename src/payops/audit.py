"""Checking the audit trail that plugins/callback/audit.py writes (the chain: module_utils/payops_audit.py).

Each line is a JSON object with `prev` (the previous line's hash) and `hash` (sha256 over `prev`,
a newline, and the line's canonical JSON without `hash`). The head file beside the log records the
line count and the last hash, so removing lines at the end is found too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.betaskill.payops.plugins.module_utils.payops_audit import GENESIS, chain_hash


@dataclass(frozen=True)
class Verdict:
    path: Path
    lines: int
    problem: str | None = None
    line: int | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None

    def __str__(self) -> str:
        if self.intact:
            return f"{self.path}: intact, {self.lines} lines"
        where = f"line {self.line}: " if self.line else ""
        return f"{self.path}: {where}{self.problem}"


def verify(path: Path) -> Verdict:
    """Walk the chain; the first line that does not fit is named with what is wrong with it."""
    try:
        raw_lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return Verdict(path, 0, "no such audit log")
    except OSError as exc:
        return Verdict(path, 0, f"cannot be read: {exc.strerror}")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    elif raw_lines:
        return Verdict(path, len(raw_lines), "the last line is incomplete (no newline)", len(raw_lines))
    prev = GENESIS
    for number, raw in enumerate(raw_lines, start=1):
        try:
            record = json.loads(raw)
            stated = record.pop("hash")
        except (ValueError, KeyError, TypeError, AttributeError):
            return Verdict(path, number - 1, "not an audit record (unparsable or without a hash)", number)
        if record.get("prev") != prev:
            return Verdict(
                path,
                number - 1,
                "does not follow the line before it (a line was removed, inserted or reordered here)",
                number,
            )
        if chain_hash(prev, record) != stated:
            return Verdict(path, number - 1, "was edited (its content does not match its hash)", number)
        prev = stated
    count = len(raw_lines)
    head_path = path.with_name(path.name + ".head")
    try:
        head = json.loads(head_path.read_text())
    except FileNotFoundError:
        return Verdict(path, count, f"the head file {head_path.name} is missing: the end cannot be checked")
    except ValueError:
        return Verdict(path, count, f"the head file {head_path.name} does not parse")
    if head.get("lines") != count or head.get("hash") != prev:
        return Verdict(
            path,
            count,
            f"lines were removed from the end: the head records {head.get('lines')} lines, the log has {count}",
            count + 1 if isinstance(head.get("lines"), int) and head["lines"] > count else count,
        )
    return Verdict(path, count)
