# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""payment:reconcile's matching, the one copy: the day's payments here against iKhokha's payments
history. Pure logic (standard library), so that unit tests load it alone. Settling is not here:
what is safe to settle (a lost callback) goes to ikhokha_reconcile, as system:recover does.
"""

from __future__ import annotations

from ansible_collections.betaskill.payops.plugins.module_utils.payops_time import iso_seconds, parse_time

SETTLED = ("SUCCESS", "FAILURE")
# What each finding means, and whether payops settles it.
FINDINGS = {
    "lost_callback": "settled at the gateway, pending here: the callback was lost (settled by reconciliation)",
    "completed_not_paid": "completed here, but failed, pending or unknown at the gateway",
    "failed_but_paid": "failed here, but paid at the gateway",
    "amount_mismatch": "the amount here differs from the gateway's",
    "currency_mismatch": "the currency here differs from the gateway's",
    "unknown_at_gateway": "not completed here, and unknown at the gateway",
    "unknown_here": "a paylink at the gateway that no payment here has",
}
SETTLE = ("lost_callback",)


def strangers(ours, theirs):
    """The gateway's paylink ids that no payment of `ours` has (to look up on other days)."""
    known = {payment.get("paylink_id") for payment in ours} | {payment.get("reference") for payment in ours}
    return sorted(item["paylinkID"] for item in theirs if item.get("paylinkID")
                  and item["paylinkID"] not in known and item.get("externalTransactionID") not in known)


def compare(ours, theirs, window=None, in_flight=(), known_elsewhere=()):
    """(findings, counts). ours: the day's payments with a paylink ({reference, paylink_id, status,
    amount, currency}); theirs: the gateway's history ({paylinkID, externalTransactionID, status,
    amount, currency, createdAt}); window: (start, until) ISO times in UTC, for the gateway's
    paylinks that no payment here has; in_flight: references of pending payments too young to
    judge (their callback may be on its way); known_elsewhere: paylink ids that a payment of
    another day has (not strangers: that day's reconciliation matches them)."""
    by_paylink = {item.get("paylinkID"): item for item in theirs if item.get("paylinkID")}
    by_reference = {item.get("externalTransactionID"): item for item in theirs if item.get("externalTransactionID")}
    findings, seen = [], set()
    counts = {"checked": 0, "matched": 0, "in_flight": 0, **{kind: 0 for kind in FINDINGS}}

    def find(kind, payment, gateway, detail=""):
        counts[kind] += 1
        findings.append({
            "kind": kind, "settle": kind in SETTLE, "reference": payment.get("reference"),
            "paylink_id": payment.get("paylink_id") or (gateway or {}).get("paylinkID"),
            "here": {key: payment.get(key) for key in ("status", "amount", "currency")} if payment else None,
            "gateway": {key: gateway.get(key) for key in ("status", "amount", "currency")} if gateway else None,
            "detail": detail or FINDINGS[kind],
        })

    for payment in ours:
        counts["checked"] += 1
        gateway = by_paylink.get(payment.get("paylink_id")) or by_reference.get(payment.get("reference"))
        if gateway is None and payment["status"] == "pending" and payment.get("reference") in in_flight:
            counts["in_flight"] += 1  # too young to judge: the gateway may not list it yet
            continue
        if gateway is None:
            find("completed_not_paid" if payment["status"] == "completed" else "unknown_at_gateway", payment, None,
                 "completed here, unknown at the gateway" if payment["status"] == "completed" else "")
            continue
        seen.add(gateway.get("paylinkID"))
        status = str(gateway.get("status") or "").upper()
        problems = 0
        gateway_cents = _cents(gateway.get("amount"))
        if gateway.get("amount") is not None and gateway_cents != int(payment["amount"]):
            find("amount_mismatch", payment, gateway,
                 f"{payment['amount']} cents here, {gateway['amount']} at the gateway"
                 + ("" if gateway_cents is not None else " (not a whole number of cents)"))
            problems += 1
        if gateway.get("currency") and gateway["currency"] != payment["currency"]:
            find("currency_mismatch", payment, gateway,
                 f"{payment['currency']} here, {gateway['currency']} at the gateway")
            problems += 1
        if payment["status"] == "pending" and status in SETTLED:
            if payment["reference"] in in_flight:
                counts["in_flight"] += 1
            elif not problems:
                find("lost_callback", payment, gateway, f"{status} at the gateway, pending here")
            # A payment whose amount or currency differs is reported, never settled.
            continue
        if payment["status"] == "completed" and status != "SUCCESS":
            find("completed_not_paid", payment, gateway, f"completed here, {status or 'no status'} at the gateway")
        elif payment["status"] == "failed" and status == "SUCCESS":
            find("failed_but_paid", payment, gateway)
        elif not problems:
            counts["matched"] += 1
    for gateway in theirs:
        if gateway.get("paylinkID") in seen or gateway.get("paylinkID") in known_elsewhere:
            continue
        created = str(gateway.get("createdAt") or "")
        if window and not (window[0] <= _utc(created) < window[1]):
            continue
        find("unknown_here", {}, gateway)
    return findings, counts


def _utc(text):
    """An ISO time, whatever its offset, as the comparable text of the window's bounds
    (YYYY-MM-DDTHH:MM:SSZ, UTC); empty when it does not parse."""
    moment = parse_time(text)
    return iso_seconds(moment) if moment is not None else ""


def _cents(amount):
    """The gateway's amount as whole cents, or None when it is not one (499.5, "4,99")."""
    try:
        value = float(amount)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else None
