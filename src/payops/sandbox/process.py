"""Processes and ports of the sandbox: start detached, recognise our own, stop without leftovers.

A pid alone proves nothing after a crash or a reboot: the kernel recycles pids. A process is ours
when it is alive (not a zombie), its start time is the one we recorded, and its command line (or
working directory) names what we started. Every process the sandbox starts carries the
environment variable SANDBOX_MARKER=<state dir>, inherited by its children (nginx workers,
PostgreSQL backends), so that `down` can find anything left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SANDBOX_MARKER = "PAYOPS_SANDBOX_OWNER"


@dataclass
class ProcInfo:
    pid: int
    state: str
    start_time: int
    cmdline: list[str]
    cwd: str | None
    process_group: int = 0

    @property
    def is_group_leader(self) -> bool:
        return self.process_group == self.pid

    @property
    def command(self) -> str:
        return " ".join(self.cmdline)


def proc_info(pid: int | None) -> ProcInfo | None:
    """What /proc says about a pid, or None when it does not exist or is a zombie."""
    if not pid or pid <= 0:
        return None
    base = Path(f"/proc/{pid}")
    try:
        stat = (base / "stat").read_text()
        cmdline = (base / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = stat[stat.rfind(")") + 2:].split()
    state, process_group, start_time = fields[0], int(fields[2]), int(fields[19])
    if state in ("Z", "X"):
        return None
    try:
        cwd: str | None = os.readlink(base / "cwd")
    except OSError:
        cwd = None
    return ProcInfo(pid, state, start_time, [part for part in cmdline if part], cwd, process_group)


def is_ours(pid: int | None, markers: Iterable[str] = (), start_time: int | None = None,
            cwd: Path | None = None) -> bool:
    """True when pid is alive and matches what we started (start time, command line, directory)."""
    info = proc_info(pid)
    if info is None:
        return False
    if start_time is not None and info.start_time != start_time:
        return False
    if cwd is not None and info.cwd != str(cwd):
        return False
    return all(marker in info.command for marker in markers)


def marked_processes(state_dir: Path) -> list[ProcInfo]:
    """Every live process started by the sandbox in state_dir: by the inherited environment marker,
    or (nginx rewrites its environment for its process title) by a command line naming state_dir."""
    wanted = f"{SANDBOX_MARKER}={state_dir}".encode()
    exclude = _self_and_ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        info = proc_info(int(entry.name))
        if info is not None and (wanted in environ or f"{state_dir}/" in info.command):
            found.append(info)
    return found


def _self_and_ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rfind(")") + 2:].split()[1])
    return pids


def spawn(argv: Sequence[str], log_path: Path, cwd: Path, env: dict[str, str]) -> tuple[int, int]:
    """Start argv detached in its own session, output appended to log_path; returns (pid, start time)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=cwd, env=env, start_new_session=True, close_fds=True,
        )
    info = proc_info(process.pid)
    return process.pid, info.start_time if info else 0


def _reap(pid: int) -> None:
    """Collect an exited child of ours (the tests start the sandbox from their own process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        if proc_info(pid) is None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def terminate(pid: int, timeout: float = 10.0, group: bool = True) -> None:
    """SIGTERM the process (and its group), wait, then SIGKILL whatever is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    os.kill(pid, sig)
            else:
                os.kill(pid, sig)
        if wait_gone(pid, timeout if sig == signal.SIGTERM else 5.0):
            return


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers do: connections in TIME_WAIT do not make a port busy, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", avoid: Iterable[int] = ()) -> int:
    avoid = set(avoid)
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if port not in avoid:
            return port


class StopWaiting(Exception):
    """Raised by a check to end wait_until at once (the process it waits for has exited)."""


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll check until it returns true (True) or the timeout passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except StopWaiting:
            raise
        except Exception:  # noqa: S110 - a check that raises is a check that failed
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty log)"
