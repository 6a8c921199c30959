"""iKhokha's IK-SIGN, checked against fixed vectors.

The vectors were computed once with the few lines in `reference_signature` below (HMAC-SHA256 of
the escaped path + body, keyed by the stripped secret, as iKhokha's published examples do) and are
pinned as literals, so that a change to the algorithm in any implementation shows up here. Both of
the sandbox's implementations (the simulator's and the app's, written separately on purpose) must
produce them.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from payops.sandbox import app, ikhokha

SECRET = "test-secret"
PAYMENT_BODY = (
    '{"entityID":"4","amount":200,"currency":"ZAR","mode":"test",'
    '"externalTransactionID":"SKILL-1700000000000-ab12",'
    '"urls":{"callbackUrl":"https://app.example.com/api/webhooks/ikhokha"}}'
)
CALLBACK_BODY = (
    '{"paylinkID":"PL1","status":"SUCCESS","externalTransactionID":"SKILL-1","responseCode":"00"}'
)

# (secret, path, body, expected IK-SIGN)
VECTORS = {
    "create paylink": (SECRET, "/public-api/v1/api/payment", PAYMENT_BODY,
                       "1bd7730f3d8fd8577725a0640af0f3dd8779e6a0da1c37d198bf4a7a9079495f"),
    "getStatus": (SECRET, "/public-api/v1/api/getStatus/PL123", "",
                  "49e63ae376891c96b769700a617754c0e583c68c2c447f7d92b8b6fae069af79"),
    "history, path without the query": (SECRET, "/public-api/v1/api/payments/history", "",
                                        "f00134deee510ffedc11e22a8a0ca1e8d4ec63a7bc92213499f98dabc0fab93b"),
    "quotes": (SECRET, "/cb", '{"note":"it\'s \\"quoted\\""}',
               "f38b40950485258d47d1217bffc998da879b3153daddc63de364a5b9539bc1d8"),
    "backslash": (SECRET, "/cb", '{"path":"C:\\\\dir"}',
                  "e0c240c670dc97826a41f17bf4e03842685630969a57a4fd8cb96e1efcfd7599"),
    "NUL": (SECRET, "/cb", '{"x":"a\0b"}',
            "07883b18b946ca42eb1086ad83101f3f7c57b68004d481cd8c3042f85722b33c"),
    "secret with surrounding white space": ("  test-secret\n", "/public-api/v1/api/getStatus/PL123", "",
                                            "49e63ae376891c96b769700a617754c0e583c68c2c447f7d92b8b6fae069af79"),
    "callback": (SECRET, "/api/webhooks/ikhokha", CALLBACK_BODY,
                 "6d4cf58910f78000bbc69293e685d8e5c1ca62a5ebb8553dc9be55278d2407ea"),
}

IMPLEMENTATIONS = {"simulator": ikhokha.ik_signature, "app": app.ikhokha_sign}


def reference_signature(secret: str, path: str, body: str = "") -> str:
    message = (path + body).replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'").replace("\0", "\\0")
    return hmac.new(secret.strip().encode(), message.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_the_pinned_vectors_follow_the_published_algorithm(vector):
    secret, path, body, expected = vector
    assert reference_signature(secret, path, body) == expected


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS.values(), ids=IMPLEMENTATIONS.keys())
@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_implementation_matches_vector(implementation, vector):
    secret, path, body, expected = vector
    assert implementation(secret, path, body) == expected


def test_escaping_puts_a_backslash_before_quotes_and_backslashes_and_spells_nul():
    assert ikhokha.escape_for_signing('a"b\'c\\d\0e') == 'a\\"b\\\'c\\\\d\\0e'


def test_signature_is_lowercase_hex_of_sha256():
    signature = ikhokha.ik_signature(SECRET, "/x")
    assert len(signature) == 64
    assert signature == signature.lower()
    int(signature, 16)


def test_a_get_is_signed_over_the_path_only():
    # The query string is not part of the message: the history call signs the bare path.
    assert VECTORS["history, path without the query"][3] == app.ikhokha_sign(
        SECRET, "/public-api/v1/api/payments/history")
    assert app.ikhokha_sign(SECRET, "/public-api/v1/api/payments/history?startDate=2024-01-01") != \
        VECTORS["history, path without the query"][3]


def test_simulator_verification_is_exact():
    secret, path, body, expected = VECTORS["create paylink"]
    assert ikhokha.signature_matches(secret, path, body, expected)
    assert ikhokha.signature_matches(secret, path, body, expected.upper())
    assert not ikhokha.signature_matches(secret, path, body + " ", expected)
    assert not ikhokha.signature_matches(secret, path + "/", body, expected)
    assert not ikhokha.signature_matches("other-secret", path, body, expected)
    assert not ikhokha.signature_matches(secret, path, body, "")


def test_app_accepts_the_raw_body_or_its_compact_reserialisation_only():
    secret, path, body, expected = VECTORS["callback"]
    spaced = body.replace(",", ", ").replace(":", ": ")
    assert app.callback_signature_valid(secret, path, body, expected)
    # Signed over the compact form, sent with spaces: tolerated, as DESIGN.md asks.
    assert app.callback_signature_valid(secret, path, spaced, expected)
    # A different content is not.
    assert not app.callback_signature_valid(secret, path, body.replace("SUCCESS", "FAILURE"), expected)
    assert not app.callback_signature_valid(secret, "/other", body, expected)
    assert not app.callback_signature_valid(secret, path, body, "0" * 64)
