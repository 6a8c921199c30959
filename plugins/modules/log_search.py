#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: log_search
short_description: Search this host's logs over a window and return the matching lines, masked
description:
  - Runs on the host whose logs it reads, so that the filtering happens there and only the matching
    lines travel back to the controller.
  - Reads log files (each path a glob; the files rotated from each match, C(.1), C(.2.gz),
    C(-20261203.gz), are read too, gzip transparently) and, on a host with systemd, the journal
    (C(journalctl -o json) over the window, optionally for some units only).
  - Understands JSON lines (the edge's C(payops_json) access log, the app's lines, journald's entries)
    and plain lines (nginx's error log, syslog, PostgreSQL, logfmt); a plain line without a time of
    its own takes the time of the line before it.
  - Every line returned is masked by C(payops_mask) - card numbers (issuer range and Luhn check),
    secrets and e-mail addresses - and the counts of what was masked are returned.
  - Returns at most O(limit) lines (the newest, or the oldest with O(keep=oldest)) and says how many
    more matched, and the host's clock, so the controller can show each host's offset.
  - Reads only; check mode runs it the same.
author: payops contributors (!UNKNOWN)
options:
  sources:
    description: The files to read, by name.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: What the files are (V(edge-access), V(app)), shown with each line.
        type: str
        required: true
      paths:
        description: Globs of the live files; their rotated siblings are read too.
        type: list
        elements: path
        required: true
  journal:
    description:
      - Whether to read the journal. V(auto) reads it where systemd runs (C(/run/systemd/system) exists
        and C(journalctl) is installed).
    type: str
    choices: [auto, "yes", "no"]
    default: "no"
  journal_units:
    description: Read only these units' entries from the journal (all entries when empty).
    type: list
    elements: str
    default: []
  since:
    description: The window's start, an ISO 8601 time (the controller turns an operator's 1h or 09:00 into one).
    type: str
  until:
    description: The window's end, an ISO 8601 time.
    type: str
  level:
    description:
      - The lowest level shown. A JSON line's own level; without one, a status of 400 and up is a
        warning and 500 and up an error.
    type: str
    choices: [debug, info, warning, error, critical]
  route:
    description: Only lines of this route (the app's C(route)) or whose path matches it (C({name}) matches one segment).
    type: str
  request_id:
    description: Only lines with this request id (the edge's C(X-Request-ID)).
    type: str
  payment_reference:
    description: Only lines that contain this payment reference.
    type: str
  paylink_id:
    description: Only lines that contain this paylink id.
    type: str
  grep:
    description: Only lines matching this regular expression (Python syntax), case-insensitive.
    type: str
  status:
    description: Only lines with one of these HTTP statuses.
    type: list
    elements: int
    default: []
  events:
    description: Only lines whose C(event) field is one of these (the app's V(webhook_signature_invalid), ...).
    type: list
    elements: str
    default: []
  limit:
    description: The most lines returned; the rest are counted in RV(omitted).
    type: int
    default: 200
  keep:
    description: Which lines to keep when more than O(limit) match.
    type: str
    choices: [newest, oldest]
    default: newest
  max_line_length:
    description: Longer lines are cut to this many characters (after masking).
    type: int
    default: 4000
  controller_epoch:
    description:
      - The controller's clock (epoch seconds) as the task was sent, templated per host; the offset
        is this host's clock minus it (in RV(clock)), an upper bound that includes the module's start-up (the
        controller's betaskill.payops.log_merge centres it on the round trip).
    type: float
"""

EXAMPLES = r"""
- name: The app's error lines of the last hour
  betaskill.payops.log_search:
    sources:
      - name: app
        paths: [/var/log/betaskill/app.log]
    journal: auto
    journal_units: [betaskill-app.service]
    since: "2026-12-03T11:00:00Z"
    until: "2026-12-03T12:00:00Z"
    level: error

- name: One request, followed by its id
  betaskill.payops.log_search:
    sources:
      - {name: edge-access, paths: [/var/log/nginx/access.log]}
    request_id: 0f3c9a7e2b1d4c5a8e6f7a8b9c0d1e2f
"""

RETURN = r"""
lines:
  description: The matching lines kept, oldest first, masked.
  returned: always
  type: list
  elements: dict
  sample:
    - {time: "2026-12-03T12:45:52.764Z", epoch: 1796301952.764, source: app, file: /var/log/betaskill/app.log,
       level: info, text: '{"message":"POST /api/checkout 201 20.9ms",...}', request_id: test-req-000001,
       status: 201, route: /api/checkout}
matched:
  description: How many lines matched.
  returned: always
  type: int
  sample: 1245
omitted:
  description: How many of them were left out (matched minus returned).
  returned: always
  type: int
  sample: 1045
masked:
  description: What was masked in the lines returned, by kind.
  returned: always
  type: dict
  sample: {card: 1, secret: 0, email: 2}
files:
  description: The files read (after the modification-time check), with the lines read from each.
  returned: always
  type: list
  elements: dict
  sample: [{path: /var/log/nginx/access.log.2.gz, lines: 10234}]
skipped_files:
  description: Files left unread because they were last written before the window starts.
  returned: always
  type: list
  elements: str
  sample: [/var/log/nginx/access.log.7.gz]
journal:
  description: Whether the journal was read, and how many entries.
  returned: always
  type: dict
  sample: {read: false, entries: 0}
bytes_returned:
  description: The size of the lines returned (their text), in bytes.
  returned: always
  type: int
  sample: 48213
clock:
  description: This host's clock when the search started, and its offset from the controller's when given.
  returned: always
  type: dict
  sample: {epoch: 1796301952.1, iso: "2026-12-03T12:45:52.100Z", controller_epoch: 1796301951.9, offset_seconds: 0.21}
"""

import json
import os
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_logs import (
    Collector,
    Filters,
    file_may_hold,
    matches,
    open_text,
    parse_iso,
    parse_journal_entry,
    rotated_files,
    scan_lines,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_mask import KINDS, add_counts, mask_text
from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import iso


def _iso_epoch(epoch):
    return iso(datetime.fromtimestamp(epoch, UTC), timespec="milliseconds")


def build_filters(module):
    params = module.params
    window = {}
    for name in ("since", "until"):
        if params[name]:
            window[name] = parse_iso(params[name].strip())
            if window[name] is None:
                module.fail_json(msg=f"{name}={params[name]!r} is not an ISO 8601 time (2026-12-03T12:00:00Z)")
    if window.get("since") is not None and window.get("until") is not None and window["since"] > window["until"]:
        module.fail_json(msg=f"since={params['since']} is after until={params['until']}")
    grep = None
    if params["grep"]:
        try:
            grep = re.compile(params["grep"], re.IGNORECASE)
        except re.error as exc:
            module.fail_json(msg=f"grep={params['grep']!r} is not a regular expression: {exc}")
    if params["limit"] < 0:
        module.fail_json(msg=f"limit={params['limit']} must be 0 or more")
    return Filters(since=window.get("since"), until=window.get("until"), level=params["level"],
                   route=params["route"], request_id=params["request_id"],
                   payment_reference=params["payment_reference"], paylink_id=params["paylink_id"], grep=grep,
                   status=tuple(params["status"]), events=tuple(params["events"]))


def journal_available():
    return os.path.isdir("/run/systemd/system") and shutil.which("journalctl") is not None


def read_journal(module, filters, collector):
    argv = [shutil.which("journalctl") or "journalctl", "-o", "json", "--no-pager", "-q"]
    if filters.since is not None:
        argv += ["--since", f"@{filters.since:.6f}"]
    if filters.until is not None:
        argv += ["--until", f"@{filters.until:.6f}"]
    for unit in module.params["journal_units"]:
        argv += ["-u", unit]
    entries = 0
    needles = filters.needles()
    # pylint: disable-next=ansible-bad-function  # the journal streams through the filter: run_command would hold it all
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          encoding="utf-8", errors="replace") as process:
        for raw in process.stdout:
            entries += 1
            if needles and not all(needle in raw for needle in needles):
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            line = parse_journal_entry(data, "journal")
            if filters.grep is not None and not filters.grep.search(line.text):
                continue
            if matches(line, filters):
                collector.add(line)
        error = process.stderr.read()
    if process.returncode not in (0, None) and entries == 0:
        module.fail_json(msg=f"journalctl failed ({process.returncode}): {error.strip()[:500]}")
    return entries


def main():
    module = AnsibleModule(
        argument_spec=dict(
            sources=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                paths=dict(type="list", elements="path", required=True),
            )),
            journal=dict(type="str", choices=["auto", "yes", "no"], default="no"),
            journal_units=dict(type="list", elements="str", default=[]),
            since=dict(type="str"),
            until=dict(type="str"),
            level=dict(type="str", choices=["debug", "info", "warning", "error", "critical"]),
            route=dict(type="str"),
            request_id=dict(type="str"),
            payment_reference=dict(type="str"),
            paylink_id=dict(type="str"),
            grep=dict(type="str"),
            status=dict(type="list", elements="int", default=[]),
            events=dict(type="list", elements="str", default=[]),
            limit=dict(type="int", default=200),
            keep=dict(type="str", choices=["newest", "oldest"], default="newest"),
            max_line_length=dict(type="int", default=4000),
            controller_epoch=dict(type="float"),
        ),
        supports_check_mode=True,
    )
    clock = time.time()
    params = module.params
    filters = build_filters(module)
    collector = Collector(params["limit"], params["keep"])
    files, skipped = [], []
    for source in params["sources"]:
        for path in source["paths"]:
            for name in rotated_files(path):
                if not file_may_hold(name, filters):
                    skipped.append(name)
                    continue
                try:
                    with open_text(name) as handle:
                        count = scan_lines(handle, source["name"], name, filters, collector)
                except (OSError, EOFError) as exc:
                    module.warn(f"could not read {name}: {exc}")
                    continue
                files.append({"path": name, "source": source["name"], "lines": count})
    journal = {"read": False, "entries": 0}
    wanted = params["journal"]
    if wanted == "yes" or (wanted == "auto" and journal_available()):
        if not journal_available() and wanted == "yes":
            module.fail_json(msg="journal=yes but this host has no running systemd journal (journalctl)")
        journal = {"read": True, "entries": read_journal(module, filters, collector)}

    lines, masked, size = [], {kind: 0 for kind in KINDS}, 0
    for line in collector.lines():
        text, counts = mask_text(line.text)
        add_counts(masked, counts)
        if len(text) > params["max_line_length"]:
            text = text[:params["max_line_length"]] + " [cut]"
        size += len(text.encode("utf-8"))
        entry = {"time": _iso_epoch(line.time) if line.time is not None else None, "epoch": line.time,
                 "source": line.source, "file": line.file, "level": line.level, "text": text}
        for key, value in line.fields.items():
            entry[key] = mask_text(value)[0] if isinstance(value, str) else value
        lines.append(entry)
    module.exit_json(changed=False, lines=lines, matched=collector.matched, omitted=collector.omitted,
                     masked=masked, files=files, skipped_files=skipped, journal=journal, bytes_returned=size,
                     clock={"epoch": clock, "iso": _iso_epoch(clock), "controller_epoch": params["controller_epoch"],
                            "offset_seconds": None if params["controller_epoch"] is None
                            else round(clock - params["controller_epoch"], 3)})


if __name__ == "__main__":
    main()
