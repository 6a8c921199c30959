"""The migrations' pure logic (module_utils/payops_migrations.py): names, order, archives, and the
shipped payops migrations themselves. The database side is tests/integration/test_database.py."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest
from ansible_collections.betaskill.payops.plugins.module_utils import payops_migrations as migrations

MIGRATIONS = Path(__file__).resolve().parents[2] / "schema" / "migrations"


def test_migrations_run_in_numeric_order_then_by_name():
    files = dict.fromkeys(["10_b.sql", "9_a.sql", "0010_a.sql", "2-x.sql"], b"")
    assert migrations.ordered(files) == ["2-x.sql", "9_a.sql", "0010_a.sql", "10_b.sql"]


def test_a_file_without_a_leading_number_is_named():
    with pytest.raises(migrations.MigrationError, match=r"these are not: add_index\.sql, v2\.sql"):
        migrations.ordered(dict.fromkeys(["0001_ok.sql", "add_index.sql", "v2.sql"], b""))


def test_an_archive_gives_the_files_directly_under_its_folder(tmp_path):
    archive = tmp_path / "app.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in (("./migrations/0001_a.sql", "SELECT 1;"), ("migrations/deeper/0002_b.sql", "no"),
                           ("migrations/README", "no"), ("bin/0003_c.sql", "no")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert migrations.read_archive(str(archive), "migrations") == {"0001_a.sql": b"SELECT 1;"}


def test_an_unreadable_archive_or_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(migrations.MigrationError, match="cannot read the migrations in archive"):
        migrations.read_archive(str(tmp_path / "missing.tar"), "migrations")
    with pytest.raises(migrations.MigrationError, match="is not a folder of migrations"):
        migrations.read_folder(str(tmp_path / "nothing"))


@pytest.mark.parametrize(("value", "valid"), [("2s", True), ("500ms", True), ("1min", True), ("250", True),
                                              ("2 s", True), ("soon", False), ("2s; DROP", False), ("", False)])
def test_lock_timeout_takes_a_duration_and_nothing_else(value, valid):
    assert bool(migrations.LOCK_TIMEOUT.match(value)) is valid


def test_the_shipped_migrations_are_plain_sql_that_closes_each_function():
    files = migrations.read_folder(str(MIGRATIONS))
    assert migrations.ordered(files)[0] == "0001_baseline.sql"
    for name, content in files.items():
        text = content.decode("utf-8")
        transaction = re.search(r"^\s*(BEGIN|COMMIT)\s*;", text, re.I | re.M)
        assert not transaction, f"{name}: the installer owns the transaction"
        for function in re.findall(r"CREATE (?:OR REPLACE )?FUNCTION (payops\.\w+)", text):
            assert f"REVOKE ALL ON FUNCTION {function}(" in text, f"{name}: {function} is not revoked from PUBLIC"
