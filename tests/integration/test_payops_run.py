"""`payops run`, the audit callback and the preflight, through real ansible-playbook runs.

A small project is laid out in a temporary folder beside the real one: the real ansible.cfg,
plugins and roles, and a catalog of three test procedures, so that these tests do not depend on
the sandbox or on which runbook procedures exist yet.

One successful run of test:greet (module fixture `greeted`, in a project of its own) is judged by
several tests: its progress and artefacts, the absence of every secret, and its audit trail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAYOPS = [sys.executable, "-m", "payops.cli"]
SECRET_PASSWORD = "Zq-distinctive-PASSWORD-7731"
SECRET_TOKEN = "tok_distinctive_4471_xyz"
SECRET_IN_INVENTORY = "inventory-secret-9a8b7c"
# A secret reached through a template (as vault_* or a lookup would be): learned by templating.
SECRET_TEMPLATED = "templated-secret-5e6f7g"

CATALOG = """
version: 1
commands:
  - command: "test:greet"
    runbook: "npm run test:greet"
    section: "Tests"
    purpose: "Greets and touches a marker file."
    kind: mutating
    status: implemented
    playbook: playbooks/test_greet.yml
    vars:
      times: {type: int, description: how often}
      marker: {type: str, required: true, description: the file to touch}
      api_token: {type: str, secret: true, description: a token}
  - command: "test:fail"
    runbook: "npm run test:fail"
    section: "Tests"
    purpose: "Fails on purpose."
    kind: read-only
    status: implemented
    playbook: playbooks/test_fail.yml
  - command: "test:later"
    runbook: "npm run test:later"
    section: "Tests"
    purpose: "Not written yet."
    kind: read-only
    status: planned
"""

GREET = """
- name: Greet
  hosts: all
  gather_facts: false
  roles:
    - role: betaskill.payops.preflight
      preflight_kind: mutating
  tasks:
    - name: Say hello with the password inside a URL
      ansible.builtin.debug:
        msg: "hello {{ times | default(1) }} times via postgresql://ops:{{ db_password }}@db/betaskill"
    - name: Mention a value that is secret only through a template
      ansible.builtin.debug:
        msg: "the token is {{ plain_looking_value }}"
    - name: Use the token where it must not show
      ansible.builtin.command: echo {{ api_token | default('none') }} {{ inventory_password }}
      changed_when: false
      no_log: true
    - name: Touch the marker
      ansible.builtin.file:
        path: "{{ marker }}"
        state: touch
        mode: "0644"
        modification_time: preserve
        access_time: preserve
"""

FAIL = """
- name: Fail
  hosts: all
  gather_facts: false
  tasks:
    - name: Break on purpose
      ansible.builtin.fail:
        msg: "this procedure fails on purpose"
