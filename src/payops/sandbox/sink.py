"""The notification sink: stands in for Slack/generic webhooks and records what it receives.

    python -m payops.sandbox.sink --config PATH     config: {host, port, log_path}

Every POST (any path) becomes one JSON line in log_path: time, path, headers (without
Authorization and Cookie), body (parsed JSON, else text). GET /messages lists them, DELETE
/messages clears them, GET /health answers 200.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from payops.sandbox.httpserver import (
    ConfigError,
    Request,
    Response,
    Router,
    WSGIApp,
    config_argument_parser,
    json_response,
    load_config,
    make_server,
    serve,
    setup_logging,
)

HIDDEN_HEADERS = {"authorization", "cookie"}


class MessageLog:
    """The JSONL file; one lock serialises writers so that lines never interleave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)

    def append(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        with self.lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)

    def read(self) -> list[dict]:
        with self.lock:
            text = self.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def clear(self) -> int:
        with self.lock:
            count = sum(1 for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip())
            self.path.write_text("", encoding="utf-8")
        return count


def build_router(messages: MessageLog) -> Router:
    router = Router()

    def health(_request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    def list_messages(_request: Request) -> Response:
        return json_response(200, messages.read())

    def clear_messages(_request: Request) -> Response:
        return json_response(200, {"cleared": messages.clear()})

    def record(request: Request) -> Response:
        text = request.body.decode("utf-8", "replace")
        try:
            body: object = json.loads(text)
        except ValueError:
            body = text
        messages.append({
            "time": datetime.now(UTC).isoformat(),
            "path": request.path,
            "headers": {k: v for k, v in request.headers.items() if k not in HIDDEN_HEADERS},
            "body": body,
        })
        return json_response(200, {"ok": True})

    router.add("GET", "/health", health)
    router.add("GET", "/messages", list_messages)
    router.add("DELETE", "/messages", clear_messages)
    router.add("POST", "/{path:.*}", record)
    return router


def main(argv: list[str] | None = None) -> int:
    args = config_argument_parser("payops.sandbox.sink", "The sandbox's notification sink.").parse_args(argv)
    logger = setup_logging("sink")
    try:
        config = load_config(args.config, ["host", "port", "log_path"])
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    app = WSGIApp(build_router(MessageLog(Path(config["log_path"]))), logger)
    serve(make_server(config["host"], int(config["port"]), app), logger)
    return 0


if __name__ == "__main__":
    sys.exit(main())
