"""The audit trail's hash chain: intact files pass, every kind of tampering is named."""

import importlib.util
import json
from pathlib import Path

import pytest

from payops import audit

ROOT = Path(__file__).resolve().parents[2]


def _callback_module():
    spec = importlib.util.spec_from_file_location("payops_audit", ROOT / "plugins/callback/audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_the_callback_and_the_verifier_hash_alike():
    record = {"v": 1, "event": "run_start", "text": "héllo", "n": 3, "prev": audit.GENESIS}
    assert _callback_module().chain_hash(audit.GENESIS, record) == audit.chain_hash(audit.GENESIS, record)


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
