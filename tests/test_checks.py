"""Django system checks: the static declaration check and the Tags.database live check."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection, models
from django.test.utils import isolate_apps

from tenant_indexes import TenantForeignKey, TenantIndex
from tenant_indexes.checks import (
    check_live_tenant_indexes,
    check_tenant_index_declarations,
    declaration_messages,
)


def _ours(messages) -> list:
    return [m for m in messages if m.id and m.id.startswith("tenant_indexes.")]


def test_static_check__helpdesk_models_are_clean() -> None:
    """The help desk's 37-character name is its contract, so no I001 for its models."""
    assert _ours(check_tenant_index_declarations()) == []


def test_static_check__manage_py_check_passes_on_the_helpdesk() -> None:
    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)  # raises SystemCheckError on any error
    assert "tenant_indexes." not in out.getvalue() + err.getvalue()


@isolate_apps("tests.testapp")
def test_static_check__tenant_model_without_tenant_leading_index_is_e006() -> None:
    class Reply(models.Model):  # noqa: DJ008
        tenant = TenantForeignKey()
        ticket_ref = models.IntegerField()

        class Meta:
            app_label = "testapp"
            # Like idx_messages_ticket_tenant, but with no tenant-leading index beside it.
            indexes = [models.Index(fields=["ticket_ref", "tenant"], name="reply_ticket_tenant")]

    (message,) = declaration_messages(Reply)
    assert message.id == "tenant_indexes.E006" and message.level == checks.ERROR
    assert message.obj is Reply and "TenantIndex" in message.hint


@isolate_apps("tests.testapp")
def test_static_check__ticket_leading_index_is_fine_beside_a_tenant_leading_one() -> None:
    class Reply(models.Model):  # noqa: DJ008
        tenant = TenantForeignKey()
        ticket_ref = models.IntegerField()

        class Meta:
            app_label = "testapp"
            indexes = [
                TenantIndex(name="reply_tenant"),
                models.Index(fields=["ticket_ref", "tenant"], name="reply_ticket_tenant"),
            ]

    assert declaration_messages(Reply) == []


@isolate_apps("tests.testapp")
def test_static_check__index_names_over_30_are_info_over_63_are_e007() -> None:
    class Longish(models.Model):  # noqa: DJ008
        tenant = TenantForeignKey()

        class Meta:
            app_label = "testapp"
            indexes = [TenantIndex(name="longish_" + "x" * 23), TenantIndex(name="l" * 64)]

    ids = sorted(m.id for m in declaration_messages(Longish))
    assert ids == ["tenant_indexes.E007", "tenant_indexes.I001"]


@isolate_apps("tests.testapp")
def test_static_check__implicit_tenant_fk_index_duplicating_an_explicit_one_is_w003() -> None:
    class Dup(models.Model):  # noqa: DJ008
        tenant = TenantForeignKey(db_index=True)

        class Meta:
            app_label = "testapp"
            indexes = [TenantIndex(fields=["id"], name="dup_tenant")]

    (message,) = declaration_messages(Dup)
    assert message.id == "tenant_indexes.W003" and "db_index=False" in message.hint


def test_database_check__returns_nothing_without_databases() -> None:
    assert check_live_tenant_indexes(databases=None) == []


@pytest.mark.django_db
def test_database_check__healthy_default_passes_and_sqlite_is_skipped() -> None:
    assert check_live_tenant_indexes(databases=["default", "sqlite"]) == []
    call_command("check", "--database", "default", stdout=StringIO())


@pytest.mark.django_db
def test_database_check__reports_the_live_findings_through_manage_py_check() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX idx_audit_logs_tenant_id")
    messages = check_live_tenant_indexes(databases=["default"])
    assert sorted(m.id for m in messages) == ["tenant_indexes.E001", "tenant_indexes.E004"]
    assert all(m.hint for m in messages)
    with pytest.raises(SystemCheckError, match=r"tenant_indexes\.E001"):
        call_command("check", "--database", "default", stdout=StringIO(), stderr=StringIO())


@pytest.mark.django_db
def test_database_check__never_stops_migrate() -> None:
    """migrate runs database checks first; a live finding must not block it."""
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX idx_audit_logs_tenant_id")
    call_command("migrate", "--database", "default", verbosity=0, skip_checks=False)
    with pytest.raises(SystemCheckError):
        call_command("check", "--database", "default", stdout=StringIO(), stderr=StringIO())
