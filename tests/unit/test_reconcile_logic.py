"""payment:reconcile's matching (plugins/module_utils/payops_reconcile.py): each kind of
disagreement between the payments here and iKhokha's history, and only lost callbacks settled."""

from __future__ import annotations

from ansible_collections.betaskill.payops.plugins.module_utils.payops_reconcile import compare
from ansible_collections.betaskill.payops.plugins.module_utils.payops_reconcile import strangers as compare_strangers


def ours(reference, status, amount=49900, currency="ZAR"):
    return {"reference": reference, "paylink_id": f"PL-{reference}", "status": status, "amount": amount,
            "currency": currency}


def theirs(reference, status, amount=49900, currency="ZAR", created="2026-12-02T10:00:00.000001+00:00"):
    return {"paylinkID": f"PL-{reference}", "externalTransactionID": reference, "status": status, "amount": amount,
            "currency": currency, "createdAt": created}


WINDOW = ("2026-12-01T22:00:00Z", "2026-12-02T22:00:00Z")


def kinds(findings):
    return {item["reference"]: item["kind"] for item in findings}


def test_each_disagreement_is_found_and_only_the_lost_callback_is_to_be_settled():
    findings, counts = compare(
        [ours("ok", "completed"), ours("lost", "pending"), ours("lost-failure", "pending"),
         ours("not-paid", "completed"), ours("paid-failed", "failed"), ours("amount", "completed", 50000),
         ours("currency", "completed", currency="USD"), ours("gone", "completed"), ours("waiting", "pending")],
        [theirs("ok", "SUCCESS"), theirs("lost", "SUCCESS"), theirs("lost-failure", "FAILURE"),
         theirs("not-paid", "FAILURE"), theirs("paid-failed", "SUCCESS"), theirs("amount", "SUCCESS"),
         theirs("currency", "SUCCESS"), theirs("waiting", "PENDING"), theirs("stranger", "SUCCESS")],
        window=WINDOW)
    assert kinds(findings) == {
        "lost": "lost_callback", "lost-failure": "lost_callback", "not-paid": "completed_not_paid",
        "paid-failed": "failed_but_paid", "amount": "amount_mismatch", "currency": "currency_mismatch",
        "gone": "completed_not_paid", None: "unknown_here"}
    assert [item["reference"] for item in findings if item["settle"]] == ["lost", "lost-failure"]
    assert counts["checked"] == 9 and counts["matched"] == 2  # ok, and waiting (pending on both sides)
    assert next(item for item in findings if item["kind"] == "amount_mismatch")["detail"] == \
        "50000 cents here, 49900 at the gateway"


def test_a_pending_payment_whose_amount_differs_is_reported_not_settled():
    findings, _ = compare([ours("odd", "pending", 100)], [theirs("odd", "SUCCESS")], window=WINDOW)
    assert [(item["kind"], item["settle"]) for item in findings] == [("amount_mismatch", False)]


def test_a_young_pending_payment_is_in_flight_not_lost():
    findings, counts = compare([ours("young", "pending")], [theirs("young", "SUCCESS")], window=WINDOW,
                               in_flight={"young"})
    assert findings == [] and counts["in_flight"] == 1


def test_gateway_paylinks_outside_the_day_are_not_strangers():
    findings, _ = compare([], [theirs("other-day", "SUCCESS", created="2026-12-02T22:00:01+00:00")], window=WINDOW)
    assert findings == []


def test_matching_falls_back_to_the_external_transaction_id():
    payment = {**ours("ref", "completed"), "paylink_id": "PL-unknown"}
    findings, counts = compare([payment], [theirs("ref", "SUCCESS")], window=WINDOW)
    assert findings == [] and counts["matched"] == 1


def test_a_paylink_that_a_payment_of_another_day_has_is_no_stranger():
    gateway = [theirs("yesterdays", "SUCCESS"), theirs("nobodys", "SUCCESS")]
    assert compare_strangers([], gateway) == ["PL-nobodys", "PL-yesterdays"]
    findings, _ = compare([], gateway, window=WINDOW, known_elsewhere={"PL-yesterdays"})
    assert [item["paylink_id"] for item in findings] == ["PL-nobodys"]


def test_a_young_pending_payment_the_gateway_does_not_list_yet_is_in_flight_not_unknown():
    findings, counts = compare([ours("just-now", "pending")], [], window=WINDOW, in_flight={"just-now"})
    assert findings == [] and counts["in_flight"] == 1


def test_a_gateway_time_with_an_offset_is_judged_in_utc():
    # 00:30 on 3 December in Johannesburg is 22:30 UTC on the 2nd: after the window's end.
    late = theirs("after-midnight", "SUCCESS", created="2026-12-03T00:30:00+02:00")
    # 23:30 on 2 December in Johannesburg is 21:30 UTC: inside it.
    inside = theirs("before-midnight", "SUCCESS", created="2026-12-02T23:30:00+02:00")
    findings, _ = compare([], [late, inside], window=WINDOW)
    assert [item["paylink_id"] for item in findings] == ["PL-before-midnight"]


def test_a_gateway_amount_in_decimals_is_compared_as_cents_and_a_fraction_is_a_mismatch():
    findings, counts = compare([ours("whole", "completed"), ours("odd", "completed")],
                               [theirs("whole", "SUCCESS", amount="49900.00"), theirs("odd", "SUCCESS", amount=499.5)],
                               window=WINDOW)
    assert counts["matched"] == 1
    assert [(item["reference"], item["detail"]) for item in findings] == [
        ("odd", "49900 cents here, 499.5 at the gateway (not a whole number of cents)")]
