#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ikhokha_check
short_description: Prove that iKhokha answers, quickly, over valid TLS, and accepts our credentials
description:
  - iKhokha has no ping endpoint. This module sends signed C(getStatus) requests for a paylink id
    that cannot exist; an answer other than 401/403 (normally 404) proves that the gateway is
    reachable and that it accepted the IK-APPID and IK-SIGN made with our app secret.
  - For an C(https) URL it also reads the server certificate and reports its expiry.
  - "The verdict is one of C(healthy), C(slow) (answered, but the median latency is over
    O(max_latency_ms)), C(credentials_rejected) (401 or 403), C(gateway_error) (5xx),
    C(tls_error), C(unreachable) (no answer, refused, or timed out); RV(state) maps it to
    C(healthy), C(degraded) or C(down)."
  - The module reports; it does not fail on a bad verdict, so that a procedure can show every
    component. It fails only on invalid options.
  - Read-only; check mode runs the same requests.
author: payops contributors (!UNKNOWN)
options:
  samples:
    description: Requests made, one after the other; the latency verdict uses their median.
    type: int
    default: 3
  max_latency_ms:
    description: A median latency above this is C(slow).
    type: float
    default: 2000
  tls_min_days:
    description: A certificate expiring in fewer days than this makes the verdict C(degraded).
    type: int
    default: 14
extends_documentation_fragment:
  - betaskill.payops.ikhokha
"""

EXAMPLES = r"""
- name: Health | iKhokha answers and accepts our credentials
  betaskill.payops.ikhokha_check:
    api_url: "{{ payops_ikhokha_url }}"
    app_id: "{{ payops_ikhokha_app_id }}"
    app_secret: "{{ payops_ikhokha_app_secret }}"
    max_latency_ms: 2000
  register: gateway

- name: Health | Same, with IKHOKHA_API_URL, IKHOKHA_APP_ID and IKHOKHA_APP_SECRET from the environment
  betaskill.payops.ikhokha_check:
    samples: 1
"""

RETURN = r"""
verdict:
  description: healthy, slow, credentials_rejected, gateway_error, tls_error or unreachable.
  returned: always
  type: str
  sample: healthy
state:
  description: The verdict as a report state - healthy, degraded or down.
  returned: always
  type: str
  sample: healthy
credentials_accepted:
  description: True when the gateway answered the signed request with anything but 401/403.
  returned: always
  type: bool
  sample: true
latency_ms:
  description: Median latency of the answered requests, in milliseconds (null when none answered).
  returned: always
  type: float
  sample: 84.2
latencies_ms:
  description: Each request's latency.
  returned: always
  type: list
  elements: float
  sample: [80.1, 84.2, 97.0]
http_status:
  description: The HTTP status of the last answer.
  returned: always
  type: int
  sample: 404
tls:
  description: The certificate, for https URLs.
  returned: always
  type: dict
  sample: {checked: true, valid: true, not_after: "2025-01-01T00:00:00Z", days_left: 120}
message:
  description: One line an operator reads.
  returned: always
  type: str
  sample: "answers in 84 ms (HTTP 404 for an unknown paylink), credentials accepted"
"""

import datetime
import secrets
import socket
import ssl
import statistics
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.ikhokha import (
    HAS_REQUESTS,
    Client,
    IkhokhaError,
    ikhokha_argument_spec,
)

STATES = {"healthy": "healthy", "slow": "degraded", "credentials_rejected": "down", "gateway_error": "down",
          "tls_error": "down", "unreachable": "down"}


def certificate(url, timeout, validate):
    """The server certificate's expiry; TLS failures are reported by the signed request itself."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return {"checked": False, "reason": "not https"}
    context = ssl.create_default_context()
    if not validate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
            cert = tls.getpeercert()
    except (OSError, ssl.SSLError) as exc:
        return {"checked": True, "valid": False, "error": str(exc)[:200]}
    if not cert or "notAfter" not in cert:
        return {"checked": True, "valid": not validate, "not_after": None, "days_left": None}
    expires = datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), datetime.UTC)
    days = (expires - datetime.datetime.now(datetime.UTC)).days
    return {"checked": True, "valid": True, "not_after": expires.isoformat(timespec="seconds"), "days_left": days}


def main():
    argument_spec = ikhokha_argument_spec()
    argument_spec.update(
        samples=dict(type="int", default=3),
        max_latency_ms=dict(type="float", default=2000.0),
        tls_min_days=dict(type="int", default=14),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_REQUESTS:
        module.fail_json(msg="the python library requests is needed on the controller")
    params = module.params
    if params["samples"] < 1:
        module.fail_json(msg="samples must be at least 1")

    client = Client(params["api_url"], params["app_id"], params["app_secret"], params["timeout"],
                    params["validate_certs"])
    probe = "payops-health-" + secrets.token_hex(6)
    latencies, status, error, verdict = [], None, None, None
    for _sample in range(params["samples"]):
        try:
            status, _data, elapsed = client.get_status(probe)
        except IkhokhaError as exc:
            error = str(exc)
            verdict = "tls_error" if str(exc).startswith("TLS") else "unreachable"
            break
        latencies.append(round(elapsed * 1000, 1))
        if status in (401, 403):
            verdict = "credentials_rejected"
            break
    latency = round(statistics.median(latencies), 1) if latencies else None
    tls = certificate(params["api_url"], params["timeout"], params["validate_certs"])
    if verdict is None:
        if status is not None and status >= 500:
            verdict = "gateway_error"
        elif latency is not None and latency > params["max_latency_ms"]:
            verdict = "slow"
        else:
            verdict = "healthy"
    state = STATES[verdict]
    if verdict == "unreachable" or verdict == "tls_error":
        message = error
    elif verdict == "credentials_rejected":
        message = (f"iKhokha rejected our signed request with HTTP {status}: check the app id "
                   f"({params['app_id'].strip()[:4]}...) and the app secret")
    elif verdict == "gateway_error":
        message = f"iKhokha answered HTTP {status} to a signed getStatus (a gateway fault)"
    else:
        message = (f"answers in {latency:g} ms (median of {len(latencies)}; HTTP {status} for an unknown "
                   f"paylink), credentials accepted")
        if verdict == "slow":
            message += f"; slower than {params['max_latency_ms']:g} ms"
    if tls.get("checked") and state == "healthy":
        if not tls.get("valid"):
            state = "degraded"
            message += f"; TLS certificate problem: {tls.get('error', 'unverified')}"
        elif tls.get("days_left") is not None and tls["days_left"] < params["tls_min_days"]:
            state = "degraded"
            message += f"; the TLS certificate expires in {tls['days_left']} days"
    accepted = status is not None and status not in (401, 403) and status < 500
    module.exit_json(
        changed=False, verdict=verdict, state=state, credentials_accepted=accepted,
        latency_ms=latency, latencies_ms=latencies, http_status=status, tls=tls, message=message,
    )


if __name__ == "__main__":
    main()
