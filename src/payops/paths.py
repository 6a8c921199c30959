"""Where the project's files live: the checkout holding runbook.yml and ansible.cfg."""

from __future__ import annotations

import os
from pathlib import Path

from payops.errors import PayopsError


def _is_root(path: Path) -> bool:
    return (path / "runbook.yml").is_file() and (path / "ansible.cfg").is_file()


def project_root() -> Path:
    """The payops checkout: $PAYOPS_HOME, else the one holding the current directory, else ours."""
    env = os.environ.get("PAYOPS_HOME")
    if env:
        root = Path(env).resolve()
        if not _is_root(root):
            raise PayopsError(f"PAYOPS_HOME={env} does not hold runbook.yml and ansible.cfg")
        return root
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if _is_root(candidate):
            return candidate
    # An editable install: src/payops/paths.py -> the checkout.
    installed = Path(__file__).resolve().parents[2]
    if _is_root(installed):
        return installed
    raise PayopsError("cannot find the payops checkout: run from inside it or set PAYOPS_HOME")


def state_dir(root: Path | None = None) -> Path:
    """payops' own git-ignored state in the checkout: run artefacts and the audit trail."""
    return (root or project_root()) / ".payops"
