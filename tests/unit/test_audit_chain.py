"""The audit trail's hash chain: intact files pass, every kind of tampering is named."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from payops import audit

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"


def write_chain(path: Path, count: int) -> list[str]:
    prev = audit.GENESIS
    lines = []
    for number in range(count):
        record = {"v": 1, "event": "task", "task": f"step {number}", "prev": prev}
        record["hash"] = audit.chain_hash(prev, record)
        prev = record["hash"]
        lines.append(json.dumps(record, sort_keys=True))
    path.write_text("".join(line + "\n" for line in lines))
    path.with_name(path.name + ".head").write_text(json.dumps({"lines": count, "hash": prev}))
    return lines


def test_a_trail_written_before_the_rename_verifies_and_the_renamed_callback_chains_on(tmp_path):
    """Lines the callback wrote as payops_audit (before the collection) verify, and
    betaskill.payops.audit appends to such a trail without breaking its chain."""
    log = tmp_path / "audit.jsonl"
    for suffix in ("", ".head"):
        shutil.copy(DATA / f"audit-before-rename.jsonl{suffix}", f"{log}{suffix}")
    old = log.read_text().splitlines()
    assert audit.verify(log).intact and len(old) == 4
    (tmp_path / "play.yml").write_text(
        "- name: After the rename\n  hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - name: Say something\n      ansible.builtin.debug:\n        msg: hello\n")
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "PAYOPS_AUDIT_LOG": str(log),
           "ANSIBLE_CALLBACKS_ENABLED": "betaskill.payops.audit", "PAYOPS_OPERATOR": "after-rename"}
    subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local",
                    "play.yml"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120)
    lines = log.read_text().splitlines()
    assert lines[:4] == old and len(lines) > 4
    assert json.loads(lines[4])["prev"] == json.loads(old[-1])["hash"]
    assert json.loads(lines[4])["operator"] == "after-rename"
    assert audit.verify(log).intact
    # The head is rewritten in place, at a fixed length: the earlier, shorter head is fully replaced.
    head = Path(f"{log}.head").read_bytes()
    assert len(head) == 128 and json.loads(head) == {"lines": len(lines), "hash": json.loads(lines[-1])["hash"]}


def test_an_intact_chain_verifies(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_chain(log, 5)
    verdict = audit.verify(log)
    assert verdict.intact and verdict.lines == 5


def _tamper(log: Path, lines: list[str], new_lines: list[str]) -> audit.Verdict:
    log.write_text("".join(line + "\n" for line in new_lines))
    return audit.verify(log)


@pytest.fixture
def chain(tmp_path):
    log = tmp_path / "audit.jsonl"
    return log, write_chain(log, 6)


def test_an_edited_line_is_named(chain):
    log, lines = chain
    edited = json.loads(lines[2])
    edited["task"] = "something else"
    verdict = _tamper(log, lines, [*lines[:2], json.dumps(edited, sort_keys=True), *lines[3:]])
    assert not verdict.intact and verdict.line == 3 and "edited" in verdict.problem


def test_a_removed_line_is_named(chain):
    log, lines = chain
    verdict = _tamper(log, lines, lines[:3] + lines[4:])
    assert not verdict.intact and verdict.line == 4 and "removed, inserted or reordered" in verdict.problem


def test_an_inserted_line_is_named(chain):
    log, lines = chain
    verdict = _tamper(log, lines, [*lines[:2], lines[1], *lines[2:]])
    assert not verdict.intact and verdict.line == 3


def test_reordered_lines_are_named(chain):
    log, lines = chain
    verdict = _tamper(log, lines, [lines[0], lines[2], lines[1], *lines[3:]])
    assert not verdict.intact and verdict.line == 2


def test_lines_removed_from_the_end_are_found(chain):
    log, lines = chain
    verdict = _tamper(log, lines, lines[:4])
    assert not verdict.intact and "removed from the end" in verdict.problem


def test_a_line_that_is_not_json_is_named(chain):
    log, lines = chain
    verdict = _tamper(log, lines, [*lines[:1], "garbage", *lines[1:]])
    assert not verdict.intact and verdict.line == 2 and "not an audit record" in verdict.problem


def test_a_recomputed_hash_does_not_hide_an_edit(chain):
    """Editing a line and fixing its own hash still breaks the next line's link."""
    log, lines = chain
    edited = json.loads(lines[1])
    edited["task"] = "forged"
    edited.pop("hash")
    edited["hash"] = audit.chain_hash(edited["prev"], edited)
    verdict = _tamper(log, lines, [lines[0], json.dumps(edited, sort_keys=True), *lines[2:]])
    assert not verdict.intact and verdict.line == 3


def test_a_missing_file_is_not_intact(tmp_path):
    assert not audit.verify(tmp_path / "nothing.jsonl").intact


def test_a_secret_of_a_later_play_on_the_same_host_is_still_removed(tmp_path):
    """The callback templates a host's full variables once per run; a later play's own secret-named
    variable is learned all the same, and a value shown through another name is removed."""
    log = tmp_path / "audit.jsonl"
    (tmp_path / "play.yml").write_text(
        "- name: First\n  hosts: localhost\n  gather_facts: false\n"
        "  vars:\n    api_token: \"{{ 'tok' ~ 'en-one-9f3a' }}\"\n"
        "  tasks:\n    - name: Show it\n      ansible.builtin.debug:\n        msg: \"{{ api_token }}\"\n"
        "- name: Second\n  hosts: localhost\n  gather_facts: false\n"
        "  vars:\n    db_password: \"{{ 'pass' ~ 'word-two-7c1e' }}\"\n"
        "  tasks:\n    - name: Show it\n      ansible.builtin.debug:\n        msg: \"{{ db_password }}\"\n")
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "PAYOPS_AUDIT_LOG": str(log),
           "ANSIBLE_CALLBACKS_ENABLED": "betaskill.payops.audit"}
    subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local",
                    "play.yml"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120)
    text = log.read_text()
    assert "token-one-9f3a" not in text and "password-two-7c1e" not in text
    assert audit.verify(log).intact
