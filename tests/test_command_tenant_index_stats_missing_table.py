"""``manage.py tenant_index_stats`` when a tenant model's table does not exist: E005, exit 1.

The same finding, with the same hint, as ``check_tenant_indexes`` gives: statistics of a
table that is not there are no statistics, and "ok" would hide an unmigrated database.
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection


def _command(name: str, *args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=StringIO())
    except CommandError as e:
        return e.returncode, out.getvalue()
    return 0, out.getvalue()


def _rename(old: str, new: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{old}" RENAME TO "{new}"')


ARGS = ("--database", "default", "tenant_indexes_helpdesk")


@pytest.mark.django_db
def test_stats__missing_table_is_e005_and_exit_1_in_json_as_the_check_says() -> None:
    _rename("files", "files_elsewhere")
    code, text = _command("tenant_index_stats", "--format", "json", *ARGS)
    doc = json.loads(text)
    e005 = [f for f in doc["findings"] if f["id"] == "tenant_indexes.E005"]
    assert (code, doc["status"]) == (1, "error"), text
    assert [(f["schema"], f["table"], f["level"]) for f in e005] == [("public", "files", "error")]
    check_code, check_text = _command("check_tenant_indexes", "--format", "json", *ARGS)
    (check_e005,) = [
        f for f in json.loads(check_text)["findings"] if f["id"] == "tenant_indexes.E005"
    ]
    assert check_code == 1
    assert (e005[0]["message"], e005[0]["hint"]) == (check_e005["message"], check_e005["hint"])


@pytest.mark.django_db
def test_stats__missing_table_is_e005_and_exit_1_in_text() -> None:
    _rename("files", "files_elsewhere")
    code, text = _command("tenant_index_stats", *ARGS)
    assert code == 1, text
    assert "tenant_indexes.E005" in text and "table public.files of" in text, text
    assert "migrate tenant_indexes_helpdesk --database default" in text, text


@pytest.mark.django_db
def test_stats__unmigrated_database_is_not_ok() -> None:
    """Every tenant table missing (an unmigrated database): one E005 each, exit 1."""
    tables = ["files", "users", "tickets"]
    for table in tables:
        _rename(table, f"{table}_elsewhere")
    code, text = _command("tenant_index_stats", "--format", "json", *ARGS)
    doc = json.loads(text)
    missing = {f["table"] for f in doc["findings"] if f["id"] == "tenant_indexes.E005"}
    assert code == 1 and doc["status"] == "error", text
    assert missing == set(tables)
