"""The critical commands against the sandbox, through `payops run`, judged from outside and in the database.

One drill (module fixture `drill`) turns the switches on and off in several orders with the real
procedures, while a few hundred signed gateway callbacks (each sent at least twice) go through
nginx from an address outside the operator allowlist, during every run and between runs. After
each run it looks at the platform as a customer (source address 127.0.0.2), as an operator
(127.0.0.1, in inventories/local's allowlist) and at the app directly, and reads the database.
The tests below judge what it saw: callbacks recorded exactly once, checkouts refused exactly while
a switch says so, maintenance and lockdown refusing outsiders only, sessions ended, a payment whose
callback was lost settled by system:recover, and the audit trail of it all.

Refusals (lockdown without confirm or with the wrong one, emergency stop without reason) and check
mode run first, on a platform with every switch off, and must leave it as they found it.

Runs its own audit log (PAYOPS_AUDIT_LOG in a temporary folder) so that other runs on the machine
do not interleave with the drill's lines. Each `payops run` costs 15-45 s here: the drill has seven.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from requests.adapters import HTTPAdapter

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
COURSE_ID = "00000000-0000-4000-8000-000000000001"  # seeded by betaskill.sql
WEBHOOK = "/api/webhooks/ikhokha"
OPERATOR = "127.0.0.1"  # inventories/local: payops_operator_allowlist
OUTSIDER = "127.0.0.2"  # any other loopback address is a customer to nginx
SWITCHES = ("payments_stopped", "maintenance", "lockdown")
CALLBACK_PAYMENTS = 300
DRILL_OPERATOR = "critical-drill"
EDGE_ROLE = "betaskill.payops.edge"
EDGE_SWITCH = "betaskill.payops.edge_switch"

# (command, its arguments, the switches on afterwards). Switches go on in one order and come off in
# another; payment:resume and system:recover each bring checkouts back.
DRILL = [
    ("payment:emergency-stop", ["-e", "reason=drill-stop-alone"], {"payments_stopped"}),
    ("payment:resume", [], set()),
    ("system:maintenance-mode", ["-e", "reason=drill-maintenance"], {"maintenance"}),
    ("payment:emergency-stop", ["-e", "reason=drill-stop-in-maintenance"], {"maintenance", "payments_stopped"}),
    ("security:lockdown", ["-e", "reason=drill-lockdown", "-e", "confirm=local"], set(SWITCHES)),
    ("deployment:normal-mode", [], {"payments_stopped", "lockdown"}),
    ("system:recover", ["-e", "recover_min_age_seconds=0"], set()),
]


# --- HTTP from a chosen source address ------------------------------------------------------------

class SourceAddressAdapter(HTTPAdapter):
    """Connections from one local address: nginx's allowlist decides on it."""

    def __init__(self, source: str, **kwargs: Any) -> None:
        self.source = source
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def client(source: str, pool: int = 4) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", SourceAddressAdapter(source, pool_connections=2, pool_maxsize=pool))
    return session


@dataclass
class Seen:
    status: int
    content_type: str
    retry_after: str | None
    body: str

    @property
    def is_json(self) -> bool:
        return "json" in self.content_type

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> str | None:
        try:
            return self.json().get("error") if self.is_json else None
        except ValueError:
            return None


def ask(session: requests.Session, method: str, url: str, **kwargs: Any) -> Seen:
    response = session.request(method, url, timeout=30, **kwargs)
    return Seen(response.status_code, response.headers.get("Content-Type", ""),
                response.headers.get("Retry-After"), response.text[:4000])


def order() -> dict:
    return {"user_id": str(uuid.uuid4()), "course_id": COURSE_ID, "amount": 49900, "currency": "ZAR",
            "email": "learner@example.com"}


# --- signing, as DESIGN.md describes it (independently of the app's and the simulator's code) ------

