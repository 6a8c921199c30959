"""logs:update-operational against the sandbox: one run for today with a note that is already in
the day's entry (kept once, not twice), a planted switch change (who, why) in the entry and in the
Markdown, and who ran what equal to the test's own count of the audit trail's runs of the day."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import psycopg
import pytest
from conftest import ROOT
from health_helpers import ARTEFACTS, run

pytestmark = pytest.mark.sandbox
TZ = ZoneInfo("Africa/Johannesburg")


@pytest.fixture(scope="module")
def logged(sandbox):
    dsn, today = sandbox["postgres_dsn"], datetime.now(TZ).date()
    note = f"tests: failover drill {uuid.uuid4().hex[:8]}, all green"
    reason = f"tests: planted maintenance {uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO payops.operations_log (environment, day, updated_by) VALUES ('local', %s, 'tests')"
                     " ON CONFLICT DO NOTHING", (today,))
        conn.execute("INSERT INTO payops.operations_notes (environment, day, note, written_by)"
                     " VALUES ('local', %s, %s, 'tests')", (today, note))
        conn.execute("INSERT INTO payops.switch_events (name, enabled, reason, set_by, set_at)"
                     " VALUES ('maintenance', false, %s, 'tests', now() - interval '1 second')", (reason,))
    result, _ = run("logs:update-operational", "day=today", f"note={note}")
    assert result.returncode == 0, result.stdout + result.stderr
    folder = Path(ARTEFACTS.search(result.stdout).group(1))
    with psycopg.connect(dsn) as conn:
        notes = conn.execute("SELECT count(*) FROM payops.operations_notes WHERE day = %s AND note = %s",
                             (today, note)).fetchone()[0]
        summary = conn.execute("SELECT summary FROM payops.operations_log WHERE environment = 'local' AND day = %s",
                               (today,)).fetchone()[0]
    return SimpleNamespace(note=note, reason=reason, notes=notes, summary=summary,
                           report=json.loads((folder / "operations-log.json").read_text()),
                           markdown=(folder / "operations-log.md").read_text())


def test_a_note_given_again_is_kept_once(logged):
    assert logged.notes == 1
    kpis = {item["name"]: item for item in logged.report["kpis"]}
    assert kpis["notes"]["detail"] == "0 added by this run"
    assert logged.note in logged.markdown


def test_the_entry_holds_the_days_switch_changes(logged):
    assert any(item["reason"] == logged.reason and item["by"] == "tests" for item in logged.summary["switches"])
    assert logged.reason in logged.markdown and "## Switches changed" in logged.markdown


def test_who_ran_what_equals_the_audit_trails_runs_of_the_day(logged):
    period = logged.report["period"]
    start, until = (datetime.fromisoformat(period[key].replace("Z", "+00:00")) for key in ("start", "until"))
    own = 0
    trail = Path(os.environ.get("PAYOPS_AUDIT_LOG") or ROOT / ".payops" / "audit" / "audit.jsonl")
    for line in trail.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "run_end" and start <= datetime.fromisoformat(record["time"]) < until:
            own += 1
    assert logged.summary["runs_from"] == "the audit file"
    assert sum(item["runs"] for item in logged.summary["runs"]) == own > 0
