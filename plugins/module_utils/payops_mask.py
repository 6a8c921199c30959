# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Masking of free text, the one copy: log lines, evidence packs and anything else payops shows
that it did not write itself. Three kinds of finding, each counted:

- ``card``: a primary account number - 13 to 19 digits, in one run or in groups split by single
  spaces or dashes, inside an issuer's range (IIN) for that length, passing the Luhn check - is
  shown as its first six and last four digits (PCI DSS 3.4.1). The ranges and the Luhn check are
  what keep payment references (``SKILL-<ms>-<hex>``), timestamps, UUIDs and amounts from being
  taken for one; digits glued to letters or chained to them by dashes are never a candidate.
- ``secret``: the value of a ``key=value``, ``key: value`` or JSON ``"key": "value"`` whose key is a
  secret name (payops_redact's rule: password, token, secret, authorization, ...), a bearer or
  basic credential, a password inside a URL: replaced by payops_redact's placeholder.
- ``email``: an address keeps its first character and its domain (``j***@example.com``).

Structures (secret names in JSON from an API) are payops_redact's job; this module masks text.
Standard library and payops_redact only, so that unit tests load it on its own.
"""

from __future__ import annotations

import re

from ansible_collections.betaskill.payops.plugins.module_utils.payops_redact import (
    REDACTED,
    URL_PASSWORD_RE,
    Redactor,
)

KINDS = ("card", "secret", "email")
# Written into evidence packs and log search results: what is masked, and why.
POLICY = {
    "card": "primary account numbers (issuer range, 13-19 digits, Luhn check) shown as first six and last "
            "four digits (PCI DSS v4.0.1 3.4.1)",
    "secret": "values of secret-named keys (password, token, secret, key, authorization, ...), bearer/basic "
              "credentials and URL passwords replaced by " + REDACTED + " (PCI DSS 8.3.2, no credentials in logs)",
    "email": "e-mail addresses reduced to their first character and domain (personal data minimised)",
}

# (first digits, lowest, highest, lengths): IIN ranges compared on the number's leading digits.
# Sources: the issuers' published ranges as collected by ISO/IEC 7812 registries (Visa 4; Mastercard
# 51-55 and 2221-2720; Amex 34, 37; Discover 6011, 622126-622925, 644-649, 65; Diners 300-305,
# 3095, 36, 38-39; JCB 3528-3589; UnionPay 62, 81; Maestro; Mir 2200-2204; Verve).
_RANGES = (
    ("visa", 4, 4, (13, 16, 19)),
    ("mastercard", 51, 55, (16,)),
    ("mastercard", 2221, 2720, (16,)),
    ("amex", 34, 34, (15,)),
    ("amex", 37, 37, (15,)),
    ("discover", 6011, 6011, (16, 17, 18, 19)),
    ("discover", 622126, 622925, (16, 17, 18, 19)),
    ("discover", 644, 649, (16, 17, 18, 19)),
    ("discover", 65, 65, (16, 17, 18, 19)),
    ("diners", 300, 305, (14, 15, 16, 17, 18, 19)),
    ("diners", 3095, 3095, (14, 15, 16, 17, 18, 19)),
    ("diners", 36, 36, (14, 15, 16, 17, 18, 19)),
    ("diners", 38, 39, (14, 15, 16, 17, 18, 19)),
    ("jcb", 3528, 3589, (16, 17, 18, 19)),
    ("unionpay", 62, 62, (16, 17, 18, 19)),
    ("unionpay", 81, 81, (16, 17, 18, 19)),
    ("maestro", 5018, 5018, (13, 14, 15, 16, 17, 18, 19)),
    ("maestro", 5020, 5020, (13, 14, 15, 16, 17, 18, 19)),
    ("maestro", 5038, 5038, (13, 14, 15, 16, 17, 18, 19)),
    ("maestro", 5893, 5893, (13, 14, 15, 16, 17, 18, 19)),
    ("maestro", 6304, 6304, (13, 14, 15, 16, 17, 18, 19)),
    ("maestro", 6759, 6759, (13, 14, 15, 16, 17, 18, 19)),
    ("maestro", 6761, 6763, (13, 14, 15, 16, 17, 18, 19)),
    ("mir", 2200, 2204, (16, 17, 18, 19)),
    ("verve", 506099, 506198, (16, 18, 19)),
    ("verve", 650002, 650027, (16, 18, 19)),
)

# A run of digit groups joined by single spaces or dashes, not glued to a word or chained to one by
# a dash (so "SKILL-1733230000000-ab12cd34" and UUIDs offer no candidate), nor part of a decimal
# number (a duration's 935.4229869453671).
_DIGIT_RUN = re.compile(r"(?<![\w])(?<!\w-)(?<!\d\.)\d+(?:[ -]\d+)*(?![\w])(?!-\w)(?!\.\d)")
_GROUP = re.compile(r"\d+")

_KEY = r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}"
# "key": "value" (JSON; the value with its escapes).
_JSON_PAIR = re.compile(r'"(?P<key>' + _KEY + r')"(?P<sep>\s*:\s*)"(?P<value>(?:[^"\\]|\\.)*)"')
# key=value, key: value, ?key=value&, key="value"; an Authorization header's scheme is part of the value.
_KV_PAIR = re.compile(
    r"(?<![\w.\-\"])(?P<key>" + _KEY + r")(?P<sep>\s*[=:]\s*)"
    r"(?P<value>(?:(?:Bearer|Basic|Token|Digest)\s+)?(?:\"[^\"]*\"|'[^']*'|[^\s,;&\"'}\])]+))",
)
_SCHEME_CREDENTIAL = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+(?P<value>[A-Za-z0-9._~+/=\-]{8,})")
_EMAIL = re.compile(r"(?<![\w.+-])(?P<first>[A-Za-z0-9])[A-Za-z0-9._%+\-]*"
                    r"@(?P<domain>[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})")


def luhn_valid(digits):
    """Whether a string of digits passes the Luhn (mod 10) check."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_brand(digits):
    """The issuer whose range holds this number at its length, or None."""
    length = len(digits)
    for brand, low, high, lengths in _RANGES:
        if length not in lengths:
            continue
        prefix = int(digits[:len(str(low))])
        if low <= prefix <= high:
            return brand
    return None


def is_card_number(digits):
    return 13 <= len(digits) <= 19 and card_brand(digits) is not None and luhn_valid(digits)


def mask_card(digits):
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def _mask_cards(text, counts):
    def replace_run(match):
        run = match.group(0)
        groups = [(group.start(), group.end()) for group in _GROUP.finditer(run)]
        pieces = []
        position = 0
        index = 0
        while index < len(groups):
            found = None
            # The longest span of whole groups starting here that is a card number.
            for last in range(len(groups) - 1, index - 1, -1):
                start, end = groups[index][0], groups[last][1]
                digits = re.sub(r"\D", "", run[start:end])
                if len(digits) > 19:
                    continue
                if len(digits) < 13:
                    break
                if is_card_number(digits):
                    found = (last, start, end, digits)
                    break
            if found is None:
                index += 1
                continue
            last, start, end, digits = found
            pieces.append(run[position:start])
            pieces.append(mask_card(digits))
            counts["card"] += 1
            position = end
            index = last + 1
        pieces.append(run[position:])
        return "".join(pieces)

    return _DIGIT_RUN.sub(replace_run, text)


def _is_secret_key(redactor, key):
    return redactor.is_secret_name(key)


def mask_text(text, redactor=None):
    """(text with card numbers, secrets and e-mail addresses masked, {kind: how many}).

    `redactor`: a payops_redact.Redactor whose learned secret values are removed too (the
    inventory's own secrets, when a caller knows them); its name rules decide what a secret key is.
    """
    counts = {kind: 0 for kind in KINDS}
    if not text:
        return text, counts
    redactor = redactor or Redactor()

    def secret_pair(match):
        value = match.group("value")
        if not _is_secret_key(redactor, match.group("key")) or not value or REDACTED in value:
            return match.group(0)
        counts["secret"] += 1
        quoted = value[:1] if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) > 1 else ""
        return f"{match.group('key')}{match.group('sep')}{quoted}{REDACTED}{quoted}"

    def json_pair(match):
        if not _is_secret_key(redactor, match.group("key")) or match.group("value") in ("", REDACTED):
            return match.group(0)
        counts["secret"] += 1
        return f'"{match.group("key")}"{match.group("sep")}"{REDACTED}"'

    def scheme_credential(match):
        counts["secret"] += 1
        return f"{match.group('scheme')} {REDACTED}"

    def url_password(match):
        counts["secret"] += 1
        return match.group("head") + REDACTED + "@"

    def email(match):
        counts["email"] += 1
        return f"{match.group('first')}***@{match.group('domain')}"

    masked = _JSON_PAIR.sub(json_pair, text)
    masked = _SCHEME_CREDENTIAL.sub(scheme_credential, masked)
    masked = _KV_PAIR.sub(secret_pair, masked)
    masked = URL_PASSWORD_RE.sub(url_password, masked)
    if redactor.values:
        scrubbed = redactor.scrub_text(masked)
        if scrubbed != masked:
            counts["secret"] += max(1, scrubbed.count(REDACTED) - masked.count(REDACTED))
            masked = scrubbed
    masked = _EMAIL.sub(email, masked)
    masked = _mask_cards(masked, counts)
    return masked, counts


def add_counts(total, counts):
    """Add one mask_text result's counts into a running total (a dict of the KINDS)."""
    for kind in KINDS:
        total[kind] = total.get(kind, 0) + counts.get(kind, 0)
    return total
