# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Secret redaction, the one copy: the audit callback, the modules (backups of configuration and
inventory variables) and the payops command all remove secrets with this.

A name is secret when one of its parts (split on ``_``, ``-`` and ``.``) is a secret word
(``db_password``, ``ikhokha.app-secret``), unless it is a known safe name (``key_prefix``). A value
is secret when it was learned from a secret-named variable; it is then removed wherever it appears,
as are passwords inside URLs (``postgresql://user:<password>@host``). no_log alone is not enough:
secrets reach facts, extra vars and messages by other ways, so redaction goes by name and by value.
"""

from __future__ import annotations

import json
import re

REDACTED = "<redacted>"

SECRET_WORDS = frozenset((
    "password", "passwd", "pass", "secret", "token", "key", "dsn", "credential", "credentials",
    "authorization", "cookie", "apikey", "private", "sign", "signature", "vault",
))
# Names that look secret but are not.
SAFE_NAMES = frozenset(("key_prefix", "object_key", "backup_key", "sort_key", "no_log"))
# Secret although their names do not say so: the notification webhook's URL embeds its token.
SECRET_NAMES = frozenset(("payops_notify_url",))
# Run together, these are secret too (apiKey, accessKey, secretKey).
_JOINED = frozenset(("apikey", "accesskey", "secretkey"))
# Shorter values are not hidden: replacing "on" or "001" everywhere would garble the output.
MIN_SECRET_LENGTH = 4
URL_PASSWORD_RE = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]+:)[^/@\s]+@", re.IGNORECASE)


class Redactor:
    """Which names are secret, and the secret values learned so far."""

    def __init__(self, secret_words=SECRET_WORDS, safe_names=SAFE_NAMES, extra_names=()):
        self.secret_words = frozenset(word.lower() for word in secret_words)
        self.safe_names = frozenset(name.lower() for name in safe_names)
        self.secret_names = SECRET_NAMES | frozenset(str(name).lower() for name in extra_names)
        self.values = set()

    def is_secret_name(self, name):
        lowered = str(name).lower()
        if lowered in self.safe_names:
            return False
        if lowered in self.secret_names:
            return True
        parts = re.split(r"[_\-.]", lowered)
        return any(part in self.secret_words for part in parts) or lowered.replace("_", "") in _JOINED

    def learn(self, value):
        """Remember a secret value (strings, numbers, nested in lists and dicts); templates are no secret."""
        if isinstance(value, dict):
            for item in value.values():
                self.learn(item)
        elif isinstance(value, (list, tuple, set)):
            for item in value:
                self.learn(item)
        elif value is not None and not isinstance(value, bool):
            text = str(value).strip()
            if len(text) >= MIN_SECRET_LENGTH and "{{" not in text:
                self.values.add(text)

    def learn_variables(self, variables):
        """Remember the values of every secret-named variable, at any depth."""
        if isinstance(variables, dict):
            for key, value in variables.items():
                if self.is_secret_name(key):
                    self.learn(value)
                else:
                    self.learn_variables(value)
        elif isinstance(variables, (list, tuple)):
            for item in variables:
                self.learn_variables(item)

    def scrub_text(self, text):
        """The text with passwords in URLs and every learned value replaced (also JSON-escaped)."""
        cleaned = URL_PASSWORD_RE.sub(lambda match: match.group("head") + REDACTED + "@", text)
        for value in sorted(self.values, key=len, reverse=True):
            if value in cleaned:
                cleaned = cleaned.replace(value, REDACTED)
            escaped = json.dumps(value)[1:-1]
            if escaped != value and escaped in cleaned:
                cleaned = cleaned.replace(escaped, REDACTED)
        return cleaned

    def redact(self, value, drop=False, path=""):
        """(value without secrets, [paths of what was removed]).

        Secret-named keys are replaced by REDACTED (left out when drop=True); learned values and URL
        passwords are replaced inside strings. Numbers, booleans and None are kept as they are.
        """
        removed = []

        def walk(item, where, name):
            if name is not None and self.is_secret_name(name) and item not in (None, "", [], {}):
                removed.append(where)
                return _DROP if drop else REDACTED
            if isinstance(item, dict):
                result = {}
                for key, inner in item.items():
                    cleaned = walk(inner, f"{where}.{key}" if where else str(key), key)
                    if cleaned is not _DROP:
                        result[str(key)] = cleaned
                return result
            if isinstance(item, (list, tuple, set)):
                return [walk(inner, f"{where}[{index}]", None) for index, inner in enumerate(item)]
            if isinstance(item, (bool, int, float)) or item is None:
                return item
            text = str(item)
            cleaned = self.scrub_text(text)
            if cleaned != text:
                removed.append(where)
            return cleaned

        return walk(value, path, None), removed


_DROP = object()


def is_secret_name(name, extra_names=()):
    return Redactor(extra_names=extra_names).is_secret_name(name)


def secret_values_of(variables, extra_names=()):
    """The values of every secret-named variable, nested too."""
    redactor = Redactor(extra_names=extra_names)
    redactor.learn_variables(variables)
    return set(redactor.values)


def redact(value, secret_values=(), extra_names=(), drop=False, path=""):
    """(value without secrets, [paths of what was removed]); see Redactor.redact."""
    redactor = Redactor(extra_names=extra_names)
    redactor.values.update(secret_values)
    return redactor.redact(value, drop=drop, path=path)


def fill_redacted(backed_up, current):
    """The backed-up JSON value with each REDACTED placeholder taken from the current one at the same
    place; (value, [places that could not be filled])."""
    missing = []

    def walk(item, live, where):
        if item == REDACTED:
            if live is None or live == REDACTED:
                missing.append(where or "(the whole file)")
                return item
            return live
        if isinstance(item, dict):
            live = live if isinstance(live, dict) else {}
            return {key: walk(inner, live.get(key), f"{where}.{key}" if where else str(key))
                    for key, inner in item.items()}
        if isinstance(item, list):
            live = live if isinstance(live, list) else []
            return [walk(inner, live[index] if index < len(live) else None, f"{where}[{index}]")
                    for index, inner in enumerate(item)]
        return item

    return walk(backed_up, current, ""), missing
