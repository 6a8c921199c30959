# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Who runs a procedure, the one answer: the audit callback records it, the operator lookup hands it
to every module that writes it down (switch events, deployments, backups, hotfixes).

Under AWX/Automation Controller the job's extra variables name the person who launched it
(awx_user_name) or, when nobody did, the schedule or the workflow that did; under `payops run` the
PAYOPS_OPERATOR it sets; otherwise the local user (and who used sudo to become it).
"""

from __future__ import annotations

import getpass
import os


def _awx(variables, name):
    return variables.get(f"awx_{name}") or variables.get(f"tower_{name}")


def identify(variables=None, environ=None):
    """(source, operator, AWX job id or None) for a run with these (extra) variables."""
    variables = variables or {}
    environ = os.environ if environ is None else environ
    job = _awx(variables, "job_id")
    if job:
        person = _awx(variables, "user_name")
        if person:
            operator = person
        elif _awx(variables, "schedule_name"):
            operator = f"schedule {_awx(variables, 'schedule_name')}"
        elif _awx(variables, "workflow_job_name"):
            operator = f"workflow {_awx(variables, 'workflow_job_name')}"
        else:
            operator = f"awx {_awx(variables, 'job_launch_type') or 'job'}"
        return "awx", operator, str(job)
    if environ.get("JOB_ID") and environ.get("AWX_HOST"):
        return "awx", environ.get("AWX_USER_NAME") or "awx job", environ["JOB_ID"]
    operator = environ.get("PAYOPS_OPERATOR") or local_user(environ)
    return environ.get("PAYOPS_SOURCE") or "ansible-playbook", operator, None


def local_user(environ=None):
    environ = os.environ if environ is None else environ
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    sudo = environ.get("SUDO_USER")
    return f"{user} (sudo by {sudo})" if sudo and sudo != user else user
