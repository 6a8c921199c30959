"""A supervisor that holds the listening socket, so that the program behind it can restart unnoticed.

    python -m payops.sandbox.supervisor --listen HOST:PORT --pid-file PATH -- COMMAND [ARG...]

It binds and listens on HOST:PORT once, writes its pid to PATH and starts COMMAND with that socket
as file descriptor 3 and LISTEN_FDS=1, as systemd's socket activation does (httpserver serves on it).
Because the socket stays open here, a connection that arrives while no child is accepting waits in
the listen backlog (1024) and is answered by the next child: a restart fails no request.

- SIGHUP: restart the child. The old one gets SIGTERM (it stops accepting and finishes what is in
  flight), is waited for (--stop-timeout, then SIGKILL), and COMMAND starts again: a path in it that
  goes through a `current` symlink picks up the release switched to in the meantime.
- A child that dies on its own is started again after a short backoff (0.5 s, doubling up to 5 s;
  back to 0.5 s once a child has run for 10 s).
- SIGTERM or SIGINT: stop the child the same way, remove the pid file, exit 0.

The child stays in the supervisor's process group, so signalling the group reaches both. What the
supervisor does is logged to stderr, one line each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from payops.sandbox.httpserver import LISTEN_FDS_START

BACKLOG = 1024
STOP_TIMEOUT = 15.0  # above httpserver.DRAIN_SECONDS: a child finishing its requests is not killed
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 5.0
STABLE_AFTER = 10.0


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} supervisor[{os.getpid()}] {message}", file=sys.stderr, flush=True)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, as file descriptor 3 (what the child is told to find)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    if sock.fileno() != LISTEN_FDS_START:
        os.dup2(sock.fileno(), LISTEN_FDS_START, inheritable=False)
        sock.close()
        sock = socket.socket(fileno=LISTEN_FDS_START)
    sock.set_inheritable(False)  # passed to children explicitly (pass_fds), to no one else
    return sock


class Supervisor:
    def __init__(self, sock: socket.socket, command: list[str], pid_file: Path, stop_timeout: float) -> None:
        self.sock = sock
        self.command = command
        self.pid_file = pid_file
        self.stop_timeout = stop_timeout
        self.child: subprocess.Popen[bytes] | None = None
        self.child_started = 0.0
        self.backoff = BACKOFF_FIRST
        self.restart_at = 0.0
        self.pending: list[int] = []
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ------------------------------------------------------------------------------ signals
    def install_signals(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        # SIGCHLD only wakes the loop (through the wakeup fd); the loop reaps.
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.pending.append(signum)

    def wait(self, timeout: float) -> None:
        """Sleep until a signal arrives (any, SIGCHLD included) or timeout passes."""
        with contextlib.suppress(InterruptedError):
            select.select([self.wake_r], [], [], max(0.0, timeout))
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 512):
                pass

    def take_signals(self) -> set[int]:
        # Swapped, not copied and cleared: a signal handled in between lands in one list or the other.
        taken, self.pending = self.pending, []
        return set(taken)

    # ------------------------------------------------------------------------------- child
    def start_child(self) -> None:
        env = dict(os.environ, LISTEN_FDS="1")
        env.pop("LISTEN_PID", None)  # the child's pid is not known before it starts
        env.pop("LISTEN_FDNAMES", None)
        try:
            self.child = subprocess.Popen(self.command, env=env, pass_fds=(self.sock.fileno(),),
                                          stdin=subprocess.DEVNULL)
        except OSError as exc:
            log(f"cannot start {self.command[0]}: {exc}; trying again in {self.backoff:g} s")
            self.child = None
            self.restart_at = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
            return
        self.child_started = time.monotonic()
        log(f"started child {self.child.pid}: {' '.join(self.command)}")

    def stop_child(self, why: str) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            self.child = None
            return
        log(f"stopping child {child.pid} ({why})")
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while child.poll() is None and time.monotonic() < deadline:
            self.wait(min(0.5, deadline - time.monotonic()))
        if child.poll() is None:
            log(f"child {child.pid} did not stop within {self.stop_timeout:g} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            child.wait()
        log(f"child {child.pid} stopped ({describe(child.returncode)})")
        self.child = None

    # -------------------------------------------------------------------------------- loop
    def run(self) -> int:
        self.install_signals()
        write_pid_file(self.pid_file)
        host, port = self.sock.getsockname()[:2]
        log(f"listening on {host}:{port} (backlog {BACKLOG}); pid file {self.pid_file}")
        try:
            self.start_child()
            while True:
                signals = self.take_signals()
                if signals & {signal.SIGTERM, signal.SIGINT}:
                    name = signal.Signals(max(signals & {signal.SIGTERM, signal.SIGINT})).name
                    self.stop_child(f"supervisor received {name}")
                    return 0
                if signal.SIGHUP in signals:
                    self.stop_child("restart on SIGHUP")
                    self.backoff = BACKOFF_FIRST
                    if not set(self.pending) & {signal.SIGTERM, signal.SIGINT}:
                        self.start_child()
                    continue
                child = self.child
                if child is not None and child.poll() is not None:
                    ran = time.monotonic() - self.child_started
                    if ran >= STABLE_AFTER:
                        self.backoff = BACKOFF_FIRST
                    log(f"child {child.pid} exited ({describe(child.returncode)}) after {ran:.1f} s; "
                        f"starting it again in {self.backoff:g} s")
                    self.child = None
                    self.restart_at = time.monotonic() + self.backoff
                    self.backoff = min(self.backoff * 2, BACKOFF_MAX)
                if self.child is None:
                    if time.monotonic() >= self.restart_at:
                        self.start_child()
                        continue
                    self.wait(self.restart_at - time.monotonic())
                else:
                    self.wait(5.0)
        finally:
            if self.child is not None:
                self.stop_child("supervisor exiting")
            remove_pid_file(self.pid_file)
            self.sock.close()
            log("stopped")


def describe(returncode: int | None) -> str:
    if returncode is None:
        return "running"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


def write_pid_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)


def remove_pid_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="payops.sandbox.supervisor",
        description="Hold a listening socket and run COMMAND on it (socket activation); SIGHUP restarts "
                    "COMMAND without failing a request.")
    parser.add_argument("--listen", required=True, type=parse_listen, metavar="HOST:PORT")
    parser.add_argument("--pid-file", required=True, type=Path, metavar="PATH")
    parser.add_argument("--stop-timeout", type=float, default=STOP_TIMEOUT, metavar="SECONDS",
                        help=f"how long a stopping child may take before SIGKILL ({STOP_TIMEOUT:g})")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the COMMAND to run after --")
    host, port = args.listen
    try:
        sock = listen(host, port)
    except OSError as exc:
        log(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        return 1
    return Supervisor(sock, command, args.pid_file.resolve(), args.stop_timeout).run()


if __name__ == "__main__":
    sys.exit(main())
