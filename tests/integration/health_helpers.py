"""Shared by the health, alerts and diagnose tests: run a runbook command through `payops run`
against the test's sandbox and read the verdict JSON the procedure wrote beside its artefacts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import conftest
from conftest import payops

ARTEFACTS = re.compile(r"run artefacts in (\S+)")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run(command: str, *variables: str, timeout: float = 240, check: bool = False) -> tuple[Any, dict[str, Any] | None]:
    """(the finished process, the report JSON or None). Never raises on a failed run. check=True: --check."""
    args = ["run", command]
    for variable in variables:
        args += ["-e", variable]
    if check:
        args.append("--check")
    result = payops(*args, timeout=timeout, check=False)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    match = ARTEFACTS.search(result.stdout)
    report = None
    if match:
        reports = sorted(Path(match.group(1)).glob("*.json"))
        reports = [path for path in reports if path.name not in ("status.json",)]
        for path in reports:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and "rows" in data:
                report = data
    return result, report


def row(report: dict[str, Any], component: str) -> dict[str, Any]:
    for item in report["rows"]:
        if item["component"] == component:
            return item
    raise AssertionError(f"no row {component!r} in {[r['component'] for r in report['rows']]}")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, interval: float = 0.5) -> Any:
    return conftest.wait_until(check, timeout, interval, what=f"waiting for {what}")
