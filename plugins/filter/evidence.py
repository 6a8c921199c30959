"""The files of an evidence pack (security:collect-evidence), from what the procedure gathered: the
merged log search, database rows, each host's configuration and release. Everything is masked here,
on the controller, before it becomes a module's argument (and so an audit record); the pack module
(betaskill.payops.evidence_pack) masks again as it packs and writes in the manifest what it found."""

from __future__ import annotations

import base64
import json
import posixpath
from typing import Any

from ansible_collections.betaskill.payops.plugins.module_utils.payops_mask import mask_text

DESCRIPTIONS = {
    "security_events": "public.security_events of the window (webhook signature failures, refused logins, ...)",
    "switch_events": "payops.switch_events of the window: who turned which switch on or off, when, why",
    "switches": "payops.switches now",
    "audit_logs": "public.audit_logs of the window (the app's audit records)",
    "audit_trail": "payops.audit_trail rows of the window (payops' hash-chained audit trail)",
}


def _masked(text: str) -> str:
    return mask_text(text)[0]


def evidence_files(merged: dict[str, Any], rows: list[dict[str, Any]], hostvars: Any,
                   config_hosts: list[str]) -> list[dict[str, str]]:
    """[{name, content, description}] for betaskill.payops.evidence_pack."""
    files: list[dict[str, str]] = []
    by_host: dict[str, list[str]] = {}
    for line in merged.get("lines", []):
        if str(line.get("file", "")).startswith("database:"):
            continue
        record = {key: line.get(key) for key in ("time", "epoch", "host", "source", "file", "level", "text")}
        by_host.setdefault(line["host"], []).append(json.dumps(record, separators=(",", ":")))
    for host in sorted({entry["host"] for entry in merged.get("hosts", [])} | set(by_host)):
        summary = next((entry for entry in merged.get("hosts", []) if entry["host"] == host), {})
        files.append({"name": f"logs/{host}.jsonl", "content": "".join(f"{text}\n" for text in by_host.get(host, [])),
                      "description": f"{host}'s log lines of the window, masked on the host "
                                     f"({summary.get('matched', 0)} matched, {summary.get('returned', 0)} kept"
                                     + (f", {summary['omitted']} left out by the cap" if summary.get("omitted") else "")
                                     + ")"})
    files.append({"name": "logs/merged.txt", "content": "\n".join(merged.get("text", [])) + "\n",
                  "description": "every host's lines merged in time order, as logs:* shows them"})
    for row in rows or []:
        source = str(row["source"])
        try:
            parsed = json.loads(row["rows"]) if isinstance(row["rows"], str) else row["rows"]
        except ValueError:
            parsed = row["rows"]
        files.append({"name": f"database/{source}.json",
                      "content": _masked(json.dumps(parsed, indent=2, default=str, sort_keys=True)) + "\n",
                      "description": DESCRIPTIONS.get(source, source)})
    for host in config_hosts:
        facts = hostvars.get(host, {})
        for item in (facts.get("evidence_config") or {}).get("results", []):
            if item.get("failed") or "content" not in item:
                continue
            text = base64.b64decode(item["content"]).decode("utf-8", "replace")
            source = str(item.get("item") or item.get("source") or "config")
            name = f"config/{host}/{posixpath.basename(source)}"
            if any(entry["name"] == name for entry in files):  # two config.json of one host: the path names it
                name = f"config/{host}/{source.lstrip('/')}"
            files.append({"name": name, "content": _masked(text),
                          "description": f"{item.get('item') or item.get('source')} on {host}, masked"})
        release = facts.get("evidence_release") or {}
        stat = release.get("stat") or {}
        if stat:
            files.append({"name": f"release/{host}.json", "content": json.dumps({
                "path": stat.get("path"), "is_link": stat.get("islnk"), "target": stat.get("lnk_target"),
                "release": posixpath.basename(str(stat.get("lnk_target") or "")) or None}, indent=2) + "\n",
                "description": f"the release {host} runs (where its current link points)"})
    return files


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"evidence_files": evidence_files}
