# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Observing a web host's nginx from outside, the one copy: which switches it serves, and whether
the essentials (health, webhooks) still pass.

Used by the module edge_switch_probe (delegated to the controller) and by the action half of
edge_switch, which runs on the controller itself: the probe is an HTTP client there, never a
process of its own.
"""

from __future__ import annotations

import json
import time
import urllib.error

from ansible.module_utils.urls import open_url

SWITCHES = ("payments_stopped", "maintenance", "lockdown")
ESSENTIALS = ("GET /api/health", "POST /api/webhooks/ikhokha")


def fetch(url, method="GET", headers=None, timeout=5.0):
    """(status, content type, body) without raising on HTTP errors; status None when unreachable."""
    data = b"{}" if method == "POST" else None
    headers = dict(headers or {})
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        with open_url(url, data=data, method=method, headers=headers, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()
    except (urllib.error.URLError, OSError) as error:
        return None, "", str(getattr(error, "reason", error)).encode()


def observe(url, switch=None, enabled=True, timeout=10.0, settle=0.5, essentials=ESSENTIALS, host_header=None):
    """Wait until nginx at `url` serves `switch` in the wanted state for good, then check the essentials.

    Returns (result, error): result has holds, seconds, blocked, essentials and, when nginx
    answered, switches; error is a message when nginx never told its switches.

    After a reload the old workers keep accepting connections until the master has started the
    new ones and told the old ones to stop (100 ms, longer on a busy host): one answer in the new
    state does not prove that every answer is. It holds once it keeps showing for `settle`.
    """
    base = url.rstrip("/")
    headers = {"Host": host_header} if host_header else {}
    wanted = 1 if enabled else 0
    started = time.monotonic()
    deadline = started + timeout
    switches, last_error = None, None
    streak = None  # when the wanted state started showing without a break
    while True:
        status, _content_type, body = fetch(f"{base}/.payops/switches", headers=headers)
        showing = False
        if status == 200:
            try:
                switches = json.loads(body)
                last_error = None
                showing = switch is None or switches.get(switch) == wanted
            except ValueError:
                last_error = "/.payops/switches did not answer JSON"
        elif status is None:
            last_error = f"no answer from {base}: {body.decode(errors='replace')}"
        else:
            last_error = f"/.payops/switches answered HTTP {status} (is this controller in the operator allowlist?)"
        now = time.monotonic()
        streak = (streak or now) if showing else None
        holds = streak is not None and now - streak >= settle
        # A streak that began before the deadline may finish settling after it.
        if holds or (now >= deadline and (streak is None or now >= deadline + settle)):
            break
        time.sleep(0.05)
    seconds = round((streak if holds else time.monotonic()) - started, 3)

    outside = {**headers, "X-Payops-Probe": "outside"}
    answers, blocked = {}, []
    for item in essentials:
        method, _sep, path = item.partition(" ")
        status, content_type, _body = fetch(base + path, method=method.upper(), headers=outside)
        answers[item] = status
        # A switch rule's refusal is nginx's own page; the app itself always answers JSON.
        if status in (403, 503) and "json" not in content_type:
            blocked.append(item)

    result = dict(holds=holds, seconds=seconds, blocked=blocked, essentials=answers)
    if switches is not None:
        result["switches"] = switches
    return result, (last_error if switches is None else None)
