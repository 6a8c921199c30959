"""Pure logic of configuration backups and recovery:verify: secret names, redaction, refilling, row-count verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]




def test_the_audit_callback_documents_the_secret_words_and_safe_names_it_uses(backup_utils):
    """One notion of a secret name: the callback's documented defaults are payops_redact's own."""
    import yaml
    from ansible_collections.betaskill.payops.plugins.callback import audit
    from ansible_collections.betaskill.payops.plugins.module_utils import payops_redact

    options = yaml.safe_load(audit.DOCUMENTATION)["options"]
    assert set(options["secret_words"]["default"]) == payops_redact.SECRET_WORDS
    assert set(options["safe_names"]["default"]) == payops_redact.SAFE_NAMES
    assert backup_utils.is_secret_name is payops_redact.is_secret_name
    for name in ("payops_db_password", "payops_ikhokha_app_secret", "payops_aws_secret_access_key",
                 "vault_payops_ikhokha_app_id", "dsn", "payops_notify_url", "api-token"):
        assert backup_utils.is_secret_name(name), name
    for name in ("payops_db_host", "edge_api_keepalive", "key_prefix", "ikhokha_app_id", "edge_hsts_max_age"):
        assert not backup_utils.is_secret_name(name), name


def test_redact_replaces_secret_keys_and_secret_values_anywhere(backup_utils):
    document = {"dsn": "postgresql://u:pw-1234@h/db", "ikhokha_app_secret": "s3cr3t-value", "port": 8000,
                "nested": {"token": "abcd", "url": "http://x:pw-1234@h/", "note": "uses s3cr3t-value"}}
    clean, removed = backup_utils.redact(document, {"s3cr3t-value"})
    assert clean["dsn"] == clean["ikhokha_app_secret"] == clean["nested"]["token"] == "<redacted>"
    assert clean["port"] == 8000
    assert "pw-1234" not in str(clean) and "s3cr3t-value" not in str(clean)
    assert set(removed) == {"dsn", "ikhokha_app_secret", "nested.token", "nested.url", "nested.note"}


def test_fill_redacted_takes_secrets_from_the_live_file_and_names_what_it_cannot(backup_utils):
    backed_up = {"dsn": "<redacted>", "port": 8000, "nested": {"secret": "<redacted>"}}
    merged, missing = backup_utils.fill_redacted(backed_up, {"dsn": "live-dsn", "port": 9000,
                                                             "nested": {"secret": "live"}})
    assert merged == {"dsn": "live-dsn", "port": 8000, "nested": {"secret": "live"}} and missing == []
    _merged, missing = backup_utils.fill_redacted(backed_up, {"port": 1})
    assert missing == ["dsn", "nested.secret"]


def test_secret_values_of_learns_nested_secret_values(backup_utils):
    found = backup_utils.secret_values_of({"web-1": {"payops_db_password": "pw-1234", "edge_x": "_",
                                                     "payops_aws": {"secret_key": "k3y-value"}, "short_token": "ab"}})
    assert found == {"pw-1234", "k3y-value"}


@pytest.mark.parametrize(("expected", "live", "verdict", "states"), [
    ({"public.payments": 10}, {"public.payments": 10}, "healthy", ["same"]),
    ({"public.payments": 10}, {"public.payments": 12}, "healthy", ["grown"]),
    ({"public.payments": 10}, {"public.payments": 9}, "degraded", ["shrunk"]),
    ({"public.payments": 10}, {}, "degraded", ["missing"]),
    ({}, {"public.new_table": 3}, "healthy", ["new"]),
    ({"auth.sessions": 10}, {"auth.sessions": 2}, "healthy", ["volatile"]),
])
def test_judge_counts(backup_utils, expected, live, verdict, states):
    got, rows = backup_utils.judge_counts(expected, live)
    assert got == verdict
    assert [row["state"] for row in rows] == states


def test_safe_member_name_refuses_escapes(backup_utils):
    assert backup_utils.safe_member_name("./web-1/nginx/nginx.conf") == "web-1/nginx/nginx.conf"
    for bad in ("../etc/passwd", "/etc/passwd", "web-1/../../x"):
        with pytest.raises(backup_utils.BackupError):
            backup_utils.safe_member_name(bad)
