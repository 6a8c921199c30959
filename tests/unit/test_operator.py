"""Who ran a procedure (plugins/module_utils/payops_operator.py): one answer for the audit callback
and for every module that records an operator, AWX-aware."""

from __future__ import annotations

import getpass

import pytest
from ansible_collections.betaskill.payops.plugins.module_utils.payops_operator import identify


@pytest.mark.parametrize(("variables", "expected"), [
    ({"awx_job_id": 42, "awx_user_name": "thandi"}, ("awx", "thandi", "42")),
    ({"tower_job_id": 7, "tower_user_name": "sipho"}, ("awx", "sipho", "7")),
    ({"awx_job_id": 43, "awx_schedule_name": "nightly backup"}, ("awx", "schedule nightly backup", "43")),
    ({"awx_job_id": 44, "awx_workflow_job_name": "deploy"}, ("awx", "workflow deploy", "44")),
    ({"awx_job_id": 45, "awx_job_launch_type": "webhook"}, ("awx", "awx webhook", "45")),
])
def test_awx_names_the_person_else_the_schedule_or_workflow(variables, expected):
    assert identify(variables, {"PAYOPS_OPERATOR": "not this one"}) == expected


def test_an_awx_job_seen_only_in_the_environment():
    assert identify({}, {"JOB_ID": "9", "AWX_HOST": "https://awx"}) == ("awx", "awx job", "9")


def test_payops_run_names_its_operator_and_source():
    assert identify({}, {"PAYOPS_OPERATOR": "lerato", "PAYOPS_SOURCE": "payops"}) == ("payops", "lerato", None)


def test_plain_ansible_playbook_is_the_local_user_with_who_used_sudo():
    user = getpass.getuser()
    assert identify({}, {}) == ("ansible-playbook", user, None)
    assert identify({}, {"SUDO_USER": "naledi"})[1] == (user if user == "naledi" else f"{user} (sudo by naledi)")
