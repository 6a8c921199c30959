"""deploy:production on a web and an app host: after A, B, then C failing its health gate, every
host is back on B, previous is A, C is marked failed, and the database has B's migration once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

A, B, C = "2026.11.27-a", "2026.11.27-b", "2026.11.27-c"
WEB, APP = "payops-deploy-web", "payops-deploy-app"
COMPONENT = {WEB: "frontend", APP: "app"}
MIGRATION = "0001_course_reviews.sql"


def _molecule_hosts() -> list[str]:
    """The scenario's containers, reached with `podman exec` directly (see molecule/edge's tests)."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    names = AnsibleRunner(inventory).get_hosts("all") if inventory else [WEB, APP]
    return [f"podman://{name}" for name in names]


testinfra_hosts = _molecule_hosts()

# The containers have python3 but no curl: one GET, printed as JSON.
_GET = r"""
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
        status, body = response.status, response.read()
except urllib.error.HTTPError as error:
    status, body = error.code, error.read()
print(json.dumps({"status": status, "body": body.decode()}))
"""


def get(host, url: str) -> tuple[int, dict]:
    answer = json.loads(host.check_output("python3 -c %s %s", _GET, url))
    return answer["status"], json.loads(answer["body"])


def base(host) -> str:
    return f"/srv/betaskill/{COMPONENT[host.backend.get_hostname()]}"


@pytest.fixture(scope="module")
def web():
    return testinfra.get_host(f"podman://{WEB}")


@pytest.fixture(scope="module")
def app():
    return testinfra.get_host(f"podman://{APP}")


@pytest.fixture(scope="module")
def db():
    """The scenario's PostgreSQL (prepare.yml wrote its credentials)."""
    info = json.loads((Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "postgres.json").read_text())
    with psycopg.connect(host=info["postgres_host"], port=info["postgres_port"], user=info["postgres_user"],
                         password=info["postgres_password"], dbname=info["postgres_db"],
                         connect_timeout=5) as connection:
        yield connection


def test_current_is_b_again(host):
    assert host.file(f"{base(host)}/current").linked_to == f"{base(host)}/releases/{B}"


def test_previous_is_still_a(host):
    """C's switch made B previous for a moment; going back from C restores what was before it."""
    assert host.file(f"{base(host)}/previous").linked_to == f"{base(host)}/releases/{A}"


def test_c_is_marked_failed_and_b_is_good(host):
    releases = f"{base(host)}/releases"
    assert host.file(f"{releases}/{C}/.payops-failed").is_file
    assert host.file(f"{releases}/{B}/.payops-deployed").is_file
    for release in (A, B):
        assert not host.file(f"{releases}/{release}/.payops-failed").exists
    assert host.check_output(f"find {releases} -name .payops-unfinished") == ""


def test_app_knows_why_c_failed(app):
    reason = app.file(f"/srv/betaskill/app/releases/{C}/.payops-failed").content_string
    assert "release C needs setting search_url" in reason


def test_web_serves_b_and_proxies_the_app_on_b(web):
    assert get(web, "http://127.0.0.1/version.json") == (200, {"version": B})
    assert get(web, "http://127.0.0.1/api/health") == (200, {"status": "ok", "version": B})


def test_app_service_runs_b_on_its_socket(app):
    assert app.service("betaskill-app.socket").is_running
    assert app.service("betaskill-app.service").is_running
    assert app.service("betaskill-app.service").is_enabled
    # No ss or netstat in the image: a socket listening (state 0A) on 0.0.0.0:8000 (1F40).
    listening = [line.split()[1] for line in app.file("/proc/net/tcp").content_string.splitlines()[1:]
                 if line.split()[3] == "0A"]
    assert "00000000:1F40" in listening
    assert get(app, "http://127.0.0.1:8000/api/health") == (200, {"status": "ok", "version": B})


def test_b_migration_applied_exactly_once(db):
    rows = db.execute("SELECT name, release FROM payops.schema_migrations ORDER BY name").fetchall()
    assert rows == [(MIGRATION, B)]
    assert db.execute("SELECT to_regclass('public.course_reviews') IS NOT NULL").fetchone()[0]


def test_deployments_recorded_and_lock_free(db):
    rows = db.execute("SELECT release, outcome FROM payops.deployments WHERE environment = 'staging'"
                      " ORDER BY started_at").fetchall()
    # A in prepare, B in converge and again in idempotence, C in side_effect.
    assert rows == [(A, "deployed"), (B, "deployed"), (B, "deployed"), (C, "rolled back")]
    assert db.execute("SELECT count(*) FROM payops.deploy_locks WHERE environment = 'staging'").fetchone()[0] == 0
