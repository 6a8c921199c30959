"""The edge role on a production-like web host: nginx installed, serving the release, proxying /api/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner


def _molecule_hosts() -> list[str]:
    """The scenario's containers, reached with `podman exec` directly.

    Molecule hands testinfra its inventory with `--connection ansible`; for containers.podman's
    connection testinfra then runs every command as a whole Ansible task (seconds each).
    """
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    names = AnsibleRunner(inventory).get_hosts("all") if inventory else ["payops-edge"]
    return [f"podman://{name}" for name in names]


testinfra_hosts = _molecule_hosts()

CONFIG_DIR = "/etc/nginx"
PAYOPS_DIR = f"{CONFIG_DIR}/payops"

# The container has python3 but no curl: one request from a chosen loopback address, printed as JSON.
# 127.0.0.1 is in converge.yml's operator allowlist; 127.0.0.2 is any customer.
_REQUEST = r"""
import http.client, json, sys
method, path, headers, source = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[6]
data = sys.argv[4].encode() * int(sys.argv[5]) or None
connection = http.client.HTTPConnection("127.0.0.1", 80, timeout=5, source_address=(source, 0))
connection.request(method, path, body=data, headers=headers)
response = connection.getresponse()
print(json.dumps({"status": response.status, "headers": dict(response.getheaders()),
                  "body": response.read().decode(errors="replace")}))
"""

OPERATOR = "127.0.0.1"
OUTSIDER = "127.0.0.2"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> dict:
        return json.loads(self.body)


def request(
    host,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    data: str = "",
    repeat: int = 1,
    source: str = OPERATOR,
) -> Response:
    """One HTTP request from inside the container; the body is `data` repeated `repeat` times."""
    result = host.check_output(
        "python3 -c %s %s %s %s %s %s %s",
        _REQUEST,
        method,
        path,
        json.dumps({"Host": "app.betaskill.com", **(headers or {})}),
        data,
        str(repeat),
        source,
    )
    answer = json.loads(result)
    return Response(answer["status"], {k.lower(): v for k, v in answer["headers"].items()}, answer["body"])


def eventually(check, timeout: float = 10.0):
    """nginx reloads asynchronously: old workers answer until the new ones have started."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_nginx_is_installed(host):
    assert host.package("nginx").is_installed


def test_nginx_is_running_and_enabled(host):
    nginx = host.service("nginx")
    assert nginx.is_running
    assert nginx.is_enabled


