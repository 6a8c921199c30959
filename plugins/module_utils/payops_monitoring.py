# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the health, metrics and alert modules share: percentiles, and JSON over HTTP to Prometheus
and Alertmanager with environment-variable defaults (PROMETHEUS_URL, ALERTMANAGER_URL). Time
windows and ISO times are payops_time's.

The percentile function uses the standard library only, so that unit tests can load this file on
its own.
"""

from __future__ import annotations

import json
import math


def percentile(values, fraction):
    """The fraction-quantile with linear interpolation between ranks (PostgreSQL's percentile_cont)."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= fraction <= 1:
        raise ValueError("a percentile's fraction is between 0 and 1")
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- HTTP to Prometheus and Alertmanager ------------------------------------------------------------

class MonitoringError(Exception):
    """No usable answer: the message names the URL and the reason."""


def prometheus_argument_spec():
    from ansible.module_utils.basic import env_fallback

    return dict(
        prometheus_url=dict(type="str", fallback=(env_fallback, ["PROMETHEUS_URL"]), required=True),
        timeout=dict(type="float", default=10.0),
        validate_certs=dict(type="bool", default=True),
    )


def alertmanager_argument_spec():
    from ansible.module_utils.basic import env_fallback

    return dict(
        alertmanager_url=dict(type="str", fallback=(env_fallback, ["ALERTMANAGER_URL"]), required=True),
        timeout=dict(type="float", default=10.0),
        validate_certs=dict(type="bool", default=True),
    )


def http_json(url, method="GET", payload=None, timeout=10.0, validate_certs=True):
    """(HTTP status, parsed JSON or None). Raises MonitoringError when there is no answer at all."""
    from ansible.module_utils.urls import open_url

    try:
        from urllib.error import HTTPError, URLError
    except ImportError:  # pragma: no cover
        raise
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        response = open_url(url, method=method, data=data, headers=headers, timeout=timeout,
                            validate_certs=validate_certs)
        status, body = response.getcode(), response.read()
    except HTTPError as exc:
        status, body = exc.code, exc.read()
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MonitoringError(f"no answer from {url.split('?')[0]}: {reason}") from None
    try:
        parsed = json.loads(body.decode("utf-8")) if body else None
    except ValueError:
        parsed = None
    return status, parsed


def prometheus_query(base, path, params, timeout=10.0, validate_certs=True):
    """The `data` of a Prometheus API answer, or MonitoringError with Prometheus' own error."""
    from urllib.parse import urlencode

    url = f"{base.rstrip('/')}/api/v1/{path}?{urlencode(params)}"
    status, answer = http_json(url, timeout=timeout, validate_certs=validate_certs)
    if not isinstance(answer, dict) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, dict) else None
        raise MonitoringError(f"Prometheus answered HTTP {status} to {path}: {error or 'no JSON'}")
    return answer["data"]
