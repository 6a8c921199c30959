"""Diagnostics: a long-running query is reported by diagnose:database-queries with its pid and
age; an unknown component is refused with the list of known ones, without a traceback."""

from __future__ import annotations

import contextlib
import threading

import psycopg
import pytest
from health_helpers import row, run, wait_for

pytestmark = pytest.mark.sandbox


def test_a_long_running_query_is_reported(sandbox):
    dsn = sandbox["postgres_dsn"]
    sleeper = psycopg.connect(dsn, autocommit=True, application_name="payops-test-sleeper")
    pid = sleeper.info.backend_pid
    worker = threading.Thread(target=lambda: _sleep(sleeper), daemon=True)
    worker.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as watcher:
            wait_for("the sleeping query to be 2 s old", lambda: watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active'"
                " AND now() - query_start > interval '2 seconds'", (pid,)).fetchone(), timeout=20)
        result, report = run("diagnose:database-queries", "long_query_seconds=1")
        assert result.returncode == 0, result.stdout
        assert row(report, "long-running queries")["state"] == "degraded"
        query = row(report, f"query pid {pid}")
        assert "pg_sleep" in query["detail"] and query["state"] == "degraded"
    finally:
        with psycopg.connect(dsn, autocommit=True) as killer:
            killer.execute("SELECT pg_cancel_backend(%s)", (pid,))
        worker.join(timeout=10)
        sleeper.close()


def _sleep(conn: psycopg.Connection) -> None:
    with contextlib.suppress(psycopg.Error):  # cancelled by the test
        conn.execute("SELECT pg_sleep(120)")


def test_an_unknown_component_is_refused_clearly(sandbox):
    result, _ = run("diagnose:component", "component=frontend-ish")
    assert result.returncode != 0
    assert "component must be one of edge, app, database" in result.stderr


def test_a_component_is_diagnosed(sandbox):
    result, report = run("diagnose:component", "component=database")
    assert result.returncode == 0, result.stdout
    assert row(report, "database")["state"] in ("healthy", "degraded")
    assert row(report, "long-running queries")
