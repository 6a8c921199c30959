"""The reference BetaSkill app: the payments API and iKhokha webhook receiver behind the sandbox's nginx.

    python -m payops.sandbox.app --config PATH [--release-dir DIR]
    config: {host, port, dsn, ikhokha_url, ikhokha_app_id, ikhokha_app_secret, public_url, version,
             environment, db_pool_size=10}

With --release-dir (what a release's bin/betaskill-app passes: its own release folder), the app is
that release: the version it reports is the one in DIR/release.json (the config's `version` is the
fallback without a release), and a setting the release lists in `requires_settings` that the
config lacks makes /api/health answer 503 "misconfigured" (the other routes still answer).

    GET  /api/health               200 when the database answers (503 otherwise), with the switches
    POST /api/checkout             a pending payment + enrollment and an iKhokha paylink
    POST /api/webhooks/ikhokha     a signed gateway callback, applied exactly once
    GET  /metrics                  Prometheus text (betaskill_* metrics)

The app logs JSON lines to stderr (payops.sandbox.httpserver.JsonLineFormatter): one a request with
request_id (the edge's X-Request-ID), route, status, duration_ms, db_ms, gateway_ms and, where there
is one, payment_reference and paylink_id; one a gateway call; warnings and errors.

Webhooks are processed whatever the switches say: a callback is money that has moved. Every
payment change a gateway result causes happens in one database function,
payops.apply_gateway_result (schema/migrations), which payops' reconciliation calls too.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import queue
import re
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import requests
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from payops.sandbox.httpserver import (
    ConfigError,
    HTTPError,
    Request,
    Response,
    Router,
    WSGIApp,
    config_argument_parser,
    current_trace,
    json_response,
    load_config,
    make_server,
    serve,
    setup_logging,
    timed,
)

SWITCHES = ("payments_stopped", "maintenance", "lockdown")
# What the database raises for a new pending payment while payments_stopped is on (docs/database.md).
PAYMENTS_STOPPED_SQLSTATE = "PS001"
STOPPED_MESSAGE = "Payments are temporarily stopped. No payment was taken; please try again later."
WEBHOOK_PATH = "/api/webhooks/ikhokha"
GATEWAY_TIMEOUT = (3.05, 15)
POOL_WAIT_SECONDS = 10
BACKLOG_AGE = "5 minutes"
BACKLOG_SQL = (
    "SELECT count(*) FROM public.payments WHERE status = 'pending' AND gateway_response ? 'paylinkID'"
    " AND created_at < now() - interval '5 minutes'"
)
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# --- iKhokha request signing (the client side; the simulator has its own, on purpose) -------------

def ikhokha_sign(secret: str, path: str, body: str = "") -> str:
    """IK-SIGN: lowercase hex HMAC-SHA256, keyed by the stripped secret, over the escaped path + body."""
    message = (path + body).replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'").replace("\0", "\\0")
    return hmac.new(secret.strip().encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def callback_signature_valid(secret: str, path: str, raw_body: str, presented: str) -> bool:
    """Whether `presented` signs path + the raw body, or path + the body re-serialised compactly
    (some integrations report that iKhokha signs the JSON it re-serialised, not the bytes it sent)."""
    candidates = [raw_body]
    try:
        parsed = json.loads(raw_body)
    except ValueError:
        parsed = None
    if parsed is not None:
        for ensure_ascii in (False, True):
            form = json.dumps(parsed, separators=(",", ":"), ensure_ascii=ensure_ascii)
            if form not in candidates:
                candidates.append(form)
    presented_bytes = presented.strip().lower().encode("utf-8", "replace")
    matched = False
    for body in candidates:
        # Every candidate is compared, so the time taken does not say which one matched.
        matched |= hmac.compare_digest(ikhokha_sign(secret, path, body).encode("ascii"), presented_bytes)
    return matched


# --- database ---------------------------------------------------------------------------------------

class DatabaseUnavailable(Exception):
    pass


class ConnectionPool:
    """A small bounded pool of autocommit connections (psycopg_pool is not a dependency).

    Bounded so that a burst of a few hundred callbacks queues for a handful of connections instead
    of opening hundreds against PostgreSQL's max_connections. A broken connection is dropped.
    """

    def __init__(self, dsn: str, size: int) -> None:
        self.dsn = dsn
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self, wait: float = POOL_WAIT_SECONDS) -> Iterator[psycopg.Connection]:
        """A connection; the request's log line counts the time it is waited for and held as db_ms."""
        with timed("db"), self._connection(wait) as conn:
            yield conn

    @contextmanager
    def _connection(self, wait: float) -> Iterator[psycopg.Connection]:
        if not self._slots.acquire(timeout=wait):
            raise DatabaseUnavailable(f"no database connection free within {wait:.0f} s")
        conn: psycopg.Connection | None = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                try:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3,
                                           application_name="betaskill-sandbox-app")
                except psycopg.OperationalError as exc:
                    raise DatabaseUnavailable(_first_line(exc)) from None
            try:
                yield conn
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable(_first_line(exc)) from None
        finally:
            if conn is not None:
                if conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.close()
                else:
                    self._idle.put(conn)
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# --- the app ----------------------------------------------------------------------------------------

