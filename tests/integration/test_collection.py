"""betaskill.payops as a collection: `ansible-galaxy collection build` makes a tarball without the
sandbox, tests, inventories or local state, and the collection installed from it into an empty
folder runs a playbook written outside the repository against the sandbox - no ansible.cfg, cwd and
HOME in a temporary folder, the collections path only that folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REASON = "collection test from outside the repository"

PLAYBOOK = """
- name: A site playbook that only has the installed collection
  hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/betaskill.payops.database:
      login_host: "{{ db.postgres_host }}"
      login_port: "{{ db.postgres_port | int }}"
      login_user: "{{ db.postgres_user }}"
      login_password: "{{ db.postgres_password }}"
      login_db: "{{ db.postgres_db }}"
      ssl_mode: disable
    group/betaskill.payops.ikhokha:
      api_url: "{{ db.ikhokha_url }}"
      app_id: "{{ db.ikhokha_app_id }}"
      app_secret: "{{ db.ikhokha_app_secret }}"
  tasks:
    - name: The gateway answers signed requests
      betaskill.payops.ikhokha_check:
        samples: 1
      register: gateway

    - name: Stop payments
      betaskill.payops.payops_switch:
        name: payments_stopped
        state: "on"
        reason: "{{ reason }}"
        operator: site-operator

    - name: And resume them
      betaskill.payops.payops_switch:
        name: payments_stopped
        state: "off"
        reason: "{{ reason }}"
        operator: site-operator
      register: resumed

    - name: Keep what the modules said
      ansible.builtin.copy:
        content: "{{ {'gateway': gateway, 'resumed': resumed} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True, timeout=300)
    [built] = out.glob("betaskill-payops-*.tar.gz")
    return built


def test_the_tarball_holds_the_collection_and_nothing_local(tarball):
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    tops = {name.split("/")[0] for name in names}
    for part in ("plugins", "roles", "playbooks", "meta", "schema", "MANIFEST.json", "FILES.json", "README.md"):
        assert part in tops, f"{part} missing from {tarball.name}"
    for part in ("src", "tests", "inventories", "molecule", "benchmarks", ".venv", ".sandbox", ".payops", ".git"):
        assert part not in tops, f"{part} is in {tarball.name}"
    assert "plugins/modules/payops_switch.py" in names and "plugins/callback/audit.py" in names
    migrations = sorted(path.name for path in (ROOT / "schema" / "migrations").glob("*.sql"))
    assert migrations and all(f"schema/migrations/{name}" in names for name in migrations)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_installed_collection_runs_a_playbook_written_outside_the_repository(tarball, sandbox, tmp_path):
    collections, work, home = tmp_path / "collections", tmp_path / "work", tmp_path / "home"
    for folder in (collections, work, home):
        folder.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "PAYOPS_"))}
    env.update(HOME=str(home), ANSIBLE_COLLECTIONS_PATH=str(collections),
               # The checkout itself is linked into the environment's site-packages: look only here.
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "-p", str(collections),
                    str(tarball)], check=True, capture_output=True, text=True, cwd=work, env=env, timeout=300)
    installed = collections / "ansible_collections" / "betaskill" / "payops"
    assert (installed / "MANIFEST.json").is_file()

    doc = subprocess.run([str(BIN / "ansible-doc"), "--json", "betaskill.payops.payops_switch"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(doc.stdout)["betaskill.payops.payops_switch"]["doc"]["filename"].startswith(str(installed))

    (work / "site.yml").write_text(PLAYBOOK)
    # The modules need psycopg and requests: this environment's Python, as a controller's own.
    (work / "vars.json").write_text(json.dumps({"db": sandbox, "reason": REASON, "out": str(work / "out.json"),
                                                "ansible_python_interpreter": sys.executable}))
    before = _events(sandbox)
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "site.yml", "-e", "@vars.json"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    said = json.loads((work / "out.json").read_text())
    assert said["gateway"]["verdict"] == "healthy" and said["gateway"]["credentials_accepted"], said["gateway"]
    assert said["resumed"]["switch"]["enabled"] is False
    events = _events(sandbox)[len(before):]
    assert [(event[0], event[1]) for event in events] == [(True, REASON), (False, REASON)]
    assert {event[2] for event in events} == {"site-operator"}
    assert sandbox["ikhokha_app_secret"] not in run.stdout + run.stderr
    assert sandbox["postgres_password"] not in run.stdout + run.stderr

    # payops:install from the installed collection finds its own migrations and version.
    (work / "install.json").write_text(json.dumps({
        "payops_environment": "local", "payops_db_host": sandbox["postgres_host"],
        "payops_db_port": sandbox["postgres_port"], "payops_db_name": sandbox["postgres_db"],
        "payops_db_user": sandbox["postgres_user"], "payops_db_password": sandbox["postgres_password"],
        "payops_db_sslmode": "disable", "ansible_python_interpreter": sys.executable}))
    install = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "--check",
         "betaskill.payops.payops_install", "-e", "@install.json"], cwd=work, capture_output=True, text=True,
        timeout=300, env={**env, "ANSIBLE_CALLBACKS_ENABLED": "betaskill.payops.audit",
                          "PAYOPS_AUDIT_LOG": str(work / "audit.jsonl")})
    assert install.returncode == 0, install.stdout + install.stderr
    assert "payops:install in local (betaskill.payops " in install.stdout
    assert "the schema is up to date" in install.stdout
    assert sandbox["postgres_password"] not in install.stdout + install.stderr


def _events(sandbox) -> list[tuple]:
    with psycopg.connect(sandbox["postgres_dsn"]) as conn:
        return conn.execute("SELECT enabled, reason, set_by FROM payops.switch_events"
                            " WHERE name = 'payments_stopped' ORDER BY id").fetchall()