"""


def make_project(root: Path) -> Path:
    (root / "playbooks").mkdir(parents=True)
    (root / "inventories").mkdir()
    shutil.copy(ROOT / "ansible.cfg", root / "ansible.cfg")
    for name in ("plugins", "roles"):
        (root / name).symlink_to(ROOT / name)
    (root / "runbook.yml").write_text(CATALOG)
    (root / "playbooks" / "test_greet.yml").write_text(GREET)
    (root / "playbooks" / "test_fail.yml").write_text(FAIL)
    (root / "inventories" / "hosts.yml").write_text(
        "all:\n  hosts:\n    web-1:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
        "  vars:\n    payops_environment: local\n"
        f"    inventory_password: {SECRET_IN_INVENTORY}\n"
        f"    db_password: {SECRET_PASSWORD}\n"
        f"    plain_looking_value: {SECRET_TEMPLATED}\n"
        "    notify_token: '{{ plain_looking_value }}'\n"
    )
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


def payops(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PAYOPS_HOME": str(project), **(env or {})}
    environment.pop("PAYOPS_AUDIT_LOG", None) if env is None or "PAYOPS_AUDIT_LOG" not in env else None
    return subprocess.run(
        [*PAYOPS, *args], cwd=project, env=environment, capture_output=True, text=True, timeout=300
    )


def audit_lines(project: Path) -> list[dict]:
    log = project / ".payops" / "audit" / "audit.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def run_dir_of(result: subprocess.CompletedProcess) -> Path:
    line = next(line for line in result.stdout.splitlines() if "run artefacts in" in line)
    return Path(line.split("run artefacts in", 1)[1].strip())


@pytest.fixture(scope="module")
def greeted(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """test:greet, once, by alice, with a secret token: (its project, its marker, the finished run)."""
    base = tmp_path_factory.mktemp("greeted")
    project = make_project(base / "project")
    marker = base / "marker"
    result = payops(
        project, "run", "test:greet", "-i", str(project / "inventories" / "hosts.yml"),
        "-e", f"marker={marker}", "-e", "times=3", "-e", f"api_token={SECRET_TOKEN}",
        env={"PAYOPS_OPERATOR": "alice"},
    )
    return project, marker, result


def test_run_succeeds_shows_progress_and_keeps_artefacts(greeted):
    project, marker, result = greeted
    assert result.returncode == 0, result.stdout + result.stderr
    assert marker.exists()
    assert "Touch the marker" in result.stdout and "web-1" in result.stdout
    assert "test:greet succeeded" in result.stdout
    run_dir = run_dir_of(result)
    assert run_dir.parent == project / ".payops" / "runs"
    assert (run_dir / "status").read_text() == "successful"
    assert (run_dir / "rc").read_text() == "0"
    assert any((run_dir / "job_events").iterdir())
    assert "hello 3 times" in (run_dir / "stdout").read_text()


def test_no_secret_reaches_the_output_the_artefacts_or_the_audit_trail(greeted):
    project, _, result = greeted
    assert result.returncode == 0, result.stdout + result.stderr
    secrets = (SECRET_PASSWORD, SECRET_TOKEN, SECRET_IN_INVENTORY, SECRET_TEMPLATED)
    places = {"stdout": result.stdout + result.stderr}
    places["audit"] = (project / ".payops" / "audit" / "audit.jsonl").read_text()
    for path in run_dir_of(result).rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_text(errors="replace")
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"{secret} leaked into {where}"
    # The redaction left the rest of the story readable.
    assert "postgresql://ops:<redacted>@db/betaskill" in places["audit"]


def test_the_audit_trail_tells_who_did_what_and_verifies(greeted):
    project, _, result = greeted
    assert result.returncode == 0, result.stdout + result.stderr
    lines = audit_lines(project)
    start, end = lines[0], lines[-1]
    assert start["event"] == "run_start" and end["event"] == "run_end"
    assert start["source"] == "payops" and start["operator"] == "alice"
    assert start["command"] == "test:greet" and start["run_id"] == run_dir_of(result).name
    touch = next(line for line in lines if line.get("task") == "Touch the marker")
    assert touch["host"] == "web-1" and touch["module"] == "ansible.builtin.file"
    assert touch["changed"] is True and touch["failed"] is False and touch["duration_ms"] >= 0
    hidden = next(line for line in lines if line.get("task") == "Use the token where it must not show")
    assert hidden["args"] == "censored: no_log"
    assert end["result"] == "successful" and end["hosts"]["web-1"]["changed"] >= 1
    verify = payops(project, "audit", "verify")
    assert verify.returncode == 0 and "intact" in verify.stdout


def test_plain_ansible_playbook_is_audited_as_such(project, tmp_path):
    marker = tmp_path / "marker"
    env = {**os.environ, "ANSIBLE_CONFIG": str(project / "ansible.cfg")}
    for name in ("PAYOPS_COMMAND", "PAYOPS_SOURCE", "PAYOPS_RUN_ID", "PAYOPS_OPERATOR", "PAYOPS_AUDIT_LOG"):
        env.pop(name, None)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "playbooks/test_greet.yml",
         "-i", "inventories/hosts.yml", "-e", f"marker={marker}"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    start = audit_lines(project)[0]
    assert start["source"] == "ansible-playbook" and start["command"] is None
    assert start["playbook"] == "playbooks/test_greet.yml"


def test_awx_job_variables_mark_the_source(project, tmp_path):
    marker = tmp_path / "marker"
    result = payops(
        project, "run", "test:greet", "-i", str(project / "inventories" / "hosts.yml"),
        "-e", f"marker={marker}", "-e", "awx_job_id=4242", "-e", "awx_user_name=bob",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    start = audit_lines(project)[0]
    assert (start["source"], start["operator"]) == ("awx", "bob")


def test_a_mutating_procedure_stops_when_the_audit_trail_cannot_be_written(project, tmp_path):
    marker = tmp_path / "marker"
    unwritable = tmp_path / "a-file"
    unwritable.write_text("not a folder")
    result = payops(
        project, "run", "test:greet", "-i", str(project / "inventories" / "hosts.yml"),
        "-e", f"marker={marker}", env={"PAYOPS_AUDIT_LOG": str(unwritable / "audit.jsonl")},
    )
    assert result.returncode != 0
    assert "cannot be written" in result.stdout and str(unwritable / "audit.jsonl") in result.stdout
    assert not marker.exists(), "the procedure changed something without an audit trail"


def test_a_failing_procedure_exits_non_zero_and_says_why(project):
    result = payops(project, "run", "test:fail", "-i", str(project / "inventories" / "hosts.yml"))
    assert result.returncode != 0
    assert "this procedure fails on purpose" in result.stdout
    assert (run_dir_of(result) / "status").read_text() == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "test:nope"], "unknown runbook command 'test:nope'"),
        (["run", "test:later"], "test:later is planned, not implemented yet"),
        (["run", "test:greet", "-e", "marker=/tmp/x", "-e", "times=lots"], "times must be an integer"),
        (["run", "test:greet"], "test:greet needs -e marker=..."),
        (["run", "test:greet", "-i", "/nonexistent/inventory", "-e", "marker=/tmp/x"],
         "inventory /nonexistent/inventory does not exist"),
    ],
)
def test_bad_input_gets_one_clear_line_and_no_traceback(project, args, message):
    result = payops(project, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (project / ".payops" / "runs").exists()


def test_list_shows_every_entry_with_its_status(project):
    text = payops(project, "list").stdout
    assert "implemented  test:greet" in text and "planned      test:later" in text
    as_json = json.loads(payops(project, "list", "--json").stdout)
    assert [entry["command"] for entry in as_json] == ["test:greet", "test:fail", "test:later"]
    assert as_json[0]["vars"]["times"]["type"] == "int"
