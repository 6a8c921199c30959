"""The host half of betaskill.payops.edge_switch, run as Ansible runs a module (its arguments as JSON),
with stand-ins for nginx: `nginx -t` is a command that passes or fails, the reload a command that
leaves a mark, so that a switch written without its reload, or a failed test that leaves the new
file behind, turns these red. The whole step against a real nginx is tests/integration/test_critical.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "plugins" / "modules" / "edge_switch.py"
RULE = "# Written by payops: payments_stopped is on.\nset $payops_payments_stopped 1;\n"


def run_module(tmp_path: Path, *, enabled: bool, test_ok: bool = True, reload_ok: bool = True,
               check: bool = False, force_reload: bool = False) -> dict:
    marks = tmp_path / "reloads"
    args = {
        "name": "payments_stopped",
        "enabled": enabled,
        "directory": str(tmp_path / "server.d"),
        "test_command": ["true" if test_ok else "false"],
        "reload_command": ["sh", "-c", f"echo reloaded >> {marks}" + ("" if reload_ok else "; exit 1")],
        "url": "http://127.0.0.1:9",
        "force_reload": force_reload,
        "_ansible_check_mode": check,
    }
    arguments = tmp_path / "args.json"
    arguments.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    completed = subprocess.run([sys.executable, str(MODULE), str(arguments)], capture_output=True, text=True,
                               timeout=60, check=False)
    result = json.loads(completed.stdout)
    result["reloads_seen"] = len(marks.read_text().splitlines()) if marks.exists() else 0
    return result


@pytest.fixture
def server_d(tmp_path: Path) -> Path:
    folder = tmp_path / "server.d"
    folder.mkdir()
    return folder


def test_turning_on_writes_the_rule_then_reloads(tmp_path, server_d):
    result = run_module(tmp_path, enabled=True)
    assert result["changed"] and result["reloaded"] and not result.get("failed"), result
    assert (server_d / "switch-payments_stopped.conf").read_text() == RULE
    assert result["reloads_seen"] == 1
    assert (server_d / "switch-payments_stopped.conf").stat().st_mode & 0o777 == 0o644
    assert [path.name for path in server_d.iterdir()] == ["switch-payments_stopped.conf"]  # no temporary left


def test_a_switch_already_as_wanted_is_neither_written_nor_reloaded(tmp_path, server_d):
    run_module(tmp_path, enabled=True)
    again = run_module(tmp_path, enabled=True)
    assert not again["changed"] and not again["reloaded"], again
    assert again["reloads_seen"] == 1


def test_a_forced_reload_reloads_an_unchanged_file(tmp_path, server_d):
    run_module(tmp_path, enabled=True)
    forced = run_module(tmp_path, enabled=True, force_reload=True)
    assert not forced["changed"] and forced["reloaded"], forced
    assert forced["reloads_seen"] == 2


def test_turning_off_removes_the_rule_then_reloads(tmp_path, server_d):
    run_module(tmp_path, enabled=True)
    result = run_module(tmp_path, enabled=False)
    assert result["changed"] and result["reloaded"], result
    assert not (server_d / "switch-payments_stopped.conf").exists()
    assert result["reloads_seen"] == 2


def test_a_failed_configuration_test_puts_the_file_back_and_does_not_reload(tmp_path, server_d):
    run_module(tmp_path, enabled=True)
    result = run_module(tmp_path, enabled=False, test_ok=False)
    assert result.get("failed") and "configuration test failed" in result["msg"], result
    assert "back as it was" in result["msg"]
    assert (server_d / "switch-payments_stopped.conf").read_text() == RULE
    assert result["reloads_seen"] == 1


def test_a_failed_reload_fails_the_host(tmp_path, server_d):
    result = run_module(tmp_path, enabled=True, reload_ok=False)
    assert result.get("failed") and "reload of nginx failed" in result["msg"], result


def test_check_mode_says_what_would_change_and_changes_nothing(tmp_path, server_d):
    result = run_module(tmp_path, enabled=True, check=True)
    assert result["changed"] and not result["reloaded"], result
    assert list(server_d.iterdir()) == []
    assert result["reloads_seen"] == 0
    assert result["diff"]["after"] == RULE
