"""The one redaction (plugins/module_utils/payops_redact.py) that the audit callback, the modules and
`payops run` share: secret names, learned values, URL passwords, one placeholder."""

from __future__ import annotations

import json

import pytest
from ansible_collections.betaskill.payops.plugins.module_utils.payops_redact import REDACTED, Redactor


@pytest.mark.parametrize("name", ["db_password", "PAYOPS_DB_PASSWORD", "ikhokha.app-secret", "api_token",
                                  "apiKey", "secretKey", "payops_notify_url", "Authorization", "vault_x"])
def test_secret_names(name):
    assert Redactor().is_secret_name(name)


@pytest.mark.parametrize("name", ["key_prefix", "object_key", "payops_db_host", "keepalive", "monkey", "passage"])
def test_names_that_only_look_secret(name):
    assert not Redactor().is_secret_name(name)


def test_configured_words_and_extra_names_replace_the_defaults():
    redactor = Redactor(secret_words=["pin"], safe_names=[], extra_names=["course_code"])
    assert redactor.is_secret_name("card_pin") and redactor.is_secret_name("COURSE_CODE")
    assert not redactor.is_secret_name("db_password")


def test_learned_values_are_removed_everywhere_also_json_escaped():
    redactor = Redactor()
    redactor.learn_variables({"web-1": {"payops_db_password": 'pw"1234', "edge_port": 8080,
                                        "aws": {"secret_key": ["k3y-value"]}, "short_token": "ab"}})
    assert redactor.values == {'pw"1234', "k3y-value"}
    text = "a pw\"1234 b " + json.dumps({"v": 'pw"1234'}) + " k3y-value ab"
    assert redactor.scrub_text(text) == f"a {REDACTED} b " + json.dumps({"v": REDACTED}) + f" {REDACTED} ab"


def test_templates_booleans_and_short_values_are_not_learned():
    redactor = Redactor()
    redactor.learn(["{{ vault_password }}", True, "on", None])
    assert redactor.values == set()


def test_url_passwords_are_removed_without_knowing_them():
    assert Redactor().scrub_text("postgresql://ops:hunter22@db:5432/x and https://h/p") == \
        f"postgresql://ops:{REDACTED}@db:5432/x and https://h/p"


def test_redact_replaces_secret_keys_keeps_other_types_and_names_what_it_removed():
    redactor = Redactor()
    redactor.learn("s3cr3t-value")
    value = {"dsn": "postgresql://u:pw-1234@h/db", "port": 8000, "on": True, "empty_token": "",
             "nested": [{"token": "abcd"}, "says s3cr3t-value"], "note": "plain"}
    clean, removed = redactor.redact(value)
    assert clean == {"dsn": REDACTED, "port": 8000, "on": True, "empty_token": "",
                     "nested": [{"token": REDACTED}, f"says {REDACTED}"], "note": "plain"}
    assert removed == ["dsn", "nested[0].token", "nested[1]"]
    dropped, _removed = redactor.redact({"password": "x" * 8, "user": "ops"}, drop=True)
    assert dropped == {"user": "ops"}
