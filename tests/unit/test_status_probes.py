"""The incident screen's probes (payops_status): a component that does not answer is a verdict with
its reason, never an exception, and the others are still asked. Against real closed ports and a
real local HTTP server, not fakes."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible_collections.betaskill.payops.plugins.module_utils import payops_status


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/api/v2/alerts"):
            body = json.dumps([{"labels": {"alertname": "B"}}, {"labels": {"alertname": "A"}},
                               {"labels": {"alertname": "B"}}, {"labels": {}}]).encode()
        elif self.path == "/api/health":
            body = json.dumps({"status": "degraded", "version": "1.0.0"}).encode()
        else:
            body = b"Prometheus Server is Ready.\n"
        self.send_response(503 if self.path == "/api/health" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def params(base: str, db_port: int) -> dict:
    return {"public_url": base, "prometheus_url": base, "alertmanager_url": base, "backlog_minutes": 5,
            "timeout": 2.0, "validate_certs": True, "login_host": "127.0.0.1", "login_port": db_port,
            "login_db": "postgres", "login_user": "postgres", "login_password": "not-a-secret-here",
            "ssl_mode": "disable", "connect_timeout": 2}


def test_a_database_that_does_not_answer_is_a_verdict_and_the_others_are_still_asked(server):
    answers = payops_status.gather(params(server, closed_port()))
    assert answers["database"]["reachable"] is False and answers["database"]["rows"] == []
    assert answers["database"]["msg"].startswith("cannot connect to the database postgres@127.0.0.1:")
    assert "not-a-secret-here" not in json.dumps(answers)
    assert answers["health"]["status"] == 503 and answers["health"]["json"]["status"] == "degraded"
    assert answers["prometheus"]["status"] == 200
    assert answers["alertmanager"]["firing"] == ["A", "B"]
    assert all(answer["elapsed_ms"] >= 0 for answer in answers.values())


def test_an_edge_that_does_not_answer_is_status_none_with_the_reason():
    base = f"http://127.0.0.1:{closed_port()}"
    answers = payops_status.gather(params(base, closed_port()))
    for name in ("health", "prometheus", "alertmanager"):
        assert answers[name]["status"] is None
        assert answers[name]["msg"].startswith(f"no answer from {base}/")
    assert answers["alertmanager"]["firing"] == []


def test_firing_alerts_are_each_name_once_sorted_and_tolerate_odd_answers():
    assert payops_status.firing_alerts([{"labels": {"alertname": "Z"}}, {"labels": {"alertname": "Z"}}]) == ["Z"]
    assert payops_status.firing_alerts({"error": "x"}) == []
    assert payops_status.firing_alerts(None) == []
