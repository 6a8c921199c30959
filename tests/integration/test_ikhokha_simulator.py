"""The iKhokha simulator over real HTTP: signing, paylinks, callbacks and faults.

The simulator runs as a subprocess, as `payops sandbox up` starts it. Callbacks go to a small HTTP
receiver in this process, and the test checks their signatures with its own few lines of HMAC, not
with the simulator's code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import conftest
import pytest
import requests

APP_ID = "sim-test-app"
SECRET = "sim-test-secret-0123456789"
API = "/public-api/v1/api"


def sign(path: str, body: str = "", secret: str = SECRET) -> str:
    message = (path + body).replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'").replace("\0", "\\0")
    return hmac.new(secret.strip().encode(), message.encode(), hashlib.sha256).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float = 10.0, interval: float = 0.05):
    return conftest.wait_until(check, timeout, interval)


@dataclass
class Simulator:
    url: str
    config_path: Path
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "payops.sandbox.ikhokha", "--config", str(self.config_path)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()

        def healthy() -> bool:
            assert self.process.poll() is None, f"simulator exited; log:\n{self.log_path.read_text()}"
            try:
                return requests.get(f"{self.url}/_sim/health", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(healthy)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)

    def post(self, path: str, payload: dict | None = None, *, body: str | None = None,
             headers: dict | None = None, signed: bool = True) -> requests.Response:
        text = body if body is not None else json.dumps(payload, separators=(",", ":"))
        sent = {"Content-Type": "application/json"}
        if signed:
            sent |= {"IK-APPID": APP_ID, "IK-SIGN": sign(API + path, text)}
        sent |= headers or {}
        return requests.post(f"{self.url}{API}{path}", data=text.encode(), headers=sent, timeout=10)

    def get(self, path: str, *, signed: bool = True, headers: dict | None = None) -> requests.Response:
        sent = {"IK-APPID": APP_ID, "IK-SIGN": sign(API + path.split("?")[0])} if signed else {}
        sent |= headers or {}
        return requests.get(f"{self.url}{API}{path}", headers=sent, timeout=10)

    def admin(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.url}/_sim{path}", timeout=10, **kwargs)

    def paylink_count(self) -> int:
        return self.admin("GET", "/paylinks").json()["count"]


@dataclass
class Receiver:
    """Records callbacks; answers `fail_first` of them with 500 first."""

    url: str = ""
    fail_first: int = 0
    received: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, fail_first: int = 0) -> None:
        with self.lock:
            self.received.clear()
            self.fail_first = fail_first

    def for_paylink(self, paylink_id: str) -> list[dict]:
        with self.lock:
            return [r for r in self.received if json.loads(r["body"]).get("paylinkID") == paylink_id]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            with state.lock:
                state.received.append({"path": self.path, "headers": dict(self.headers.items()),
                                       "body": body})
                failing = state.fail_first > 0
                state.fail_first -= 1 if failing else 0
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def write_config(tmp: Path, port: int) -> Path:
    config = tmp / "ikhokha.json"
    config.write_text(json.dumps({
        "host": "127.0.0.1", "port": port, "app_id": APP_ID, "app_secret": f"  {SECRET}\n",
        "data_path": str(tmp / "paylinks.sqlite"), "callback_attempts": 4, "callback_backoff_seconds": 0.05,
    }))
    os.chmod(config, 0o600)
    return config


@pytest.fixture(scope="module")
def simulator(tmp_path_factory) -> Iterator[Simulator]:
    tmp = tmp_path_factory.mktemp("ikhokha")
    port = free_port()
    sim = Simulator(f"http://127.0.0.1:{port}", write_config(tmp, port), tmp / "ikhokha.log")
    sim.start()
    yield sim
    assert sim.stop() == 0


@pytest.fixture(autouse=True)
def clean_faults(simulator, receiver):
    simulator.admin("PUT", "/faults", json={})
    receiver.reset()
    yield
    simulator.admin("PUT", "/faults", json={})


def paylink_request(receiver: Receiver, **overrides) -> dict:
    request = {
        "entityID": "betaskill", "externalEntityID": "user-1", "amount": 49900, "currency": "ZAR",
        "requesterUrl": "https://app.example.com", "mode": "test",
        "externalTransactionID": f"SKILL-{time.time_ns()}", "description": "Course 'A' \"quoted\"",
        "urls": {"callbackUrl": f"{receiver.url}/api/webhooks/ikhokha",
                 "successPageUrl": "https://app.example.com/ok", "failurePageUrl": "https://app.example.com/no",
                 "cancelUrl": "https://app.example.com/cancel"},
    }
    request.update(overrides)
    return request


def create_paylink(simulator: Simulator, receiver: Receiver, **overrides) -> dict:
    response = simulator.post("/payment", paylink_request(receiver, **overrides))
    assert response.status_code == 200, response.text
    return response.json()


def callback_signature_is_valid(callback: dict) -> bool:
    headers = {k.lower(): v for k, v in callback["headers"].items()}
    return headers.get("ik-appid") == APP_ID and hmac.compare_digest(
        headers.get("ik-sign", ""), sign(callback["path"], callback["body"]))


# --- the API ------------------------------------------------------------------------------------

def test_signed_create_returns_a_paylink(simulator, receiver):
    request = paylink_request(receiver)
    answer = create_paylink(simulator, receiver, externalTransactionID=request["externalTransactionID"])
    assert answer["responseCode"] == "00"
    assert answer["paylinkID"] and answer["paylinkUrl"]
    assert answer["externalTransactionID"] == request["externalTransactionID"]
    state = simulator.admin("GET", f"/paylinks/{answer['paylinkID']}").json()
    assert state["status"] == "PENDING" and state["amount"] == 49900 and state["mode"] == "test"


@pytest.mark.parametrize("headers", [
    {"IK-SIGN": "0" * 64},
    {"IK-APPID": "someone-else"},
    {"IK-SIGN": sign(API + "/payment", "{}")},
    {"IK-SIGN": sign(API + "/payment", "{}", secret="wrong")},
], ids=["wrong signature", "wrong app id", "signature over another body", "wrong secret"])
def test_a_badly_signed_create_is_rejected_and_creates_nothing(simulator, receiver, headers):
    before = simulator.paylink_count()
    response = simulator.post("/payment", paylink_request(receiver), headers=headers)
    assert response.status_code == 401
    assert response.json()["responseCode"] != "00"
    assert simulator.paylink_count() == before


def test_an_unsigned_create_is_rejected_and_creates_nothing(simulator, receiver):
    before = simulator.paylink_count()
    response = simulator.post("/payment", paylink_request(receiver), signed=False)
    assert response.status_code == 401 and response.json()["responseCode"] != "00"
    assert simulator.paylink_count() == before


def test_the_exact_body_bytes_are_signed(simulator, receiver):
    # Same JSON, different spacing: the signature covers what is sent, not what it means.
    payload = paylink_request(receiver)
    compact = json.dumps(payload, separators=(",", ":"))
    spaced = json.dumps(payload)
    response = simulator.post("/payment", body=spaced,
                              headers={"IK-APPID": APP_ID, "IK-SIGN": sign(API + "/payment", compact)})
    assert response.status_code == 401
    assert simulator.post("/payment", body=spaced).status_code == 200


@pytest.mark.parametrize(("override", "complaint"), [
    ({"amount": "100"}, "amount"),
    ({"amount": 0}, "amount"),
    ({"amount": 10.5}, "amount"),
    ({"currency": "USD"}, "currency"),
    ({"mode": "sandbox"}, "mode"),
    ({"urls": {"successPageUrl": "https://x"}}, "callbackUrl"),
], ids=["amount as text", "zero amount", "fractional amount", "USD", "bad mode", "no callbackUrl"])
def test_invalid_requests_are_refused_with_a_clear_message(simulator, receiver, override, complaint):
    before = simulator.paylink_count()
    response = simulator.post("/payment", paylink_request(receiver, **override))
    assert response.status_code == 400
    assert response.json()["responseCode"] != "00"
    assert complaint in response.json()["message"]
    assert simulator.paylink_count() == before


def test_get_status(simulator, receiver):
    paylink = create_paylink(simulator, receiver)
    response = simulator.get(f"/getStatus/{paylink['paylinkID']}")
    assert response.status_code == 200
    assert response.json()["status"] == "PENDING"
    assert response.json()["externalTransactionID"] == paylink["externalTransactionID"]
    unknown = simulator.get("/getStatus/PL-does-not-exist")
    assert unknown.status_code == 404 and unknown.json()["responseCode"] != "00"
    assert simulator.get(f"/getStatus/{paylink['paylinkID']}", signed=False).status_code == 401


def test_history_is_signed_over_the_path_without_the_query(simulator, receiver):
    paylink = create_paylink(simulator, receiver)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    query = f"/payments/history?startDate={today}&endDate={today}"
    response = simulator.get(query)
    assert response.status_code == 200, response.text
    assert paylink["paylinkID"] in [p["paylinkID"] for p in response.json()["payments"]]
    with_query_signed = simulator.get(query, signed=False,
                                      headers={"IK-APPID": APP_ID, "IK-SIGN": sign(API + query)})
    assert with_query_signed.status_code == 401
    assert simulator.get("/payments/history?startDate=2020-01-01").status_code == 400


# --- callbacks ----------------------------------------------------------------------------------

def test_pay_delivers_a_signed_callback(simulator, receiver):
    paylink = create_paylink(simulator, receiver)
    answer = simulator.admin("POST", f"/paylinks/{paylink['paylinkID']}/pay").json()
    assert answer["status"] == "SUCCESS" and answer["callback"] == "queued"
    callbacks = wait_until(lambda: receiver.for_paylink(paylink["paylinkID"]))
    assert len(callbacks) == 1
    callback = callbacks[0]
    assert callback["path"] == "/api/webhooks/ikhokha"
    assert callback_signature_is_valid(callback)
    assert json.loads(callback["body"]) == {
        "paylinkID": paylink["paylinkID"], "status": "SUCCESS",
        "externalTransactionID": paylink["externalTransactionID"], "responseCode": "00"}
    state = wait_until(lambda: (s := simulator.admin("GET", f"/paylinks/{paylink['paylinkID']}").json())
                       ["callback"] == "delivered" and s)
    assert [d["ok"] for d in state["deliveries"]] == [True]
    assert simulator.get(f"/getStatus/{paylink['paylinkID']}").json()["status"] == "SUCCESS"


def test_fail_delivers_a_failure_callback(simulator, receiver):
    paylink = create_paylink(simulator, receiver)
    simulator.admin("POST", f"/paylinks/{paylink['paylinkID']}/fail")
    callback = wait_until(lambda: receiver.for_paylink(paylink["paylinkID"]))[0]
    assert json.loads(callback["body"])["status"] == "FAILURE"
    assert callback_signature_is_valid(callback)


def test_a_failing_receiver_is_retried_with_backoff(simulator, receiver):
    receiver.reset(fail_first=2)
    paylink = create_paylink(simulator, receiver)
    simulator.admin("POST", f"/paylinks/{paylink['paylinkID']}/pay")
    state = wait_until(lambda: (s := simulator.admin("GET", f"/paylinks/{paylink['paylinkID']}").json())
                       ["callback"] == "delivered" and s)
    attempts = [(d["http_status"], d["ok"]) for d in state["deliveries"]]
    assert attempts == [(500, False), (500, False), (200, True)]
    callbacks = receiver.for_paylink(paylink["paylinkID"])
    assert len(callbacks) == 3 and len({c["body"] for c in callbacks}) == 1


def test_an_unreachable_receiver_gives_up_after_the_configured_attempts(simulator, receiver):
    paylink = create_paylink(simulator, receiver, urls={"callbackUrl": f"http://127.0.0.1:{free_port()}/cb"})
    simulator.admin("POST", f"/paylinks/{paylink['paylinkID']}/pay")
    state = wait_until(lambda: (s := simulator.admin("GET", f"/paylinks/{paylink['paylinkID']}").json())
                       ["callback"] == "failed" and s)
    assert len(state["deliveries"]) == 4
    assert all(d["error"] and not d["ok"] for d in state["deliveries"])


def test_admin_endpoints_answer_unknown_paylinks_with_404(simulator):
    assert simulator.admin("POST", "/paylinks/nope/pay").status_code == 404
    assert simulator.admin("GET", "/paylinks/nope").status_code == 404


# --- faults -------------------------------------------------------------------------------------

def test_faults_are_read_and_validated(simulator):
    assert simulator.admin("GET", "/faults").json() == {
        "latency_ms": 0, "error_rate": 0.0, "drop_callbacks": False, "bad_callback_signature": False}
    assert simulator.admin("PUT", "/faults", json={"error_rate": 2}).status_code == 400
    assert simulator.admin("PUT", "/faults", json={"explode": True}).status_code == 400
    assert simulator.admin("PUT", "/faults", json={"latency_ms": 5}).json()["latency_ms"] == 5


def test_latency_fault(simulator):
    simulator.admin("PUT", "/faults", json={"latency_ms": 400})
    started = time.monotonic()
    simulator.get("/getStatus/PL-unknown")
    assert time.monotonic() - started >= 0.4


def test_error_rate_fault_fails_every_call_and_creates_nothing(simulator, receiver):
    simulator.admin("PUT", "/faults", json={"error_rate": 1.0})
    before = simulator.paylink_count()
    statuses = {simulator.post("/payment", paylink_request(receiver)).status_code for _ in range(10)}
    assert statuses <= {500, 503} and statuses
    assert simulator.paylink_count() == before
    simulator.admin("PUT", "/faults", json={})
    assert simulator.post("/payment", paylink_request(receiver)).status_code == 200


def test_drop_callbacks_fault_settles_but_never_calls_back(simulator, receiver):
    simulator.admin("PUT", "/faults", json={"drop_callbacks": True})
    paylink = create_paylink(simulator, receiver)
    answer = simulator.admin("POST", f"/paylinks/{paylink['paylinkID']}/pay").json()
    assert answer["callback"] == "dropped"
    time.sleep(0.5)
    assert receiver.for_paylink(paylink["paylinkID"]) == []
    assert simulator.get(f"/getStatus/{paylink['paylinkID']}").json()["status"] == "SUCCESS"


def test_bad_callback_signature_fault(simulator, receiver):
    simulator.admin("PUT", "/faults", json={"bad_callback_signature": True})
    paylink = create_paylink(simulator, receiver)
    simulator.admin("POST", f"/paylinks/{paylink['paylinkID']}/pay")
    callback = wait_until(lambda: receiver.for_paylink(paylink["paylinkID"]))[0]
    assert not callback_signature_is_valid(callback)
    assert {k.lower(): v for k, v in callback["headers"].items()}["ik-appid"] == APP_ID


# --- life cycle ---------------------------------------------------------------------------------

def test_a_restarted_simulator_keeps_its_paylinks(tmp_path, receiver):
    port = free_port()
    sim = Simulator(f"http://127.0.0.1:{port}", write_config(tmp_path, port), tmp_path / "ikhokha.log")
    sim.start()
    paylink = create_paylink(sim, receiver)
    assert sim.stop() == 0
    sim.start()
    try:
        assert sim.get(f"/getStatus/{paylink['paylinkID']}").json()["status"] == "PENDING"
    finally:
        assert sim.stop() == 0
    log = (tmp_path / "ikhokha.log").read_text()
    assert "POST /public-api/v1/api/payment 200" in log
    assert SECRET not in log and sign(API + "/payment") not in log
