"""The HTTP plumbing the sandbox's services share: a threaded WSGI server, routing, JSON, config.

Standard library only (wsgiref + socketserver). Each request runs in its own daemon thread; the
listen backlog is deep enough for the few hundred concurrent callbacks the tests send. Each request
is logged as one line (method, path without the query string, status, duration) and nothing else:
no headers, no bodies, so neither secrets nor signatures reach the logs. With
setup_logging(json_lines=True) every line is a JSON object instead, and each request's line carries
its request id (X-Request-ID from the edge, or one made here), route, status and duration, plus what
the handler added to the request's RequestTrace (time in the database and at the gateway, the
payment reference): the fields betaskill.payops.log_search filters on.

Socket activation: when LISTEN_FDS is 1 (and LISTEN_PID, if set, is this process), the server
serves on file descriptor 3, a socket already listening (systemd's convention; the sandbox's
supervisor does the same), instead of binding host:port itself. On SIGTERM or SIGINT a server
stops accepting, lets the requests in flight finish (DRAIN_SECONDS at most) and returns: the
connections still waiting in the listen backlog stay there for the next process on that socket.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import logging
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

MAX_BODY_BYTES = 1024 * 1024
DRAIN_SECONDS = 10.0
LISTEN_FDS_START = 3  # sd_listen_fds(3): the first passed socket is file descriptor 3


# An incoming X-Request-ID is kept when it looks like an id (the edge's map uses the same rule).
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,63}$")


@dataclass
class RequestTrace:
    """What one request's log line says beyond method, path and status; handlers add to it."""

    request_id: str
    db_seconds: float = 0.0
    gateway_seconds: float = 0.0
    fields: dict[str, Any] = field(default_factory=dict)  # payment_reference, paylink_id, ...

    @contextmanager
    def timing(self, what: str) -> Iterator[None]:
        """Add the time the block takes to db_seconds (what="db") or gateway_seconds ("gateway")."""
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            if what == "db":
                self.db_seconds += elapsed
            else:
                self.gateway_seconds += elapsed


# The request the current thread serves (the server runs one thread a request), for log lines
# written while it runs and for code that times itself (the connection pool, the gateway client).
_CURRENT_TRACE: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar("payops_trace", default=None)


def current_trace() -> RequestTrace | None:
    return _CURRENT_TRACE.get()


@contextmanager
def timed(what: str) -> Iterator[None]:
    """trace.timing(what) for the current request; nothing outside a request."""
    trace = current_trace()
    if trace is None:
        yield
        return
    with trace.timing(what):
        yield


class JsonLineFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, milliseconds), level, logger, message, the current
    request's id, and the fields a call passes as extra={"fields": {...}}."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace = current_trace()
        if trace is not None:
            line["request_id"] = trace.request_id
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class ConfigError(Exception):
    """The service's config file is missing, unreadable or lacks a key; the message says which."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    remote_addr: str
    raw_path: str = ""  # as on the request line, undecoded, without the query string
    route: str = "unmatched"  # the matched route pattern: a metrics label without per-id cardinality
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body parsed as JSON; raises HTTPError(400) when it is not."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise HTTPError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


class HTTPError(Exception):
    """Raised by a handler to answer with a JSON error: {"error": code, "message": message}."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def json_response(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    body = json.dumps(payload, default=str).encode("utf-8")
    return Response(status, body, [("Content-Type", "application/json"), *headers])


def text_response(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(status, text.encode("utf-8"), [("Content-Type", content_type)])


Handler = Callable[[Request], Response]


class Router:
    """Routes (method, path pattern) to handlers.

    `{name}` in a pattern matches one path segment, `{name:regex}` what the regex matches.
    """

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._patterns: dict[str, str] = {}

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)(?::([^}]+))?\}",
                       lambda match: f"(?P<{match[1]}>{match[2] or '[^/]+'})", pattern)
        compiled = re.compile(f"^{regex}$")
        self._patterns[compiled.pattern] = pattern
        self._routes.append((method.upper(), compiled, handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str], str]:
        allowed = []
        for route_method, regex, handler in self._routes:
            match = regex.match(path)
            if match is None:
                continue
            if route_method == method:
                return handler, match.groupdict(), self._patterns[regex.pattern]
            allowed.append(route_method)
        if allowed:
            raise HTTPError(405, "method_not_allowed", f"{method} is not allowed on {path}",
                            allowed=sorted(set(allowed)))
        raise HTTPError(404, "not_found", f"no such endpoint: {path}")


