"""The iKhokha simulator: the iK Pay API on loopback, with signed callbacks and injectable faults.

    python -m payops.sandbox.ikhokha --config PATH
    config: {host, port, app_id, app_secret, data_path, callback_attempts=5, callback_backoff_seconds=0.5}

The API (under /public-api/v1/api, every call signed with IK-APPID and IK-SIGN):
    POST /payment                              create a paylink
    GET  /getStatus/{paylinkID}                its status: PENDING, SUCCESS or FAILURE
    GET  /payments/history?startDate=&endDate= paylinks created in that range of days (YYYY-MM-DD)

The admin API (under /_sim, unsigned, loopback clients only):
    POST /_sim/paylinks/{id}/pay | /fail   settle it and deliver the signed callback (background)
    GET  /_sim/paylinks[/{id}]             state and callback delivery attempts
    GET  /_sim/faults, PUT /_sim/faults    {latency_ms, error_rate, drop_callbacks, bad_callback_signature};
                                           PUT replaces them all (absent keys go back to their default)
    GET  /_sim/health

The signing scheme is implemented here on its own, from iKhokha's published examples, and not
imported from payops' client: a bug shared by both would otherwise pass every test.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from html import escape as html_escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from payops.sandbox.httpserver import (
    ConfigError,
    HTTPError,
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
    text_response,
)

API_PREFIX = "/public-api/v1/api"
CALLBACK_TIMEOUT_SECONDS = 10
DEFAULTS = {"callback_attempts": 5, "callback_backoff_seconds": 0.5}


# --- signing --------------------------------------------------------------------------------------

def escape_for_signing(message: str) -> str:
    """A backslash before every backslash, double and single quote; NUL becomes the two characters \\0."""
    out = []
    for char in message:
        if char in ("\\", '"', "'"):
            out.append("\\" + char)
        elif char == "\0":
            out.append("\\0")
        else:
            out.append(char)
    return "".join(out)


def ik_signature(secret: str, path: str, body: str = "") -> str:
    message = escape_for_signing(path + body)
    return hmac.new(secret.strip().encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def signature_matches(secret: str, path: str, body: str, presented: str) -> bool:
    expected = ik_signature(secret, path, body)
    return hmac.compare_digest(expected.encode("ascii"), presented.strip().lower().encode("utf-8", "replace"))


# --- state ----------------------------------------------------------------------------------------

@dataclass
class Faults:
    latency_ms: int = 0
    error_rate: float = 0.0
    drop_callbacks: bool = False
    bad_callback_signature: bool = False

    @classmethod
    def parse(cls, payload: Any) -> Faults:
        if not isinstance(payload, dict):
            raise HTTPError(400, "invalid_faults", "faults must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise HTTPError(400, "invalid_faults", f"unknown fault(s): {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(known))}")
        faults = cls()
        if "latency_ms" in payload:
            value = payload["latency_ms"]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 60000:
                raise HTTPError(400, "invalid_faults", "latency_ms must be an integer from 0 to 60000")
            faults.latency_ms = value
        if "error_rate" in payload:
            value = payload["error_rate"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise HTTPError(400, "invalid_faults", "error_rate must be a number from 0 to 1")
            faults.error_rate = float(value)
        for name in ("drop_callbacks", "bad_callback_signature"):
            if name in payload:
                if not isinstance(payload[name], bool):
                    raise HTTPError(400, "invalid_faults", f"{name} must be true or false")
                setattr(faults, name, payload[name])
        return faults


class PaylinkStore:
    """Paylinks and callback deliveries in sqlite, so that a restarted simulator keeps them.

    One connection, serialised by a lock: the simulator's load is small and sqlite prefers one
    writer anyway.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # No fsync per commit: a crashed simulator process still keeps every paylink (the WAL is
        # in the OS's cache); only a power cut could lose the last ones. Bursts of callbacks need it.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS paylinks (
                paylink_id TEXT PRIMARY KEY,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                status TEXT NOT NULL,
                amount INTEGER NOT NULL,
                currency TEXT NOT NULL,
                mode TEXT NOT NULL,
                external_transaction_id TEXT,
                callback_url TEXT NOT NULL,
                request TEXT NOT NULL,
                callback_state TEXT
            );
            CREATE INDEX IF NOT EXISTS paylinks_created_at ON paylinks (created_at);
            CREATE TABLE IF NOT EXISTS deliveries (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                paylink_id TEXT NOT NULL,
                status TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                at TEXT NOT NULL,
                http_status INTEGER,
                error TEXT,
                ok INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS deliveries_paylink ON deliveries (paylink_id);
        """)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, request_body: dict[str, Any]) -> dict[str, Any]:
        paylink_id = "PL" + secrets.token_hex(12)
        now = _now()
        with self._lock:
            self._db.execute(
                "INSERT INTO paylinks (paylink_id, created_at, updated_at, status, amount, currency, mode,"
                " external_transaction_id, callback_url, request) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (paylink_id, now, now, "PENDING", request_body["amount"], request_body["currency"],
                 request_body["mode"], request_body.get("externalTransactionID"),
                 request_body["urls"]["callbackUrl"], json.dumps(request_body)),
            )
        return self.get(paylink_id)  # type: ignore[return-value]

    def get(self, paylink_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM paylinks WHERE paylink_id = ?", (paylink_id,)).fetchone()
        return dict(row) if row else None

    def settle(self, paylink_id: str, status: str, callback_state: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE paylinks SET status = ?, updated_at = ?, callback_state = ? WHERE paylink_id = ?",
                (status, _now(), callback_state, paylink_id))

    def set_callback_state(self, paylink_id: str, state: str) -> None:
        with self._lock:
            self._db.execute("UPDATE paylinks SET callback_state = ? WHERE paylink_id = ?",
                             (state, paylink_id))

    def record_delivery(self, paylink_id: str, status: str, attempt: int, http_status: int | None,
                        error: str | None, ok: bool) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO deliveries (paylink_id, status, attempt, at, http_status, error, ok)"
                " VALUES (?,?,?,?,?,?,?)",
                (paylink_id, status, attempt, _now(), http_status, error, int(ok)))

    def deliveries(self, paylink_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT status, attempt, at, http_status, error, ok FROM deliveries"
                " WHERE paylink_id = ? ORDER BY id", (paylink_id,)).fetchall()
        return [{**dict(row), "ok": bool(row["ok"])} for row in rows]

    def between(self, start: str, end: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM paylinks WHERE created_at >= ? AND created_at < ? ORDER BY created_at",
                (start, end)).fetchall()
        return [dict(row) for row in rows]

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM paylinks ORDER BY created_at").fetchall()
        return [dict(row) for row in rows]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# --- the service ----------------------------------------------------------------------------------

@dataclass
class SimulatorConfig:
    host: str
    port: int
    app_id: str
    app_secret: str
    data_path: str
    callback_attempts: int = 5
    callback_backoff_seconds: float = 0.5


class Simulator:
    def __init__(self, config: SimulatorConfig, logger: logging.Logger) -> None:
        self.config = config
        self.logger = logger
        self.store = PaylinkStore(Path(config.data_path))
        self._faults = Faults()
        self._faults_lock = threading.Lock()
        # One opener for every callback: building one loads the CA store, which holds the GIL for
        # milliseconds and starved the server under a burst of callbacks. No proxy from the
        # environment: callbacks go straight to the callback URL, as iKhokha's would.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def faults(self) -> Faults:
        with self._faults_lock:
            return Faults(**asdict(self._faults))

    def set_faults(self, faults: Faults) -> None:
        with self._faults_lock:
            self._faults = faults

    # --- the iK Pay API ---

    def _api_guard(self, request: Request, body: str) -> None:
        """Injected faults first (as a slow or failing gateway would behave), then the signature."""
        faults = self.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.error_rate and random.random() < faults.error_rate:  # noqa: S311 - fault injection
            status = random.choice((500, 503))  # noqa: S311
            raise _ik_error(status, "simulated gateway error (fault injection)")
        app_id = request.headers.get("ik-appid", "")
        signature = request.headers.get("ik-sign", "")
        if not app_id or not signature:
            raise _ik_error(401, "missing IK-APPID or IK-SIGN header")
        if not hmac.compare_digest(app_id.strip().encode("utf-8", "replace"),
                                   self.config.app_id.strip().encode("utf-8")):
            raise _ik_error(401, "unknown application id")
        if not signature_matches(self.config.app_secret, request.raw_path, body, signature):
            raise _ik_error(401, "invalid signature")

    def create_payment(self, request: Request) -> Response:
        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise _ik_error(400, "the request body is not UTF-8") from None
        self._api_guard(request, body)
        try:
            payload = json.loads(body)
        except ValueError:
            raise _ik_error(400, "the request body is not valid JSON") from None
        _validate_payment_request(payload)
        paylink = self.store.create(payload)
        base = f"http://{self.config.host}:{self.config.port}"
        return json_response(200, {
            "responseCode": "00",
            "message": "Paylink created",
            "paylinkUrl": f"{base}/pay/{paylink['paylink_id']}",
            "paylinkID": paylink["paylink_id"],
            "externalTransactionID": paylink["external_transaction_id"],
        })

    def get_status(self, request: Request) -> Response:
        self._api_guard(request, "")
        paylink = self.store.get(request.params["paylink_id"])
        if paylink is None:
            raise _ik_error(404, "paylink not found")
        return json_response(200, {"responseCode": "00", "message": "OK", **_public_paylink(paylink)})

    def history(self, request: Request) -> Response:
        self._api_guard(request, "")
        start = _parse_day(request.query.get("startDate"), "startDate")
        end = _parse_day(request.query.get("endDate"), "endDate")
        if end < start:
            raise _ik_error(400, "endDate is before startDate")
        rows = self.store.between(f"{start.isoformat()}T00:00:00",
                                  f"{(end + timedelta(days=1)).isoformat()}T00:00:00")
        return json_response(200, {
            "responseCode": "00",
            "message": "OK",
            "startDate": start.isoformat(),
            "endDate": end.isoformat(),
            "payments": [_public_paylink(row) for row in rows],
        })

    def checkout_page(self, request: Request) -> Response:
        paylink = self.store.get(request.params["paylink_id"])
        if paylink is None:
            raise HTTPError(404, "not_found", "no such paylink")
        pid = html_escape(paylink["paylink_id"])
        amount = paylink["amount"] / 100
        page = (
            f"<!doctype html><title>iKhokha simulator</title><h1>Paylink {pid}</h1>"
            f"<p>{html_escape(paylink['currency'])} {amount:.2f} &mdash; {html_escape(paylink['status'])}</p>"
            f"<form method=post action=/_sim/paylinks/{pid}/pay><button>Pay</button></form>"
            f"<form method=post action=/_sim/paylinks/{pid}/fail><button>Fail</button></form>"
        )
        return text_response(200, page, "text/html; charset=utf-8")

    # --- the admin API ---

    def settle(self, request: Request, outcome: str) -> Response:
        _require_loopback(request)
        paylink_id = request.params["paylink_id"]
        paylink = self.store.get(paylink_id)
        if paylink is None:
            raise HTTPError(404, "not_found", f"no such paylink: {paylink_id}")
        faults = self.faults
        state = "dropped" if faults.drop_callbacks else "queued"
        self.store.settle(paylink_id, outcome, state)
        if not faults.drop_callbacks:
            threading.Thread(
                target=self._deliver, args=(paylink, outcome, faults.bad_callback_signature),
                name=f"callback-{paylink_id}", daemon=True,
            ).start()
        return json_response(200, {"paylinkID": paylink_id, "status": outcome, "callback": state,
                                   "callbackUrl": paylink["callback_url"]})

    def _deliver(self, paylink: dict[str, Any], outcome: str, bad_signature: bool) -> None:
        try:
            self._deliver_with_retries(paylink, outcome, bad_signature)
        except Exception:
            self.logger.exception("callback delivery for %s stopped", paylink["paylink_id"])

    def _deliver_with_retries(self, paylink: dict[str, Any], outcome: str, bad_signature: bool) -> None:
        paylink_id = paylink["paylink_id"]
        body = json.dumps({
            "paylinkID": paylink_id,
            "status": outcome,
            "externalTransactionID": paylink["external_transaction_id"],
            "responseCode": "00" if outcome == "SUCCESS" else "01",
        }, separators=(",", ":"))
        url = paylink["callback_url"]
        secret = self.config.app_secret + ("-wrong" if bad_signature else "")
        signature = ik_signature(secret, urlsplit(url).path or "/", body)
        attempts = max(1, int(self.config.callback_attempts))
        for attempt in range(1, attempts + 1):
            http_status, error = _post(self._opener, url, body, {"ik-appid": self.config.app_id, "ik-sign": signature})
            ok = http_status is not None and 200 <= http_status < 300
            self.store.record_delivery(paylink_id, outcome, attempt, http_status, error, ok)
            if ok:
                self.store.set_callback_state(paylink_id, "delivered")
                return
            self.logger.info("callback for %s attempt %d/%d failed: %s", paylink_id, attempt, attempts,
                             error or f"HTTP {http_status}")
            if attempt < attempts:
                time.sleep(self.config.callback_backoff_seconds * 2 ** (attempt - 1))
        self.store.set_callback_state(paylink_id, "failed")

    def paylink_state(self, request: Request) -> Response:
        _require_loopback(request)
        paylink = self.store.get(request.params["paylink_id"])
        if paylink is None:
            raise HTTPError(404, "not_found", f"no such paylink: {request.params['paylink_id']}")
        return json_response(200, {
            **_public_paylink(paylink),
            "mode": paylink["mode"],
            "callbackUrl": paylink["callback_url"],
            "callback": paylink["callback_state"],
            "deliveries": self.store.deliveries(paylink["paylink_id"]),
        })

    def list_paylinks(self, request: Request) -> Response:
        _require_loopback(request)
        rows = self.store.all()
        return json_response(200, {"count": len(rows), "paylinks": [_public_paylink(row) for row in rows]})

    def get_faults(self, request: Request) -> Response:
        _require_loopback(request)
        return json_response(200, asdict(self.faults))

    def put_faults(self, request: Request) -> Response:
        _require_loopback(request)
        faults = Faults.parse(request.json())
        self.set_faults(faults)
        self.logger.info("faults set: %s", asdict(faults))
        return json_response(200, asdict(faults))

    def health(self, _request: Request) -> Response:
        return json_response(200, {"status": "ok", "faults": asdict(self.faults)})

    def router(self) -> Router:
        router = Router()
        router.add("POST", f"{API_PREFIX}/payment", self.create_payment)
        router.add("GET", f"{API_PREFIX}/getStatus/{{paylink_id}}", self.get_status)
        router.add("GET", f"{API_PREFIX}/payments/history", self.history)
        router.add("GET", "/pay/{paylink_id}", self.checkout_page)
        router.add("GET", "/_sim/health", self.health)
        router.add("GET", "/_sim/paylinks", self.list_paylinks)
        router.add("GET", "/_sim/paylinks/{paylink_id}", self.paylink_state)
        router.add("POST", "/_sim/paylinks/{paylink_id}/pay", lambda r: self.settle(r, "SUCCESS"))
        router.add("POST", "/_sim/paylinks/{paylink_id}/fail", lambda r: self.settle(r, "FAILURE"))
        router.add("GET", "/_sim/faults", self.get_faults)
        router.add("PUT", "/_sim/faults", self.put_faults)
        return router


def _ik_error(status: int, message: str) -> HTTPError:
    # iKhokha answers errors with a responseCode other than "00" and a message.
    error = HTTPError(status, "ikhokha_error", message)
    error.code = "ikhokha_error"
    error.extra = {"responseCode": str(status)}
    return error


def _public_paylink(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "paylinkID": row["paylink_id"],
        "status": row["status"],
        "amount": row["amount"],
        "currency": row["currency"],
        "externalTransactionID": row["external_transaction_id"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def _validate_payment_request(payload: Any) -> None:
    if not isinstance(payload, dict):
        raise _ik_error(400, "the request body must be a JSON object")
    amount = payload.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise _ik_error(400, "amount must be a positive integer number of cents")
    if payload.get("currency") != "ZAR":
        raise _ik_error(400, "currency must be ZAR")
    if payload.get("mode") not in ("live", "test"):
        raise _ik_error(400, "mode must be live or test")
    external_id = payload.get("externalTransactionID")
    if not isinstance(external_id, str) or not external_id.strip():
        raise _ik_error(400, "externalTransactionID is required")
    urls = payload.get("urls")
    if not isinstance(urls, dict):
        raise _ik_error(400, "urls is required, with urls.callbackUrl")
    callback = urls.get("callbackUrl")
    if not isinstance(callback, str) or urlsplit(callback).scheme not in ("http", "https") \
            or not urlsplit(callback).netloc:
        raise _ik_error(400, "urls.callbackUrl must be an http(s) URL")


def _parse_day(value: str | None, name: str) -> date:
    if not value:
        raise _ik_error(400, f"{name} is required (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise _ik_error(400, f"{name} must be a date, YYYY-MM-DD") from None


def _require_loopback(request: Request) -> None:
    try:
        loopback = ipaddress.ip_address(request.remote_addr).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise HTTPError(403, "forbidden", "the simulator's admin API answers loopback clients only")


def _post(opener: urllib.request.OpenerDirector, url: str, body: str,
          headers: dict[str, str]) -> tuple[int | None, str | None]:
    request = urllib.request.Request(  # noqa: S310 - the callback URL is http(s), checked on create
        url, data=body.encode("utf-8"), method="POST",
        headers={"Content-Type": "application/json", **headers})
    try:
        with opener.open(request, timeout=CALLBACK_TIMEOUT_SECONDS) as response:
            response.read()
            return response.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(exc).__name__}: {reason}"


def main(argv: list[str] | None = None) -> int:
    parser = config_argument_parser("payops.sandbox.ikhokha", "The sandbox's iKhokha simulator.")
    args = parser.parse_args(argv)
    logger = setup_logging("ikhokha")
    try:
        raw = load_config(args.config, ["host", "port", "app_id", "app_secret", "data_path"], DEFAULTS)
        config = SimulatorConfig(
            host=raw["host"], port=int(raw["port"]), app_id=str(raw["app_id"]),
            app_secret=str(raw["app_secret"]), data_path=raw["data_path"],
            callback_attempts=int(raw["callback_attempts"]),
            callback_backoff_seconds=float(raw["callback_backoff_seconds"]),
        )
    except (ConfigError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    simulator = Simulator(config, logger)
    app = WSGIApp(simulator.router(), logger)
    serve(make_server(config.host, config.port, app), logger, on_stop=simulator.store.close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