@dataclass
class AppConfig:
    host: str
    port: int
    dsn: str
    ikhokha_url: str
    ikhokha_app_id: str
    ikhokha_app_secret: str
    public_url: str
    version: str
    environment: str
    db_pool_size: int = 10
    release: str | None = None  # the release id, when the app runs from a release folder
    # Why the app cannot serve as this release (a setting it needs is missing), or None.
    misconfigured: str | None = None


class Metrics:
    """The betaskill_* metrics: request counters here, database gauges computed at scrape time."""

    def __init__(self, app: BetaSkillApp) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("betaskill_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)
        self.duration = Histogram("betaskill_http_request_duration_seconds", "HTTP request duration",
                                  ["route"], registry=self.registry)
        self.processed = Counter("betaskill_payments_processed", "Gateway callbacks applied to a payment",
                                 ["status"], registry=self.registry)
        # Both series exist at 0 from the start: rate() over a counter that appears already at 3
        # sees no increase, and a success ratio with no "completed" series is no ratio at all.
        for status in ("completed", "failed"):
            self.processed.labels(status)
        self.registry.register(_DatabaseCollector(app))

    def observe(self, request: Request, status: int, duration: float) -> None:
        self.requests.labels(request.route, request.method, str(status)).inc()
        self.duration.labels(request.route).observe(duration)


class _DatabaseCollector:
    def __init__(self, app: BetaSkillApp) -> None:
        self.app = app

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("betaskill_database_up", "1 when the app's database answers")
        try:
            snapshot = self.app.database_snapshot()
        except DatabaseUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        payments = GaugeMetricFamily("betaskill_payments", "Payments by status", labels=["status"])
        for status in ("pending", "completed", "failed"):
            payments.add_metric([status], snapshot["payments"].get(status, 0))
        yield payments
        backlog = GaugeMetricFamily(
            "betaskill_webhook_backlog",
            f"Pending payments with a paylink, older than {BACKLOG_AGE}, whose callback has not come")
        backlog.add_metric([], snapshot["backlog"])
        yield backlog
        switches = GaugeMetricFamily("betaskill_switch_enabled", "1 when a payops switch is on",
                                     labels=["switch"])
        for name in SWITCHES:
            switches.add_metric([name], 1 if snapshot["switches"].get(name, {}).get("enabled") else 0)
        yield switches


class BetaSkillApp:
    def __init__(self, config: AppConfig, logger: logging.Logger) -> None:
        self.config = config
        self.logger = logger
        self.pool = ConnectionPool(config.dsn, config.db_pool_size)
        self.metrics = Metrics(self)
        # One session for every request thread (the server starts a thread per request): a new
        # session per call rebuilds its TLS context, milliseconds of CPU under the GIL. urllib3's
        # connection pool is thread-safe; the gateway sets no cookies for the session to share.
        self.gateway = requests.Session()
        self.gateway.trust_env = False  # the gateway URL is configured; no proxy from the environment
        self.gateway.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))
        self.gateway.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=32))

    # --- reads ---

    def read_switches(self, conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
        rows = conn.execute("SELECT name, enabled, reason, set_by, set_at FROM payops.switches").fetchall()
        switches = {name: {"enabled": False, "reason": None, "set_by": None, "set_at": None}
                    for name in SWITCHES}
        for name, enabled, reason, set_by, set_at in rows:
            switches[name] = {"enabled": bool(enabled), "reason": reason, "set_by": set_by,
                              "set_at": set_at.isoformat() if set_at else None}
        return switches

    def database_snapshot(self) -> dict[str, Any]:
        with self.pool.connection(wait=5) as conn:
            payments = dict(conn.execute(
                "SELECT status, count(*) FROM public.payments GROUP BY status").fetchall())
            backlog = conn.execute(BACKLOG_SQL).fetchone()[0]
            switches = self.read_switches(conn)
        return {"payments": payments, "backlog": backlog, "switches": switches}

    # --- handlers ---

    def health(self, _request: Request) -> Response:
        base: dict[str, Any] = {"version": self.config.version, "environment": self.config.environment}
        if self.config.release is not None:
            base["release"] = self.config.release
        if self.config.misconfigured:
            return json_response(503, {
                "status": "misconfigured", "checks": {"configuration": self.config.misconfigured}, **base,
            })
        started = time.monotonic()
        try:
            switches = self._with_retry(self.read_switches)
        except DatabaseUnavailable as exc:
            return json_response(503, {
                "status": "down",
                "database": {"reachable": False, "latency_ms": None, "error": str(exc)},
                "switches": None, "maintenance": None, **base,
            })
        latency_ms = round((time.monotonic() - started) * 1000, 1)
        degraded = any(switch["enabled"] for switch in switches.values())
        return json_response(200, {
            "status": "degraded" if degraded else "ok",
            "database": {"reachable": True, "latency_ms": latency_ms},
            "switches": switches,
            "maintenance": switches["maintenance"]["enabled"],
            **base,
        })

    def _with_retry(self, read: Any) -> Any:
        # An idle pooled connection may have died with a database restart: one retry on a new one.
        for attempt in (1, 2):
            try:
                with self.pool.connection(wait=5) as conn:
                    return read(conn)
            except DatabaseUnavailable:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def checkout(self, request: Request) -> Response:
        order = _validate_checkout(request.json())
        reference = f"SKILL-{int(time.time() * 1000)}-{secrets.token_hex(4)}"
        _log_fields(payment_reference=reference)
        try:
            with self.pool.connection() as conn, conn.transaction():
                stopped = [name for name, switch in self.read_switches(conn).items() if switch["enabled"]]
                if stopped:
                    raise HTTPError(503, "payments_stopped", STOPPED_MESSAGE)
                course = conn.execute("SELECT title FROM public.courses WHERE id = %s",
                                      (order["course_id"],)).fetchone()
                if course is None:
                    raise HTTPError(400, "invalid_request", "course_id: no such course", field="course_id")
                payment_id = conn.execute(
                    "INSERT INTO public.payments (user_id, course_id, amount, currency, status,"
                    " payment_method, transaction_reference, payment_gateway, gateway_response)"
                    " VALUES (%s, %s, %s, %s, 'pending', 'card', %s, 'ikhokha', %s) RETURNING id",
                    (order["user_id"], order["course_id"], order["amount"], order["currency"], reference,
                     Jsonb({})),
                ).fetchone()[0]
                _log_fields(payment_id=str(payment_id))
                conn.execute(
                    "INSERT INTO public.enrollments (user_id, course_id, status, payment_status, payment_id)"
                    " VALUES (%s, %s, 'pending', 'pending', %s)",
                    (order["user_id"], order["course_id"], payment_id))
                conn.execute(
                    "INSERT INTO public.audit_logs (user_id, action, table_name, record_id, new_values,"
                    " ip_address) VALUES (%s, 'payment_created', 'payments', %s, %s, %s)",
                    (order["user_id"], str(payment_id),
                     Jsonb({"amount": order["amount"], "transaction_reference": reference}),
                     self._client_ip(request)))
        except DatabaseUnavailable as exc:
            raise HTTPError(503, "database_unavailable", f"the database is unavailable: {exc}") from None
        except psycopg.Error as exc:
            # The database's own stop (schema/migrations/0002): the switch went on after we read it.
            if exc.sqlstate == PAYMENTS_STOPPED_SQLSTATE:
                raise HTTPError(503, "payments_stopped", STOPPED_MESSAGE) from None
            raise

        paylink, error = self._create_paylink(order, reference, course[0])
        try:
            with self.pool.connection() as conn:
                if error is not None:
                    self._record_gateway_failure(conn, payment_id, error)
                else:
                    conn.execute(
                        "UPDATE public.payments SET gateway_response = gateway_response || %s,"
                        " updated_at = now() WHERE id = %s",
                        (Jsonb({k: paylink[k] for k in ("paylinkID", "paylinkUrl", "responseCode")}),
                         payment_id))
        except DatabaseUnavailable as exc:
            raise HTTPError(503, "database_unavailable", f"the database is unavailable: {exc}") from None
        if error is not None:
            raise HTTPError(502, "gateway_error", f"the payment gateway did not create a paylink: {error}",
                            payment_id=str(payment_id))
        return json_response(201, {
            "payment_id": str(payment_id),
            "transaction_reference": reference,
            "paylink_id": paylink["paylinkID"],
            "paylink_url": paylink["paylinkUrl"],
        })

    def _create_paylink(self, order: dict[str, Any], reference: str,
                        title: str) -> tuple[dict[str, Any], str | None]:
        public = self.config.public_url.rstrip("/")
        body = json.dumps({
            "entityID": self.config.ikhokha_app_id,
            "externalEntityID": order["user_id"],
            "amount": order["amount"],
            "currency": order["currency"],
            "requesterUrl": public,
            "description": title,
            "paymentReference": reference,
            "mode": "test",
            "externalTransactionID": reference,
            "urls": {
                "callbackUrl": public + WEBHOOK_PATH,
                "successPageUrl": f"{public}/payment/success?ref={reference}",
                "failurePageUrl": f"{public}/payment/failure?ref={reference}",
                "cancelUrl": f"{public}/payment/cancel?ref={reference}",
            },
        }, separators=(",", ":"))
        url = self.config.ikhokha_url.rstrip("/") + "/payment"
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "IK-APPID": self.config.ikhokha_app_id.strip(),
            "IK-SIGN": ikhokha_sign(self.config.ikhokha_app_secret, urlsplit(url).path, body),
        }
        try:
            with timed("gateway"):
                response = self.gateway.post(url, data=body.encode("utf-8"), headers=headers,
                                             timeout=GATEWAY_TIMEOUT)
        except requests.RequestException as exc:
            self.logger.warning("iKhokha did not answer: %s", type(exc).__name__,
                                extra={"fields": {"event": "gateway_call", "gateway_status": None}})
            return {}, f"{type(exc).__name__} calling iKhokha"
        self.logger.info("iKhokha POST /payment answered %s", response.status_code,
                         extra={"fields": {"event": "gateway_call", "gateway_status": response.status_code,
                                           "payment_reference": reference}})
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code != 200 or answer.get("responseCode") != "00" or not answer.get("paylinkID"):
            message = answer.get("message") if isinstance(answer, dict) else None
            return {}, f"HTTP {response.status_code}, responseCode {answer.get('responseCode')!r}" + (
                f": {message}" if message else "")
        _log_fields(paylink_id=answer["paylinkID"])
        return answer, None

    def _record_gateway_failure(self, conn: psycopg.Connection, payment_id: uuid.UUID, error: str) -> None:
        with conn.transaction():
            conn.execute(
                "UPDATE public.payments SET status = 'failed', updated_at = now(),"
                " gateway_response = gateway_response || %s WHERE id = %s AND status = 'pending'",
                (Jsonb({"error": error}), payment_id))
            conn.execute(
                "UPDATE public.enrollments SET payment_status = 'failed', updated_at = now()"
                " WHERE payment_id = %s AND payment_status = 'pending'", (payment_id,))
            conn.execute(
                "INSERT INTO public.payment_errors (payment_id, error_category, severity, message)"
                " VALUES (%s, 'gateway_error', 'high', %s)", (payment_id, error))

    def webhook(self, request: Request) -> Response:
        raw_body = request.body.decode("utf-8", "replace")
        app_id = request.headers.get("ik-appid", "")
        signature = request.headers.get("ik-sign", "")
        if not app_id or not signature:
            reason = "missing ik-appid or ik-sign header"
        elif not hmac.compare_digest(app_id.strip().encode("utf-8", "replace"),
                                     self.config.ikhokha_app_id.strip().encode("utf-8")):
            reason = "ik-appid does not match"
        elif not callback_signature_valid(self.config.ikhokha_app_secret, request.raw_path, raw_body,
                                          signature):
            reason = "ik-sign does not match"
        else:
            reason = None
        if reason is not None:
            self.logger.warning("webhook rejected: %s", reason,
                                extra={"fields": {"event": "webhook_signature_invalid",
                                                  "client_ip": self._client_ip(request)}})
            self._record_invalid_signature(request, reason)
            raise HTTPError(401, "invalid_signature", f"callback rejected: {reason}")

        try:
            payload = json.loads(raw_body)
        except ValueError:
            raise HTTPError(400, "invalid_json", "the callback body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise HTTPError(400, "invalid_callback", "the callback body must be a JSON object")
        paylink_id = payload.get("paylinkID")
        status = payload.get("status")
        if not isinstance(paylink_id, str) or not paylink_id:
            raise HTTPError(400, "invalid_callback", "paylinkID is required", field="paylinkID")
        if status not in ("SUCCESS", "FAILURE"):
            raise HTTPError(400, "invalid_callback", "status must be SUCCESS or FAILURE", field="status")
        external_id = payload.get("externalTransactionID")
        _log_fields(paylink_id=paylink_id[:100], gateway_result=status,
                    **({"payment_reference": external_id[:100]} if isinstance(external_id, str) else {}))
        try:
            with self.pool.connection() as conn:
                result = conn.execute(
                    "SELECT payops.apply_gateway_result(%s, %s, %s, %s, 'webhook')",
                    (paylink_id, status, external_id if isinstance(external_id, str) else None,
                     Jsonb(payload)),
                ).fetchone()[0]
        except DatabaseUnavailable as exc:
            # 503 makes iKhokha retry: the callback is not lost while the database is away.
            raise HTTPError(503, "database_unavailable", f"the database is unavailable: {exc}") from None
        _log_fields(webhook_result=result)
        if result == "applied":
            self.metrics.processed.labels("completed" if status == "SUCCESS" else "failed").inc()
        return json_response(200, {"result": result})

    def _record_invalid_signature(self, request: Request, reason: str) -> None:
        details: dict[str, Any] = {"reason": reason, "path": request.path,
                                   "user_agent": request.headers.get("user-agent", "")[:200]}
        try:
            payload = json.loads(request.body)
            if isinstance(payload, dict) and isinstance(payload.get("paylinkID"), str):
                details["paylinkID"] = payload["paylinkID"][:100]
        except ValueError:
            pass
        try:
            with self.pool.connection() as conn:
                conn.execute(
                    "INSERT INTO public.security_events (event_type, severity, source_ip, details)"
                    " VALUES ('webhook_signature_invalid', 'high', %s, %s)",
                    (self._client_ip(request), Jsonb(details)))
        except DatabaseUnavailable as exc:
            self.logger.warning("could not record an invalid webhook signature: %s", exc)

    @staticmethod
    def _client_ip(request: Request) -> str:
        """The client's address; X-Real-IP / X-Forwarded-For are believed only from a loopback proxy."""
        try:
            from_proxy = ipaddress.ip_address(request.remote_addr).is_loopback
        except ValueError:
            from_proxy = False
        if from_proxy:
            forwarded = request.headers.get("x-real-ip") or \
                request.headers.get("x-forwarded-for", "").split(",")[-1].strip()
            if forwarded:
                return forwarded[:64]
        return request.remote_addr

    def metrics_page(self, _request: Request) -> Response:
        return Response(200, generate_latest(self.metrics.registry), [("Content-Type", CONTENT_TYPE_LATEST)])

    def close(self) -> None:
        self.gateway.close()
        self.pool.close()

    def router(self) -> Router:
        router = Router()
        router.add("GET", "/api/health", self.health)
        router.add("POST", "/api/checkout", self.checkout)
        router.add("POST", WEBHOOK_PATH, self.webhook)
        router.add("GET", "/metrics", self.metrics_page)
        return router


def _log_fields(**fields: Any) -> None:
    """Add fields (payment_reference, paylink_id, ...) to the current request's log line."""
    trace = current_trace()
    if trace is not None:
        trace.fields.update(fields)


def _validate_checkout(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise HTTPError(400, "invalid_request", "the request body must be a JSON object")

    def invalid(field: str, message: str) -> HTTPError:
        return HTTPError(400, "invalid_request", f"{field}: {message}", field=field)

    order: dict[str, Any] = {}
    for field in ("user_id", "course_id"):
        value = payload.get(field)
        if not isinstance(value, str) or not UUID_RE.match(value):
            raise invalid(field, "required, a UUID")
        order[field] = value.lower()
    amount = payload.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise invalid("amount", "required, a positive integer number of cents")
    order["amount"] = amount
    currency = payload.get("currency", "ZAR")
    if currency != "ZAR":
        raise invalid("currency", "only ZAR is accepted")
    order["currency"] = currency
    email = payload.get("email")
    if email is not None and (not isinstance(email, str) or "@" not in email or len(email) > 320):
        raise invalid("email", "must be an email address")
    order["email"] = email
    return order


def read_release(release_dir: str) -> dict[str, Any]:
    """DIR/release.json: {id, version, requires_settings, ...}; ConfigError when unusable."""
    path = Path(release_dir) / "release.json"
    try:
        release = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the release's {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"the release's {path} is not valid JSON: {exc}") from None
    if not isinstance(release, dict) or not release.get("id"):
        raise ConfigError(f"the release's {path} must be a JSON object with an id")
    required = release.get("requires_settings") or []
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        raise ConfigError(f"requires_settings in {path} must be a list of setting names")
    return release


def missing_settings(release: dict[str, Any], raw: dict[str, Any], config_path: str) -> str | None:
    """What the release needs that the config lacks, as the health check says it, or None."""
    missing = [name for name in release.get("requires_settings") or [] if raw.get(name) in (None, "", [], {})]
    if not missing:
        return None
    word = "setting" if len(missing) == 1 else "settings"
    return f"release {release['id']} needs {word} {', '.join(missing)}, which {config_path} lacks"


def main(argv: list[str] | None = None) -> int:
    parser = config_argument_parser("payops.sandbox.app", "The sandbox's reference BetaSkill app.")
    parser.add_argument("--release-dir", help="the release folder the app runs as (its release.json)")
    args = parser.parse_args(argv)
    logger = setup_logging("app", json_lines=True)
    try:
        raw = load_config(args.config, ["host", "port", "dsn", "ikhokha_url", "ikhokha_app_id",
                                        "ikhokha_app_secret", "public_url"],
                          {"version": "dev", "environment": "local", "db_pool_size": 10})
        release = read_release(args.release_dir) if args.release_dir else None
        config = AppConfig(
            host=raw["host"], port=int(raw["port"]), dsn=raw["dsn"], ikhokha_url=raw["ikhokha_url"],
            ikhokha_app_id=str(raw["ikhokha_app_id"]), ikhokha_app_secret=str(raw["ikhokha_app_secret"]),
            public_url=raw["public_url"], environment=str(raw["environment"]),
            version=str(release.get("version") or release["id"]) if release else str(raw["version"]),
            db_pool_size=int(raw["db_pool_size"]),
            release=str(release["id"]) if release else None,
            misconfigured=missing_settings(release, raw, args.config) if release else None,
        )
    except (ConfigError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    if config.release is not None:
        logger.info("release %s (version %s) from %s", config.release, config.version, args.release_dir)
    if config.misconfigured:
        logger.error("misconfigured: %s; /api/health answers 503", config.misconfigured)
    app = BetaSkillApp(config, logger)
    wsgi = WSGIApp(app.router(), logger, observe=app.metrics.observe)
    serve(make_server(config.host, config.port, wsgi), logger, on_stop=app.close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