def sign(secret: str, path: str, body: str) -> str:
    message = (path + body).replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'").replace("\0", "\\0")
    return hmac.new(secret.strip().encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Callback:
    payment_id: str
    paylink_id: str
    reference: str
    status: str
    body: str


def callback_for(payment: dict, status: str) -> Callback:
    body = json.dumps({"paylinkID": payment["paylink_id"], "status": status,
                       "externalTransactionID": payment["transaction_reference"],
                       "responseCode": "00" if status == "SUCCESS" else "01"}, separators=(",", ":"))
    return Callback(payment["payment_id"], payment["paylink_id"], payment["transaction_reference"], status, body)


class CallbackSender:
    """Sends callbacks through nginx as the gateway would: from outside the allowlist, retrying a
    503/502 that the app itself answered (its database busy) or a connection closed by a reload, as
    iKhokha retries. A refusal by nginx's own switch rules is never retried: it is recorded."""

    def __init__(self, sandbox: dict, threads: int = 8) -> None:
        self.url = sandbox["edge_url"] + WEBHOOK
        self.app_id = sandbox["ikhokha_app_id"]
        self.secret = sandbox["ikhokha_app_secret"]
        self.session = client(OUTSIDER, pool=threads)
        self.threads = threads
        self.lock = threading.Lock()
        self.results: list[tuple[str, str, int, str]] = []  # (phase, paylink, HTTP status, result)
        self.refused: list[tuple[str, str, int, str]] = []
        self.retries = 0
        self.sent: list[Callback] = []

    def send(self, callback: Callback, phase: str) -> None:
        headers = {"Content-Type": "application/json", "ik-appid": self.app_id,
                   "ik-sign": sign(self.secret, WEBHOOK, callback.body)}
        for attempt in range(8):
            try:
                seen = ask(self.session, "POST", self.url, data=callback.body.encode(), headers=headers)
            except requests.ConnectionError:
                seen = None
            if seen is not None and seen.status == 200:
                with self.lock:
                    self.results.append((phase, callback.paylink_id, 200, seen.json()["result"]))
                return
            if seen is not None and seen.status in (403, 503) and not seen.is_json:
                with self.lock:
                    self.refused.append((phase, callback.paylink_id, seen.status, seen.body[:200]))
                return
            if seen is not None and seen.status not in (502, 503, 504):
                with self.lock:
                    self.results.append((phase, callback.paylink_id, seen.status, seen.body[:200]))
                return
            with self.lock:
                self.retries += 1
            time.sleep(0.2 * (attempt + 1))
        with self.lock:
            self.results.append((phase, callback.paylink_id, 0, "gave up after 8 attempts"))

    def send_batch(self, callbacks: list[Callback], phase: str) -> None:
        """Each callback twice, at the same time as the others and as its own duplicate."""
        twice = [*callbacks, *callbacks]
        random.shuffle(twice)
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            list(pool.map(lambda item: self.send(item, phase), twice))
        with self.lock:
            self.sent.extend(callbacks)

    def keep_sending(self, callbacks: list[Callback], phase: str, stop: threading.Event) -> None:
        """A batch, then replays of callbacks already sent, until the run around it ends."""
        self.send_batch(callbacks, phase)
        while not stop.wait(0.2):
            with self.lock:
                replay = random.choice(self.sent) if self.sent else None
            if replay is not None:
                self.send(replay, phase)


# --- running the procedures -----------------------------------------------------------------------

@dataclass
class Run:
    command: str
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path | None
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def payops_run(env: dict[str, str], command: str, *args: str, check: bool = True) -> Run:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "payops.cli", "run", command, *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900, check=False)
    found = re.search(r"run artefacts in (\S+)", result.stdout)
    run = Run(command, list(args), result.returncode, result.stdout, result.stderr,
              Path(found.group(1)) if found else None, round(time.monotonic() - started, 1))
    if check and result.returncode != 0:
        raise AssertionError(f"payops run {command} {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return run


def playbook_run(env: dict[str, str], playbook: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """A command's playbook without payops: what AWX runs, with payops' own checks out of the way."""
    binary = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run([str(binary), playbook, "-i", "inventories/local", *extra], cwd=ROOT,
                          env={**env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def run_env(sandbox, tmp_path_factory) -> dict[str, str]:
    audit = tmp_path_factory.mktemp("critical-audit") / "audit.jsonl"
    return {**os.environ, "PAYOPS_AUDIT_LOG": str(audit), "PAYOPS_OPERATOR": DRILL_OPERATOR,
            "PAYOPS_SANDBOX_DIR": sandbox["state_dir"]}


@pytest.fixture(scope="module")
def db(sandbox):
    with psycopg.connect(sandbox["postgres_dsn"], autocommit=True) as conn:
        yield conn


def scalar(db, sql: str, *params: Any) -> Any:
    return db.execute(sql, params).fetchone()[0]


def server_d(sandbox) -> list[str]:
    return sorted(path.name for path in (Path(sandbox["state_dir"]) / "edge/conf/payops/server.d").iterdir())


def served_switches(sandbox) -> dict:
    with client(OPERATOR) as operator:
        return ask(operator, "GET", sandbox["edge_url"] + "/.payops/switches").json()


def platform_state(sandbox, db) -> dict:
    """What a refused or dry-run procedure must leave exactly as it was."""
    return {
        "switches": db.execute("SELECT name, enabled, reason, set_by, set_at FROM payops.switches"
                               " ORDER BY name").fetchall(),
        "switch_events": scalar(db, "SELECT count(*) FROM payops.switch_events"),
        "sessions": scalar(db, "SELECT count(*) FROM auth.sessions"),
        "live_refresh_tokens": scalar(db, "SELECT count(*) FROM auth.refresh_tokens WHERE NOT revoked"),
        "lockdown_events": scalar(db, "SELECT count(*) FROM public.security_events WHERE event_type = 'lockdown'"),
        "server.d": server_d(sandbox),
        "nginx serves": served_switches(sandbox),
    }


def seed_sessions(db, count: int = 3) -> None:
    for _ in range(count):
        user = scalar(db, "INSERT INTO auth.users (email) VALUES (%s) RETURNING id",
                      f"learner-{uuid.uuid4().hex[:12]}@example.com")
        session = scalar(db, "INSERT INTO auth.sessions (user_id) VALUES (%s) RETURNING id", user)
        db.execute("INSERT INTO auth.refresh_tokens (token, user_id, session_id) VALUES (%s, %s, %s)",
                   (uuid.uuid4().hex, user, session))


def all_off(sandbox, db) -> None:
    assert scalar(db, "SELECT count(*) FROM payops.switches WHERE enabled") == 0, \
        "a switch is on in the sandbox: run `payops run system:recover` first"
    assert served_switches(sandbox) == dict.fromkeys(SWITCHES, 0)


# --- refusals and check mode: nothing changes ------------------------------------------------------

REFUSALS = {
    "lockdown without confirm (payops)": ("payops", ["security:lockdown", "-e", "reason=drill"], "confirm"),
    "lockdown confirmed for production on the local inventory": (
        "payops", ["security:lockdown", "-e", "reason=drill", "-e", "confirm=production"], "confirm=local"),
    "emergency stop without reason (payops)": ("payops", ["payment:emergency-stop"], "reason"),
    # The playbooks check their variables in their first task, as payops run does before it starts.
    "lockdown without confirm (ansible-playbook)": (
        "playbook", ["playbooks/security_lockdown.yml", "-e", "reason=drill"], "missing required arguments: confirm"),
    "lockdown confirmed for production on the local inventory (ansible-playbook)": (
        "playbook", ["playbooks/security_lockdown.yml", "-e", "reason=drill", "-e", "confirm=production"],
        "confirm=local"),
    "emergency stop without reason (ansible-playbook)": (
        "playbook", ["playbooks/payment_emergency_stop.yml"], "missing required arguments: reason"),
    "emergency stop with an empty reason (ansible-playbook)": (
        "playbook", ["playbooks/payment_emergency_stop.yml", "-e", "reason="], "needs a reason"),
    "payment:resume told to lift lockdown instead (ansible-playbook)": (
        "playbook", ["playbooks/payment_resume.yml", "-e", "switch=lockdown"], "sets switch and switch_state itself"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_before_anything_changes(sandbox, db, run_env, case):
    all_off(sandbox, db)
    seed_sessions(db, 1)
    before = platform_state(sandbox, db)
    kind, args, message = REFUSALS[case]
    if kind == "payops":
        result = payops_run(run_env, *args, check=False)
        returncode, output = result.returncode, result.output
    else:
        completed = playbook_run(run_env, *args)
        returncode, output = completed.returncode, completed.stdout + completed.stderr
    assert returncode != 0, output
    assert message in output, output
    assert platform_state(sandbox, db) == before


def test_check_mode_changes_nothing_and_says_what_it_would_do(sandbox, db, run_env):
    all_off(sandbox, db)
    before = platform_state(sandbox, db)
    run = payops_run(run_env, "payment:emergency-stop", "-e", "reason=drill-dry-run", "--check")
    assert platform_state(sandbox, db) == before
    assert "switch-payments_stopped.conf" not in before["server.d"]
    with client(OUTSIDER) as outsider:
        refused = ask(outsider, "POST", sandbox["edge_url"] + "/api/checkout", data=b"{}",
                      headers={"Content-Type": "application/json"})
    assert refused.error() != "payments_stopped"  # the app's validation answers, not a switch
    report = json.loads((run.run_dir / "switch-payments_stopped-on.json").read_text())
    rows = {row["component"]: row for row in report["rows"]}
    assert rows["edge web-1"]["value"] == "would turn on", rows
    assert "would be now on" in rows["database switch"]["value"], rows
    assert "would turn on" in run.stdout and "in check mode" in run.stdout


# --- the drill -------------------------------------------------------------------------------------

@dataclass
class Step:
    command: str
    on: set[str]
    run: Run
    seen: dict[str, Any] = field(default_factory=dict)


@dataclass
class Drill:
    steps: list[Step]
    callbacks: list[Callback]
    sender: CallbackSender
    dropped: dict
    seconds: float


def look(sandbox, db) -> dict[str, Any]:
    """The platform as a customer, an operator and the app's own port see it, and the database."""
    edge, app = sandbox["edge_url"], sandbox["app_url"]
    json_headers = {"Content-Type": "application/json"}
    with client(OUTSIDER) as outsider, client(OPERATOR) as operator:
        return {
            "site outsider": ask(outsider, "GET", edge + "/courses/42"),
            "site operator": ask(operator, "GET", edge + "/courses/42"),
            "site operator as outsider": ask(operator, "GET", edge + "/courses/42",
                                             headers={"X-Payops-Probe": "outside"}),
            "health outsider": ask(outsider, "GET", edge + "/api/health"),
            "health operator": ask(operator, "GET", edge + "/api/health"),
            "checkout outsider": ask(outsider, "POST", edge + "/api/checkout", json=order()),
            "checkout operator": ask(operator, "POST", edge + "/api/checkout", json=order()),
            "checkout at the app": ask(operator, "POST", app + "/api/checkout", json=order(), headers=json_headers),
            "switches outsider": ask(outsider, "GET", edge + "/.payops/switches"),
            "switches operator": ask(operator, "GET", edge + "/.payops/switches"),
            "database": {name: enabled for name, enabled in
                         db.execute("SELECT name, enabled FROM payops.switches").fetchall()},
            "sessions": scalar(db, "SELECT count(*) FROM auth.sessions"),
            "live refresh tokens": scalar(db, "SELECT count(*) FROM auth.refresh_tokens WHERE NOT revoked"),
        }


def make_payments(sandbox, count: int) -> list[dict]:
    with client(OPERATOR, pool=8) as operator, ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(lambda _: ask(operator, "POST", sandbox["edge_url"] + "/api/checkout", json=order()),
                             range(count)))
    assert all(item.status == 201 for item in seen), [item for item in seen if item.status != 201][:3]
    return [item.json() for item in seen]


def lose_a_callback(sandbox, db) -> dict:
    """A payment paid at the gateway whose callback the gateway never sent."""
    sim = sandbox["ikhokha_admin_url"]
    requests.put(f"{sim}/faults", json={"drop_callbacks": True}, timeout=10).raise_for_status()
    try:
        payment = make_payments(sandbox, 1)[0]
        requests.post(f"{sim}/paylinks/{payment['paylink_id']}/pay", timeout=10).raise_for_status()
        state = requests.get(f"{sim}/paylinks/{payment['paylink_id']}", timeout=10).json()
    finally:
        requests.put(f"{sim}/faults", json={}, timeout=10).raise_for_status()
    assert state["status"] == "SUCCESS" and state["callback"] == "dropped" and state["deliveries"] == [], state
    time.sleep(1)  # a delivered callback would have landed by now
    assert scalar(db, "SELECT status FROM public.payments WHERE id = %s", payment["payment_id"]) == "pending"
    return payment


def chunks(items: list, parts: int) -> list[list]:
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        out.append(items[start:end])
        start = end
    return out


@pytest.fixture(scope="module")
def drill(sandbox, db, run_env) -> Drill:
    all_off(sandbox, db)
    started = time.monotonic()
    dropped = lose_a_callback(sandbox, db)
    payments = make_payments(sandbox, CALLBACK_PAYMENTS)
    callbacks = [callback_for(payment, "FAILURE" if index % 6 == 5 else "SUCCESS")
                 for index, payment in enumerate(payments)]
    random.shuffle(callbacks)
    seed_sessions(db, 3)
    sender = CallbackSender(sandbox)
    batches = chunks(callbacks, 2 * len(DRILL))  # one while each run goes, one after it
    steps = []
    for index, (command, args, on) in enumerate(DRILL):
        stop = threading.Event()
        during = threading.Thread(target=sender.keep_sending,
                                  args=(batches[2 * index], f"{index + 1} during {command}", stop))
        during.start()
        try:
            run = payops_run(run_env, command, *args)
        finally:
            stop.set()
            during.join()
        step = Step(command, on, run, look(sandbox, db))
        state = ", ".join(sorted(on)) or "all off"
        sender.send_batch(batches[2 * index + 1], f"{index + 1} after {command} ({state})")
        steps.append(step)
    return Drill(steps, callbacks, sender, dropped, round(time.monotonic() - started, 1))


def test_every_callback_is_recorded_exactly_once_whatever_the_switches(drill, db):
    sender = drill.sender
    assert sender.refused == [], sender.refused[:5]
    assert [r for r in sender.results if r[2] != 200] == []
    paylinks = [callback.paylink_id for callback in drill.callbacks]
    outcomes = Counter((paylink, result) for _, paylink, _, result in sender.results)
    # Each callback went through at least twice; exactly one of its deliveries was applied.
    assert all(outcomes[(paylink, "applied")] == 1 for paylink in paylinks)
    assert all(outcomes[(paylink, "duplicate")] >= 1 for paylink in paylinks)
    assert sum(outcomes.values()) >= 2 * len(paylinks)

    receipts = db.execute("SELECT paylink_id, status, source FROM payops.webhook_receipts"
                          " WHERE paylink_id = ANY(%s)", (paylinks,)).fetchall()
    assert len(receipts) == len(paylinks) == CALLBACK_PAYMENTS
    wanted = {(callback.paylink_id, callback.status, "webhook") for callback in drill.callbacks}
    assert set(receipts) == wanted

    payment_ids = [callback.payment_id for callback in drill.callbacks]
    statuses = dict(db.execute("SELECT status, count(*) FROM public.payments WHERE id = ANY(%s::uuid[])"
                               " GROUP BY status", (payment_ids,)).fetchall())
    expected = Counter("completed" if callback.status == "SUCCESS" else "failed" for callback in drill.callbacks)
    assert statuses == dict(expected)
    assert scalar(db, "SELECT count(*) FROM public.payment_transactions WHERE payment_id = ANY(%s::uuid[])",
                  payment_ids) == CALLBACK_PAYMENTS
    assert scalar(db, "SELECT count(DISTINCT payment_id) FROM public.payment_transactions"
                      " WHERE payment_id = ANY(%s::uuid[])", payment_ids) == CALLBACK_PAYMENTS
    assert scalar(db, "SELECT count(*) FROM public.enrollments WHERE payment_id = ANY(%s::uuid[])"
                      " AND status = 'approved'", payment_ids) == expected["completed"]
    # The deliveries overlapped every run and every state in between.
    phases = {phase for phase, *_ in sender.results}
    assert len(phases) == 2 * len(DRILL), sorted(phases)


def expected_checkout(on: set[str]) -> dict[str, tuple[int, str]]:
    """(status, what answers) per client. nginx refuses outsiders site-wide first (lockdown 403,
    maintenance page 503), then checkout with its own JSON while payments are stopped; the app
    takes no new payment while any switch is on, and says payments_stopped."""
    if "lockdown" in on:
        outsider = (403, "edge page")
    elif "maintenance" in on:
        outsider = (503, "maintenance page")
    elif "payments_stopped" in on:
        outsider = (503, "payments_stopped")
    else:
        outsider = (201, "accepted")
    inside = (503, "payments_stopped") if on else (201, "accepted")
    return {"checkout outsider": outsider, "checkout operator": inside, "checkout at the app": inside}


def verdict(seen: Seen) -> tuple[int, str]:
    if seen.status == 201 and seen.is_json and "paylink_id" in seen.json():
        return (201, "accepted")
    if seen.is_json:
        return (seen.status, seen.error() or "?")
    if seen.status == 503 and "down for maintenance" in seen.body.lower() and seen.retry_after:
        return (503, "maintenance page")
    return (seen.status, "edge page")


def test_checkout_is_refused_exactly_while_switches_say_so(drill):
    table = []
    for step in drill.steps:
        for who, wanted in expected_checkout(step.on).items():
            got = verdict(step.seen[who])
            table.append((step.command, who, wanted, got))
    assert [row for row in table if row[2] != row[3]] == [], "\n".join(map(str, table))
    # Payments came back after payment:resume and after system:recover, at both layers.
    for index in (1, len(DRILL) - 1):
        assert drill.steps[index].on == set()
        assert verdict(drill.steps[index].seen["checkout outsider"]) == (201, "accepted")
        assert verdict(drill.steps[index].seen["checkout at the app"]) == (201, "accepted")
    stopped = drill.steps[0].seen["checkout outsider"].json()
    assert stopped["error"] == "payments_stopped" and "message" in stopped


def test_each_switch_holds_after_its_own_reload(drill):
    """Every edge verdict of the drill held from the first reload: a switch whose file was written
    but whose reload did not take (nginx serving the previous state until the procedure reloaded
    it once more) says so in its row, and counts as a regression here."""
    rows = []
    for step in drill.steps:
        reports = sorted(step.run.run_dir.glob("switch-*.json")) + sorted(step.run.run_dir.glob("system-recover.json"))
        assert len(reports) == 1, (step.command, reports)
        rows += [(step.command, row) for row in json.loads(reports[0].read_text())["rows"]
                 if row["component"].startswith("edge ")]
    assert len(rows) == len(drill.steps) + 2, rows  # system:recover has a row per switch
    assert [(command, row) for command, row in rows
            if row["state"] == "down" or row["detail"] or not row["value"].startswith("serves ")] == []


def test_maintenance_and_lockdown_refuse_outsiders_only(drill):
    problems = []
    for step in drill.steps:
        seen = step.seen
        site = 403 if "lockdown" in step.on else 503 if "maintenance" in step.on else 200
        checks = {
            "site outsider": seen["site outsider"].status == site,
            "site operator": seen["site operator"].status == 200,
            "probe header": seen["site operator as outsider"].status == site,
            "health outsider": seen["health outsider"].status == 200,
            "health operator": seen["health operator"].status == 200,
            "switches hidden": seen["switches outsider"].status == 404,
            "edge serves": seen["switches operator"].json() == {name: int(name in step.on) for name in SWITCHES},
            "database holds": seen["database"] == {name: name in step.on for name in SWITCHES},
        }
        if site == 503:
            checks["maintenance page"] = verdict(seen["site outsider"]) == (503, "maintenance page")
            checks["retry after"] = seen["site outsider"].retry_after == "300"
        problems += [f"{step.command} ({sorted(step.on)}): {name}" for name, ok in checks.items() if not ok]
    assert problems == []
    # Webhooks passed while maintenance and lockdown were on, during and after those runs.
    phases = Counter(phase for phase, _, status, _ in drill.sender.results if status == 200)
    assert phases["5 during security:lockdown"] > 0 and phases["3 during system:maintenance-mode"] > 0
    assert phases["3 after system:maintenance-mode (maintenance)"] > 0
    assert phases["5 after security:lockdown (lockdown, maintenance, payments_stopped)"] > 0


def test_lockdown_ends_sessions_and_keeps_evidence(drill, db):
    lockdown = next(step for step in drill.steps if step.command == "security:lockdown")
    assert lockdown.seen["sessions"] == 0
    assert lockdown.seen["live refresh tokens"] == 0
    evidence = json.loads((lockdown.run.run_dir / "lockdown-evidence-database.json").read_text())
    assert evidence["sessions"] >= 3  # taken before the sessions were ended
    assert {row["name"] for row in evidence["switches"]} == set(SWITCHES)
    event = db.execute("SELECT details FROM public.security_events WHERE event_type = 'lockdown'"
                       " ORDER BY created_at DESC LIMIT 1").fetchone()[0]
    assert event["run_id"] == lockdown.run.run_dir.name
    assert event["sessions_ended"] >= 3 and event["reason"] == "drill-lockdown"


def test_recover_settles_a_lost_callback_exactly_once(drill, sandbox, db):
    payment = drill.dropped
    recover = drill.steps[-1]
    assert scalar(db, "SELECT status FROM public.payments WHERE id = %s", payment["payment_id"]) == "completed"
    receipts = db.execute("SELECT status, source FROM payops.webhook_receipts WHERE paylink_id = %s",
                          (payment["paylink_id"],)).fetchall()
    assert receipts == [("SUCCESS", "reconcile")]
    report = json.loads((recover.run.run_dir / "system-recover.json").read_text())
    settled = {item["paylink_id"]: item for item in report["details"]["reconciliation"]}
    assert settled[payment["paylink_id"]]["result"] == "applied"

    # The gateway works again and delivers the callback late: a duplicate, nothing applied twice.
    late = callback_for(payment, "SUCCESS")
    with client(OUTSIDER) as gateway:
        answer = ask(gateway, "POST", sandbox["edge_url"] + WEBHOOK, data=late.body.encode(),
                     headers={"Content-Type": "application/json", "ik-appid": sandbox["ikhokha_app_id"],
                              "ik-sign": sign(sandbox["ikhokha_app_secret"], WEBHOOK, late.body)})
    assert (answer.status, answer.json()) == (200, {"result": "duplicate"})
    assert scalar(db, "SELECT count(*) FROM payops.webhook_receipts WHERE paylink_id = %s",
                  payment["paylink_id"]) == 1
    assert scalar(db, "SELECT count(*) FROM public.payment_transactions WHERE payment_id = %s",
                  payment["payment_id"]) == 1


def test_the_drill_is_audited_without_secrets(drill, sandbox, run_env):
    log = Path(run_env["PAYOPS_AUDIT_LOG"])
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for index, step in enumerate(drill.steps):
        run_id = step.run.run_dir.name
        own = [line for line in lines if line.get("run_id") == run_id]
        starts = [line for line in own if line["event"] == "run_start"]
        ends = [line for line in own if line["event"] == "run_end"]
        assert len(starts) == 1 and len(ends) == 1, (step.command, len(starts), len(ends))
        assert starts[0]["command"] == step.command and starts[0]["operator"] == DRILL_OPERATOR
        assert starts[0]["source"] == "payops"
        assert ends[0]["result"] == "successful"
        tasks = [line for line in own if line["event"] == "task" and not line.get("skipped")]
        # The edge role's one task per switch (the file, the test, the reload, the observation from
        # outside), named by the role's fully qualified name since the collection.
        edge = [line for line in tasks if line["host"] == "web-1"
                and line["task"] == f"{EDGE_ROLE} : Edge | Set the switch, reload nginx and observe it from outside"]
        assert [line["module"] for line in edge] == [EDGE_SWITCH] * len(edge), step.command
        database = [line for line in tasks
                    if line.get("module", "").endswith("payops_switch") and "query" not in json.dumps(line["args"])]
        # system:recover lifts the three switches at the edge, each in turn, and in the database
        # those that were on there when it started (the others it leaves alone: nothing to change).
        recover = step.command == "system:recover"
        assert len(edge) == (3 if recover else 1), step.command
        assert len(database) == (len(drill.steps[index - 1].on) if recover else 1), step.command
    verify = subprocess.run([sys.executable, "-m", "payops.cli", "audit", "verify", str(log)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    secrets = {sandbox["postgres_password"], sandbox["ikhokha_app_secret"], sandbox["aws_secret_access_key"]}
    places = [log, *(path for step in drill.steps for path in step.run.run_dir.rglob("*") if path.is_file())]
    leaks = [(str(path), secret[:4] + "...") for path in places
             for secret in secrets if secret in path.read_text(errors="replace")]
    assert leaks == []
    assert not any(secret in step.run.output for step in drill.steps for secret in secrets)