class WSGIApp:
    """A WSGI application over a Router, with JSON errors and the one-line request log."""

    def __init__(self, router: Router, logger: logging.Logger,
                 observe: Callable[[Request, int, float], None] | None = None) -> None:
        self.router = router
        self.logger = logger
        self.observe = observe

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        started = time.monotonic()
        request = self._request(environ)
        incoming = request.headers.get("x-request-id", "")
        trace = RequestTrace(incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex)
        token = _CURRENT_TRACE.set(trace)
        try:
            return self._answer(request, trace, started, start_response)
        finally:
            _CURRENT_TRACE.reset(token)

    def _answer(self, request: Request, trace: RequestTrace, started: float,
                start_response: Callable[..., Any]) -> list[bytes]:
        try:
            if request.body is None:
                raise HTTPError(413, "body_too_large",
                                f"request bodies are limited to {MAX_BODY_BYTES} bytes")
            handler, request.params, request.route = self.router.resolve(request.method, request.path)
            response = handler(request)
        except HTTPError as exc:
            response = json_response(exc.status, {"error": exc.code, "message": exc.message, **exc.extra})
        except Exception:
            self.logger.exception("unhandled error in %s %s", request.method, request.path)
            response = json_response(
                500, {"error": "internal_error", "message": "internal error; see the service log"})
        duration = time.monotonic() - started
        if self.observe is not None:
            self.observe(request, response.status, duration)
        self.logger.info("%s %s %s %.1fms", request.method, request.path, response.status, duration * 1000,
                         extra={"fields": {
                             "event": "request", "method": request.method, "path": request.path,
                             "route": request.route, "status": response.status,
                             "duration_ms": round(duration * 1000, 1),
                             "db_ms": round(trace.db_seconds * 1000, 1),
                             "gateway_ms": round(trace.gateway_seconds * 1000, 1),
                             **trace.fields,
                         }})
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        headers = [*response.headers, ("Content-Length", str(len(response.body))),
                   ("X-Request-ID", trace.request_id)]
        start_response(f"{response.status} {phrase}", headers)
        return [response.body]

    @staticmethod
    def _request(environ: dict[str, Any]) -> Request:
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items() if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body: bytes | None = b""
        if length > MAX_BODY_BYTES:
            body = None
        elif length > 0:
            body = environ["wsgi.input"].read(length)
        query = {key: values[-1] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
        # PATH_INFO is decoded as latin-1 by wsgiref; the raw path is what a signature covers.
        path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
        return Request(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=path,
            query=query,
            headers=headers,
            body=body,  # type: ignore[arg-type]  # None only until the size check above answers 413
            remote_addr=environ.get("REMOTE_ADDR", ""),
            raw_path=environ.get("payops.raw_path") or path,
        )


class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without its own access log: WSGIApp logs one line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        # A signature covers the path as sent; PATH_INFO is percent-decoded.
        environ["payops.raw_path"] = self.path.split("?", 1)[0]
        return environ


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # server_close() does not wait (without a bound) for the request threads: drain() does, bounded.
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024
    activated = False  # True: serving on a socket passed in (socket activation), not one bound here
    parent_pid = 0  # with a socket passed in: the process that passed it; the server stops when it is gone
    on_orphaned: Callable[[], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._in_flight = 0
        self._idle = threading.Condition()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._idle:
            self._in_flight += 1
        try:
            super().process_request(request, client_address)
        except BaseException:  # the thread did not start: it will not count itself out
            self._done()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def service_actions(self) -> None:
        # Called by serve_forever() between polls: a supervisor killed outright (SIGKILL) cannot stop
        # its child, so the child stops itself instead of holding the port for no one.
        super().service_actions()
        if self.parent_pid and os.getppid() != self.parent_pid and self.on_orphaned is not None:
            callback, self.on_orphaned = self.on_orphaned, None
            callback()

    def drain(self, timeout: float = DRAIN_SECONDS) -> int:
        """Wait until no request is in flight, at most timeout seconds; returns how many still are."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight <= 0, timeout)
            return self._in_flight

    def use_socket(self, sock: socket.socket) -> None:
        """Serve on an already listening socket (what server_bind and server_activate would make)."""
        self.socket.close()  # the unbound one TCPServer made
        self.socket = sock
        self.activated = True
        self.parent_pid = os.getppid()
        self.server_address = sock.getsockname()
        host, port = self.server_address[:2]
        self.server_name = host  # no reverse lookup of a loopback address
        self.server_port = port
        self.setup_environ()


def activated_socket() -> socket.socket | None:
    """The listening socket passed in as file descriptor 3 (LISTEN_FDS=1), or None.

    Like sd_listen_fds(unset_environment=1): the variables are removed, so that processes this one
    starts do not take the socket for theirs."""
    fds, pid = os.environ.get("LISTEN_FDS"), os.environ.get("LISTEN_PID")
    if fds != "1" or (pid not in (None, "") and pid != str(os.getpid())):
        return None
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sock = socket.socket(fileno=LISTEN_FDS_START)
    sock.set_inheritable(False)
    return sock


def make_server(host: str, port: int, app: Callable[..., Any]) -> ThreadingWSGIServer:
    """A server on host:port, or on the socket passed in by socket activation (LISTEN_FDS=1)."""
    sock = activated_socket()
    if sock is None:
        server = ThreadingWSGIServer((host, port), _QuietHandler)
    else:
        server = ThreadingWSGIServer((host, port), _QuietHandler, bind_and_activate=False)
        server.use_socket(sock)
    server.set_app(app)
    return server


def serve(server: ThreadingWSGIServer, logger: logging.Logger,
          on_stop: Callable[[], None] | None = None, drain_seconds: float = DRAIN_SECONDS) -> None:
    """Serve until SIGTERM or SIGINT; then stop accepting, let the requests in flight finish
    (drain_seconds at most), run `on_stop` and return.

    Closing the listening socket here closes this process's descriptor only: a socket passed in by
    a supervisor stays open there, with the connections not yet accepted waiting in its backlog."""

    def stop(signum: int, _frame: Any) -> None:
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        # shutdown() waits for serve_forever() to return, so it must not run on the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    def orphaned() -> None:
        logger.warning("the supervisor (pid %s) is gone; shutting down", server.parent_pid)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.on_orphaned = orphaned
    host, port = server.server_address[:2]
    how = " (socket passed in by the supervisor)" if server.activated else ""
    logger.info("listening on http://%s:%s%s", host, port, how)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()  # stop accepting: never socket.shutdown(), which a shared socket would feel
        left = server.drain(drain_seconds)
        if left:
            logger.warning("%d request(s) still in flight after %.0f s; stopping anyway", left, drain_seconds)
        if on_stop is not None:
            on_stop()
        logger.info("stopped")


def setup_logging(name: str, json_lines: bool = False) -> logging.Logger:
    """The service's logger, writing to stderr: plain lines, or JSON objects (JsonLineFormatter)."""
    if json_lines:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLineFormatter())
        logging.basicConfig(level=logging.INFO, handlers=[handler])
    else:
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
    return logging.getLogger(name)


def load_config(path: str, required: Iterable[str], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a service's JSON config file; a missing key is named in the error."""
    config_path = Path(path)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"config {path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"config {path} must hold a JSON object")
    merged = {**(defaults or {}), **config}
    missing = [key for key in required if merged.get(key) in (None, "")]
    if missing:
        raise ConfigError(f"config {path} lacks {', '.join(missing)}")
    return merged


def config_argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help="JSON config file written by `payops sandbox up`")
    return parser