def test_nginx_listens_on_port_80(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening


def test_configuration_is_valid(host):
    assert host.run("nginx -t -c /etc/nginx/nginx.conf").rc == 0


def test_extension_points_exist(host):
    for name in ("http.d", "server.d", "site.d", "checkout.d"):
        assert host.file(f"{PAYOPS_DIR}/{name}").is_directory


def test_release_index_is_served(host):
    response = request(host, "/")
    assert response.status == 200
    assert "payops-edge-fixture" in response.body


def test_unknown_paths_fall_back_to_the_single_page_app(host):
    response = request(host, "/courses/42/enroll")
    assert response.status == 200
    assert "payops-edge-fixture" in response.body


def test_static_files_are_served_with_their_type(host):
    response = request(host, "/assets/app.js")
    assert response.status == 200
    assert "javascript" in response.headers["content-type"]


@pytest.mark.parametrize("path", ["/", "/api/anything"])
def test_security_headers(host, path):
    headers = request(host, path).headers
    assert headers["strict-transport-security"].startswith("max-age=31536000")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "nginx/" not in headers.get("server", "")


def test_api_is_proxied_with_client_headers(host):
    echo = request(host, "/api/payments?id=7").json()
    assert echo["path"] == "/api/payments?id=7"
    assert echo["headers"]["Host"] == "app.betaskill.com"
    assert echo["headers"]["X-Real-IP"] == "127.0.0.1"
    assert echo["headers"]["X-Forwarded-For"] == "127.0.0.1"


def test_client_address_comes_from_trusted_proxy(host):
    # 127.0.0.1 is a trusted proxy in converge.yml: the address it forwards is the client's.
    echo = request(host, "/api/payments", {"X-Forwarded-For": "203.0.113.9"}).json()
    assert echo["headers"]["X-Real-IP"] == "203.0.113.9"


@pytest.mark.parametrize("path", ["/api/webhooks/ikhokha", "/api/health", "/api/checkout"])
def test_payment_paths_are_proxied(host, path):
    response = request(host, path, method="POST", data='{"paylinkID":"p-1"}')
    assert response.status == 200
    assert response.json()["path"] == path
    assert response.json()["body"] == '{"paylinkID":"p-1"}'


def test_large_bodies_are_refused(host):
    response = request(host, "/api/checkout", method="POST", data="x", repeat=2 * 1024 * 1024)
    assert response.status == 413


def test_access_log_records_client_and_status(host):
    request(host, "/api/health", {"X-Forwarded-For": "203.0.113.10"})
    last = json.loads(host.file("/var/log/nginx/access.log").content_string.splitlines()[-1])
    assert last["remote_addr"] == "203.0.113.10"
    assert last["status"] == 200


def test_access_log_has_the_path_without_its_query_string_and_the_request_id_the_app_got(host):
    response = request(host, "/api/health?token=molecule-secret-token", {"X-Request-ID": "molecule-req-0001"})
    assert response.json()["headers"]["X-Request-ID"] == "molecule-req-0001"
    assert response.headers["x-request-id"] == "molecule-req-0001"
    log = host.file("/var/log/nginx/access.log").content_string
    last = json.loads(log.splitlines()[-1])
    assert last["path"] == "/api/health" and last["request_id"] == "molecule-req-0001"
    assert "molecule-secret-token" not in log
    # An id that does not look like one is replaced by nginx's own.
    replaced = request(host, "/api/health", {"X-Request-ID": "no good"})
    assert len(replaced.json()["headers"]["X-Request-ID"]) == 32


# The switch points: a rule dropped into site.d / checkout.d takes effect after a reload, and
# never reaches the webhook or health locations. The rules below are test-only stand-ins.
TEST_RULES = {
    f"{PAYOPS_DIR}/http.d/zz-molecule-test.conf": (
        'map "$http_x_payops_test:$payops_operator" $payops_test_maintenance {\n'
        '    default 0;\n    "maintenance:0" 1;\n}\n'
    ),
    f"{PAYOPS_DIR}/site.d/zz-molecule-test.conf": "if ($payops_test_maintenance) { return 503; }\n",
    f"{PAYOPS_DIR}/checkout.d/zz-molecule-test.conf": (
        'if ($http_x_payops_test = "payments-stopped") {\n    return 503 \'{"error": "payments_stopped"}\';\n}\n'
    ),
}


@pytest.fixture
def switch_rules(host):
    try:
        for path, content in TEST_RULES.items():
            host.check_output("printf %s %s > %s", "%s", content, path)
        host.check_output("nginx -t -q && systemctl reload nginx")
        yield
    finally:
        host.run("rm -f %s %s %s", *TEST_RULES)
        host.run("systemctl reload nginx")


def test_maintenance_page_from_a_site_rule(host, switch_rules):
    def page_served():
        response = request(host, "/courses", {"X-Payops-Test": "maintenance"}, source=OUTSIDER)
        assert response.status == 503
        return response

    response = eventually(page_served)
    assert response.headers["retry-after"] == "300"
    assert "down for maintenance" in response.body
    assert response.headers["x-frame-options"] == "DENY"
    assert request(host, "/api/checkout", {"X-Payops-Test": "maintenance"}, source=OUTSIDER).status == 503


def test_webhooks_and_health_pass_every_switch(host, switch_rules):
    eventually(lambda: _assert_status(request(host, "/", {"X-Payops-Test": "maintenance"}, source=OUTSIDER), 503))
    for path in ("/api/webhooks/ikhokha", "/api/health"):
        for switch in ("maintenance", "payments-stopped"):
            assert request(host, path, {"X-Payops-Test": switch}, method="POST", source=OUTSIDER).status == 200


def test_operators_pass_maintenance(host, switch_rules):
    maintenance = {"X-Payops-Test": "maintenance"}
    eventually(lambda: _assert_status(request(host, "/", maintenance, source=OUTSIDER), 503))
    assert request(host, "/", maintenance, source=OPERATOR).status == 200
    # A customer forwarded by the trusted load balancer (127.0.0.1) is judged by its own address.
    assert request(host, "/", {**maintenance, "X-Forwarded-For": "203.0.113.20"}, source=OPERATOR).status == 503


def test_checkout_rule_keeps_its_own_body(host, switch_rules):
    def stopped():
        response = request(host, "/api/checkout", {"X-Payops-Test": "payments-stopped"}, method="POST")
        assert response.status == 503
        return response

    assert eventually(stopped).json() == {"error": "payments_stopped"}
    assert request(host, "/api/payments", {"X-Payops-Test": "payments-stopped"}).status == 200


def _assert_status(response: Response, status: int) -> None:
    assert response.status == status


# The control model's three switches, as roles/edge/tasks/switch.yml sets them: one file in
# server.d per switch that is on, then a tested, graceful reload. (The role's switch entry point
# also probes from the controller, which cannot reach the container's loopback allowlist; the
# files and the reload are what it changes on the host.)
SWITCHES = ("payments_stopped", "maintenance", "lockdown")
PATHS = {
    "site": ("GET", "/courses/42"),
    "checkout": ("POST", "/api/checkout"),
    "health": ("GET", "/api/health"),
    "webhook": ("POST", "/api/webhooks/ikhokha"),
}
# What each client gets, per switch state: a status, and for 503s whose page nginx answers, which one.
PROXIED = 200  # the echoing API stub, or the release
EXPECTED = {
    ("payments_stopped",): {
        OUTSIDER: {"site": PROXIED, "checkout": "payments_stopped", "health": PROXIED, "webhook": PROXIED},
        OPERATOR: {"site": PROXIED, "checkout": "payments_stopped", "health": PROXIED, "webhook": PROXIED},
    },
    ("maintenance",): {
        OUTSIDER: {"site": "maintenance", "checkout": "maintenance", "health": PROXIED, "webhook": PROXIED},
        OPERATOR: {"site": PROXIED, "checkout": PROXIED, "health": PROXIED, "webhook": PROXIED},
    },
    ("lockdown",): {
        OUTSIDER: {"site": 403, "checkout": 403, "health": PROXIED, "webhook": PROXIED},
        OPERATOR: {"site": PROXIED, "checkout": PROXIED, "health": PROXIED, "webhook": PROXIED},
    },
    SWITCHES: {
        OUTSIDER: {"site": 403, "checkout": 403, "health": PROXIED, "webhook": PROXIED},
        OPERATOR: {"site": PROXIED, "checkout": "payments_stopped", "health": PROXIED, "webhook": PROXIED},
    },
}


# Many requests in one `podman exec`: each one costs a Python start in the container otherwise.
_REQUESTS = r"""
import http.client, json, sys
answers = []
for method, path, headers, data, source in json.loads(sys.argv[1]):
    connection = http.client.HTTPConnection("127.0.0.1", 80, timeout=5, source_address=(source, 0))
    connection.request(method, path, body=data.encode() or None, headers=headers)
    response = connection.getresponse()
    answers.append({"status": response.status, "headers": dict(response.getheaders()),
                    "body": response.read().decode(errors="replace")})
    connection.close()
print(json.dumps(answers))
"""


def requests_at_once(host, wanted: list[tuple[str, str, dict[str, str], str, str]]) -> list[Response]:
    """(method, path, headers, body, source) each; the answers in the same order."""
    sent = [(method, path, {"Host": "app.betaskill.com", **headers}, data, source)
            for method, path, headers, data, source in wanted]
    answers = json.loads(host.check_output("python3 -c %s %s", _REQUESTS, json.dumps(sent)))
    return [Response(a["status"], {k.lower(): v for k, v in a["headers"].items()}, a["body"]) for a in answers]


def served(host, source: str = OPERATOR) -> Response:
    return request(host, "/.payops/switches", source=source)


def _serves(host, states: dict[str, int]) -> None:
    assert served(host).json() == states


def outcome(response: Response) -> int | str:
    """The status, or which refusal a 503 is: nginx's payments_stopped JSON, or the maintenance page."""
    if response.status != 503:
        return response.status
    if "json" in response.headers.get("content-type", "") and response.json().get("error") == "payments_stopped":
        return "payments_stopped"
    if "down for maintenance" in response.body and response.headers.get("retry-after") == "300":
        return "maintenance"
    return 503


def test_no_switch_is_on_after_converge(host):
    assert host.file(f"{PAYOPS_DIR}/server.d").listdir() == []
    assert served(host).json() == dict.fromkeys(SWITCHES, 0)


@pytest.mark.parametrize("on", list(EXPECTED), ids=lambda on: "+".join(on))
def test_switches_refuse_what_they_should_and_pass_the_essentials(host, on):
    try:
        for name in on:
            host.check_output("printf %s %s > %s", "%s", f"set $payops_{name} 1;\n",
                              f"{PAYOPS_DIR}/server.d/switch-{name}.conf")
        host.check_output("nginx -t -q && systemctl reload nginx")
        states = {name: int(name in on) for name in SWITCHES}
        eventually(lambda: _serves(host, states))
        # The old worker keeps accepting for a moment after the new one answers (until the master
        # tells it to stop, 100 ms after starting the new one): ask again once that has passed.
        time.sleep(0.5)
        _serves(host, states)

        clients = {OUTSIDER: (OUTSIDER, {}), OPERATOR: (OPERATOR, {}),
                   "operator with the probe header": (OPERATOR, {"X-Payops-Probe": "outside"})}
        asked = [(who, name, method, path, headers, '{"paylinkID":"p-1"}' if method == "POST" else "", source)
                 for who, (source, headers) in clients.items() for name, (method, path) in PATHS.items()]
        answers = requests_at_once(host, [row[2:] for row in asked])
        seen: dict[str, dict[str, int | str]] = {who: {} for who in clients}
        for (who, name, *_), answer in zip(asked, answers, strict=True):
            seen[who][name] = outcome(answer)
        assert seen == {
            OUTSIDER: EXPECTED[on][OUTSIDER],
            OPERATOR: EXPECTED[on][OPERATOR],
            "operator with the probe header": EXPECTED[on][OUTSIDER],
        }
        assert served(host, source=OUTSIDER).status == 404
    finally:
        host.run("rm -f %s/server.d/switch-*.conf", PAYOPS_DIR)
        host.run("systemctl reload nginx")
        eventually(lambda: _serves(host, dict.fromkeys(SWITCHES, 0)))


# betaskill.payops.log_search on a host with systemd: the journal is read (journalctl -o json over the
# window), alongside the files. The module runs in the container through Ansible's podman connection.
def log_search(container: str, **args) -> dict:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible")), "all", "-i", f"{container},", "-c", "containers.podman.podman",
         "-e", "ansible_python_interpreter=/usr/bin/python3", "-m", "betaskill.payops.log_search",
         "-a", json.dumps(args)],
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and "=>" in result.stdout, result.stdout + result.stderr
    return json.loads(result.stdout.split("=>", 1)[1])


def test_log_search_reads_the_journal_of_a_systemd_host(host):
    since = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="seconds").replace("+00:00", "Z")
    common = {"journal": "yes", "journal_units": ["nginx.service"], "since": since, "limit": 50}
    found = log_search(host.backend.name, **common, request_id="molecule-req-0001",
                       sources=[{"name": "edge-access", "paths": ["/var/log/nginx/access.log"]}])
    assert found["journal"]["read"] is True and found["journal"]["entries"] > 0
    # The request id filter holds for the journal too: nginx's unit lines do not carry it, the access log does.
    assert [line["source"] for line in found["lines"]] == ["edge-access"]
    assert found["lines"][0]["request_id"] == "molecule-req-0001"
    # Without it, nginx's start is there, from the journal.
    found = log_search(host.backend.name, **common)
    assert found["lines"] and all(line["file"] == "journal:nginx.service" for line in found["lines"])
