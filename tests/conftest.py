"""Shared fixtures. `sandbox`: the local sandbox, up for the session, as its `status --json` dict.

The sandbox is brought up with the real command (`payops sandbox up`). If it was already running
before the session, it is left running afterwards; otherwise it is brought down at the end, unless
PAYOPS_KEEP_SANDBOX=1 (handy when running tests again and again).

`clean_platform` (autouse, module scope): before each integration module that uses the sandbox, the
three switches must be off (payops.switches) and the iKhokha simulator without faults; what a
previous module left set is put back (faults cleared, switches lifted with `payops run
system:recover`) and named in a warning, so that a failing module cannot poison the next one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]


def payops(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the payops command from this checkout's environment."""
    result = subprocess.run(
        [sys.executable, "-m", "payops.cli", *args], cwd=ROOT, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"payops {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def wait_until(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1, what: str = "condition",
               tolerate: tuple[type[BaseException], ...] = ()) -> Any:
    """Poll until check() gives something truthy (returned), or fail after timeout: tests wait for
    effects with a deadline, never a fixed sleep. Exceptions in `tolerate` count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except tolerate:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:g} s")
        time.sleep(interval)



def damaged_release_copy(release_store: str, release: str, artefact: str, into: Path) -> Path:
    """A copy of one release of the store under `into`, with one byte of `artefact` flipped."""
    shutil.copytree(Path(release_store) / release, into / release)
    path = into / release / artefact
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return into


def sandbox_status(env: dict[str, str] | None = None) -> dict:
    return json.loads(payops("sandbox", "status", "--json", env=env).stdout)


def all_running(status: dict) -> bool:
    return all(service["state"] == "running" for service in status["services"].values())


@pytest.fixture(scope="session")
def sandbox() -> Iterator[dict]:
    was_up = all_running(sandbox_status())
    if not was_up:
        payops("sandbox", "up")
    status = sandbox_status()
    assert all_running(status), json.dumps(status["services"], indent=2)
    yield status
    if not was_up and os.environ.get("PAYOPS_KEEP_SANDBOX") != "1":
        payops("sandbox", "down")


SWITCHES = ("payments_stopped", "maintenance", "lockdown")
NO_FAULTS = {"latency_ms": 0, "error_rate": 0.0, "drop_callbacks": False, "bad_callback_signature": False}


class LeftoverStateWarning(UserWarning):
    """A test module found the sandbox as a previous one left it (a switch on, a simulator fault)."""


def switches_on(status: dict) -> dict[str, str | None]:
    """The switches payops.switches has on, each with its reason."""
    with psycopg.connect(status["postgres_dsn"], autocommit=True) as conn:
        return dict(conn.execute("SELECT name, reason FROM payops.switches WHERE enabled ORDER BY name").fetchall())


def close_abandoned_checkouts(status: dict) -> int:
    """Fail the checkouts earlier modules left at their paylink: after five minutes each counts as
    webhook backlog and fires the sandbox's WebhookBacklog alert, which a later module's "no new
    alert since the deployment" check would rightly count. Returns how many were closed."""
    with psycopg.connect(status["postgres_dsn"], autocommit=True) as conn:
        return conn.execute(
            "UPDATE public.payments SET status = 'failed', updated_at = now(),"
            " gateway_response = gateway_response || '{\"payops_tests\": \"abandoned by an earlier test module\"}'"
            " WHERE status = 'pending' AND gateway_response ? 'paylinkID'").rowcount


def simulator_faults(status: dict) -> dict:
    return requests.get(f"{status['ikhokha_admin_url']}/faults", timeout=10).json()


def _uses_sandbox(request: pytest.FixtureRequest) -> bool:
    module = request.module
    return any("sandbox" in getattr(item, "fixturenames", ()) for item in request.session.items
               if getattr(item, "module", None) is module)


@pytest.fixture(scope="module", autouse=True)
def clean_platform(request: pytest.FixtureRequest) -> None:
    """Before an integration module that uses the sandbox: no switch on, no simulator fault, no
    checkout an earlier module left pending at its paylink."""
    if "integration" not in Path(str(request.path)).parts or not _uses_sandbox(request):
        return
    status = request.getfixturevalue("sandbox")
    where = request.node.nodeid
    faults = simulator_faults(status)
    if faults != NO_FAULTS:
        requests.put(f"{status['ikhokha_admin_url']}/faults", json={}, timeout=10).raise_for_status()
        warnings.warn(LeftoverStateWarning(f"before {where}: the iKhokha simulator had faults {faults}"
                                           " (left by an earlier module); cleared"), stacklevel=1)
        assert simulator_faults(status) == NO_FAULTS
    on = switches_on(status)
    if on:
        payops("run", "system:recover", "-e", f"reason=tests: switches left on before {where}", timeout=600)
        warnings.warn(LeftoverStateWarning(f"before {where}: switches {on} were on (left by an earlier module);"
                                           " lifted with payops run system:recover"), stacklevel=1)
        assert switches_on(status) == {}, "system:recover left a switch on"
    close_abandoned_checkouts(status)


@pytest.fixture(scope="module")
def backup_utils():
    """The backup module_utils as one namespace: the tests reach each function by its name."""
    import types

    from ansible_collections.betaskill.payops.plugins.module_utils import (
        payops_backup_catalog,
        payops_backup_layout,
        payops_backup_manifest,
        payops_backup_restore,
        payops_backup_retention,
        payops_backup_stream,
        payops_pgtools,
        payops_redact,
    )

    owners = (payops_backup_layout, payops_backup_manifest, payops_backup_catalog, payops_backup_stream,
              payops_pgtools, payops_backup_retention, payops_backup_restore, payops_redact)
    return types.SimpleNamespace(**{name: getattr(owner, name) for owner in owners for name in dir(owner)
                                    if not name.startswith("_")})
