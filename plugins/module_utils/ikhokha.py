# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""payops' iKhokha iK Pay API client: request signing, the shared connection spec, and calls.

The signing scheme (from iKhokha's official examples): IK-SIGN is the lowercase hex HMAC-SHA256,
keyed by the app secret stripped of surrounding white space, over the URL path followed by the
exact body string sent (for GET, the path alone without the query string), after escaping: a
backslash before every backslash, double quote and single quote, and NUL written as \\0.
The sandbox's simulator implements the same scheme on its own, on purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlsplit

from ansible.module_utils.basic import env_fallback

try:
    import requests

    HAS_REQUESTS = True
except ImportError:
    requests = None
    HAS_REQUESTS = False

DEFAULT_API_URL = "https://api.ikhokha.com/public-api/v1/api"


def ikhokha_argument_spec():
    return dict(
        api_url=dict(type="str", fallback=(env_fallback, ["IKHOKHA_API_URL"]), default=DEFAULT_API_URL),
        app_id=dict(type="str", fallback=(env_fallback, ["IKHOKHA_APP_ID"]), required=True),
        app_secret=dict(type="str", fallback=(env_fallback, ["IKHOKHA_APP_SECRET"]), required=True, no_log=True),
        timeout=dict(type="float", default=10.0),
        validate_certs=dict(type="bool", default=True),
    )


def escape(text):
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'").replace("\x00", "\\0")


def sign(secret, path, body=""):
    message = escape(path + body)
    return hmac.new(secret.strip().encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


class IkhokhaError(Exception):
    """A call that did not get an answer: the message says why, never with the secret."""


class Client:
    def __init__(self, api_url, app_id, app_secret, timeout=10.0, validate_certs=True):
        self.base = api_url.rstrip("/")
        self.app_id = app_id
        self.secret = app_secret
        self.timeout = timeout
        self.verify = validate_certs
        self.session = requests.Session()

    def _url(self, endpoint):
        return f"{self.base}/{endpoint.lstrip('/')}"

    def request(self, method, endpoint, payload=None, params=None):
        """(HTTP status, parsed JSON or None, seconds). Signs the exact bytes it sends."""
        url = self._url(endpoint)
        path = urlsplit(url).path
        body = "" if payload is None else json.dumps(payload, separators=(",", ":"))
        headers = {
            "IK-APPID": self.app_id.strip(),
            "IK-SIGN": sign(self.secret, path, body),
            "Accept": "application/json",
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            response = self.session.request(
                method, url, data=body.encode("utf-8") if payload is not None else None,
                params=params, headers=headers, timeout=self.timeout, verify=self.verify,
            )
        except requests.exceptions.SSLError as exc:
            raise IkhokhaError(f"TLS failed for {self.base}: {_short(exc)}") from None
        except requests.exceptions.Timeout:
            raise IkhokhaError(f"no answer from {self.base} within {self.timeout:g} s") from None
        except requests.exceptions.ConnectionError as exc:
            raise IkhokhaError(f"cannot reach {self.base}: {_short(exc)}") from None
        elapsed = time.monotonic() - started
        try:
            data = response.json()
        except ValueError:
            data = None
        return response.status_code, data, elapsed

    def get_status(self, paylink_id):
        return self.request("GET", f"getStatus/{paylink_id}")


def _short(exc):
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."
