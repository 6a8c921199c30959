"""The one text masking (plugins/module_utils/payops_mask.py) that log search and evidence packs
share: card numbers by issuer range and Luhn check, secrets by key name and scheme, e-mail addresses."""

from __future__ import annotations

import json
import random
import secrets
import uuid

import pytest
from ansible_collections.betaskill.payops.plugins.module_utils.payops_mask import (
    card_brand,
    is_card_number,
    luhn_valid,
    mask_text,
)
from ansible_collections.betaskill.payops.plugins.module_utils.payops_redact import REDACTED, Redactor

# The issuers' published test numbers.
TEST_PANS = {
    "4111111111111111": "visa",
    "5555555555554444": "mastercard",
    "2223003122003222": "mastercard",
    "378282246310005": "amex",
    "6011111111111117": "discover",
    "30569309025904": "diners",
    "3530111333300000": "jcb",
    "4222222222222": "visa",
}


@pytest.mark.parametrize("pan,brand", TEST_PANS.items())
def test_test_pans_are_cards_of_their_issuer(pan, brand):
    assert luhn_valid(pan)
    assert card_brand(pan) == brand
    assert is_card_number(pan)


@pytest.mark.parametrize("written,shown", [
    ("4111111111111111", "411111******1111"),
    ("4111 1111 1111 1111", "411111******1111"),
    ("4111-1111-1111-1111", "411111******1111"),
    ("5555555555554444", "555555******4444"),
    ("5555 5555 5555 4444", "555555******4444"),
    ("378282246310005", "378282*****0005"),
    ("3782 822463 10005", "378282*****0005"),
    ("3782-822463-10005", "378282*****0005"),
])
def test_a_card_number_is_masked_to_first_six_and_last_four(written, shown):
    masked, counts = mask_text(f'{{"message":"charge failed for card {written} (retry)","level":"error"}}')
    assert shown in masked
    assert written not in masked
    assert counts["card"] == 1
    json.loads(masked)  # still a JSON line


def test_a_card_number_beside_other_numbers_is_found_alone():
    masked, counts = mask_text("order 12 card 4111 1111 1111 1111 amount 4999")
    assert masked == "order 12 card 411111******1111 amount 4999"
    assert counts["card"] == 1


def test_numbers_outside_issuer_ranges_or_failing_luhn_are_left():
    # Luhn-valid but issuer 9 / 1; an issuer's prefix but a wrong check digit; a Visa at length 14.
    for number in ("9111111111111119", "1234567812345670", "4111111111111112", "41111111111110"):
        masked, counts = mask_text(f"value {number} end")
        assert counts["card"] == 0 and number in masked, number


def test_ten_thousand_payment_references_and_uuids_give_no_card_finding():
    rng = random.Random(15)
    start_ms = 1_700_000_000_000
    lines = []
    for _ in range(10_000):
        # The app's transaction_reference: SKILL-<epoch ms>-<8 hex> (src/payops/sandbox/app.py).
        reference = f"SKILL-{start_ms + rng.randrange(10**11)}-{rng.getrandbits(32):08x}"
        identifier = uuid.UUID(int=rng.getrandbits(128), version=4)
        lines.append(json.dumps({"time": "2026-12-03T12:00:00.000Z", "payment_reference": reference,
                                 "payment_id": str(identifier), "request_id": identifier.hex,
                                 "duration_ms": rng.random() * 1000, "amount": rng.randrange(10**7)}))
    text = "\n".join(lines)
    masked, counts = mask_text(text)
    assert counts == {"card": 0, "secret": 0, "email": 0}
    assert masked == text
    # A real one among them is still found.
    masked, counts = mask_text(text + "\ncard 4111111111111111")
    assert counts["card"] == 1


def test_secret_values_are_masked_by_key_name():
    line = ('{"password":"hunter2hunter2","api_token":"tk_live_abc123","user":"sam",'
            '"nested":{"client_secret":"s3cr3t"}}')
    masked, counts = mask_text(line)
    data = json.loads(masked)
    assert data["password"] == REDACTED and data["api_token"] == REDACTED
    assert data["nested"]["client_secret"] == REDACTED and data["user"] == "sam"
    assert counts["secret"] == 3


@pytest.mark.parametrize("line,secret", [
    ("GET /api/x?token=abcdef123456&page=2", "abcdef123456"),
    ("db_password=correct-horse-battery", "correct-horse-battery"),
    ("secret: 'quoted value here'", "quoted value here"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "eyJhbGciOiJIUzI1NiJ9"),
    ("calling with header authorization=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    ("connect postgresql://app:pa55word@db:5432/app failed", "pa55word"),
    ("ik-sign: 0a1b2c3d4e5f60718293a4b5c6d7e8f9", "0a1b2c3d4e5f"),
])
def test_secrets_in_plain_lines_are_masked(line, secret):
    masked, counts = mask_text(line)
    assert secret not in masked
    assert REDACTED in masked
    assert counts["secret"] == 1, masked


def test_secret_looking_names_that_are_not_are_left():
    line = "key_prefix=backups/ request_id=abc123def456 payment_reference=SKILL-1-aa status=200"
    assert mask_text(line) == (line, {"card": 0, "secret": 0, "email": 0})


def test_learned_secret_values_are_removed_too():
    redactor = Redactor()
    redactor.learn("the-app-secret-value")
    masked, counts = mask_text("signing with the-app-secret-value now", redactor)
    assert "the-app-secret-value" not in masked and counts["secret"] == 1


def test_email_addresses_keep_first_character_and_domain():
    masked, counts = mask_text('{"email":"jane.doe+course@example.co.za","msg":"sent to bob@mail.example.com"}')
    assert "jane.doe" not in masked and "bob@" not in masked
    assert "j***@example.co.za" in masked and "b***@mail.example.com" in masked
    assert counts["email"] == 2


def test_masking_is_idempotent():
    line = 'card 4111111111111111 token=abcdefgh1234 mail sam@example.com {"password":"x1y2z3w4"}'
    once, _ = mask_text(line)
    twice, counts = mask_text(once)
    assert twice == once
    assert counts == {"card": 0, "secret": 0, "email": 0}


def test_hex_ids_with_a_letter_are_never_a_candidate():
    rng = random.Random(7)
    for _ in range(2000):
        token = "a" + secrets.token_hex(rng.randrange(7, 10))[1:]  # 13-19 characters, digits mostly possible
        counts = mask_text(f"id={token} and {token}")[1]
        assert counts["card"] == 0, token
    # Digits glued to a letter: "a4111111111111111" is an id, not a card.
    assert mask_text("a4111111111111111")[1]["card"] == 0
