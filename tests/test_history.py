"""Usage history on the real server: --record, --since deltas, resets bridged."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import F

from tenant_indexes.helpdesk.models import Tenant, User
from tenant_indexes.models import IndexUsageSnapshot

INDEX = "idx_users_tenant_id"


def _stats(*args: str) -> dict[str, Any]:
    out = StringIO()
    call_command(
        "tenant_index_stats", "--database", "default", "--format", "json",
        "tenant_indexes_helpdesk", *args, stdout=out,
    )  # fmt: skip
    return json.loads(out.getvalue())


def _tenant_scans(tenant: Tenant, times: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a tiny table: force the index scan
        for _ in range(times):
            cursor.execute("SELECT count(*) FROM users WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("RESET enable_seqscan")
        cursor.execute("SELECT pg_stat_force_next_flush()")


def _history_of(doc: dict[str, Any], name: str = INDEX) -> dict[str, Any]:
    return next(h for h in doc["history"]["indexes"] if h["name"] == name)


@pytest.mark.django_db(transaction=True)
def test_record__stores_one_row_per_index_with_the_servers_facts() -> None:
    _stats("--record")
    rows = list(IndexUsageSnapshot.objects.filter(index_name=INDEX))
    assert len(rows) == 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT idx_scan, pg_relation_size(indexrelid), pg_postmaster_start_time(), "
            "pg_is_in_recovery() FROM pg_stat_user_indexes WHERE indexrelname = %s",
            [INDEX],
        )
        scans, size, started, standby = cursor.fetchone()
    row = rows[0]
    assert (row.database, row.schema_name, row.table_name) == ("default", "public", "users")
    assert (row.idx_scan, row.size_bytes, row.postmaster_start, row.in_recovery) == (
        scans, size, started, standby,
    )  # fmt: skip
    total = IndexUsageSnapshot.objects.count()
    assert total == len(_stats()["indexes"])  # every index of the tenant tables, once


@pytest.mark.django_db(transaction=True)
def test_since__record_scan_record_gives_the_scans_in_between() -> None:
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    User.objects.create(tenant=tenant, email="a@example.com")
    _stats("--record")
    _tenant_scans(tenant, 3)
    doc = _stats("--record", "--since", "1")
    history = _history_of(doc)
    assert history["idx_scan"] == 3
    assert history["idx_scan_by_database"] == {"default": 3}
    assert history["segments"] == 1
    other = _history_of(doc, "idx_tickets_tenant_id")
    assert other["idx_scan"] == 0


@pytest.mark.django_db(transaction=True)
def test_since__a_reset_between_records_starts_a_new_segment_not_a_negative_delta() -> None:
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    User.objects.create(tenant=tenant, email="a@example.com")
    _tenant_scans(tenant, 5)
    _stats("--record")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_reset()")
    _tenant_scans(tenant, 2)
    doc = _stats("--record", "--since", "1")
    history = _history_of(doc)
    assert history["idx_scan"] == 2  # 5 -> 0 (reset) -> 2: two scans, not -3
    assert history["segments"] == 2
    assert all(h["idx_scan"] >= 0 for h in doc["history"]["indexes"])


@pytest.mark.django_db(transaction=True)
def test_since__text_lists_the_history_and_says_when_there_is_none() -> None:
    out = StringIO()
    call_command("tenant_index_stats", "--database", "default", "--since", "7", stdout=out)
    assert "no snapshots recorded (tenant_index_stats --record)" in out.getvalue()
    _stats("--record")
    _stats("--record")
    out = StringIO()
    call_command("tenant_index_stats", "--database", "default", "--since", "7", stdout=out)
    assert "recorded history, last 7 days:" in out.getvalue()
    assert INDEX in out.getvalue().split("recorded history")[1]


@pytest.mark.django_db
def test_since__not_a_positive_number_exits_2() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as e:
        call_command("tenant_index_stats", "--since", "0", stdout=StringIO())
    assert e.value.returncode == 2


def _record(database: str, minutes: int, scans: int, size: int = 8192, reset: Any = None) -> Any:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    return IndexUsageSnapshot(
        recorded_at=start + timedelta(minutes=minutes), database=database,
        schema_name="public", table_name="users", index_name=INDEX, idx_scan=scans,
        idx_tup_read=scans, idx_tup_fetch=scans, size_bytes=size, stats_reset=reset,
        postmaster_start=start, in_recovery=database != "default",
    )  # fmt: skip


def test_deltas__a_replicas_scans_are_summed_with_the_primarys_and_a_crash_bridged() -> None:
    from tenant_indexes.history import deltas

    records = [
        _record("default", 0, 10, size=8192),
        _record("default", 720, 14, size=8192 * 2),
        _record("default", 1440, 20, size=8192 * 3),  # one day later: +16 kB
        _record("replica", 0, 100),
        _record("replica", 720, 3),  # crashed: counters restart from zero
        _record("replica", 1440, 9),
    ]
    (history,) = deltas(records)
    assert history.per_alias == {"default": 10, "replica": 9}
    assert history.idx_scan == 19
    assert history.segments == 2
    assert history.size_growth_per_day == 8192 * 2


@pytest.mark.django_db(transaction=True)
def test_w001__judged_over_recorded_history_when_it_covers_unused_days() -> None:
    """Young statistics (just reset) say "too young"; 40 days of recorded history with no
    scan say unused, and an index scanned in that span is used."""
    from datetime import timedelta

    tenant = Tenant.objects.create(name="Acme", slug="acme")
    User.objects.create(tenant=tenant, email="a@example.com")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_reset()")
    _stats("--record")
    IndexUsageSnapshot.objects.update(recorded_at=F("recorded_at") - timedelta(days=40))
    without = {ix["name"]: ix["unused"] for ix in _stats()["indexes"]}
    _tenant_scans(tenant, 2)
    assert without["idx_audit_logs_tenant_id"] == "statistics too young to judge"
    _stats("--record")
    doc = _stats()
    verdicts = {ix["name"]: ix for ix in doc["indexes"]}
    assert verdicts["idx_audit_logs_tenant_id"]["unused"] == "unused"
    assert verdicts["idx_audit_logs_tenant_id"]["unused_judged_over_history_days"] == 30
    assert verdicts[INDEX]["unused"] == "used"
    (w001,) = [
        f for f in doc["findings"]
        if f["id"] == "tenant_indexes.W001" and f["index"] == "idx_audit_logs_tenant_id"
    ]  # fmt: skip
    assert "in the last 30 days of recorded history" in w001["message"]
    # Less history than UNUSED_DAYS: back to the statistics' age.
    from django.test import override_settings

    with override_settings(TENANT_INDEXES={"UNUSED_DAYS": 60}):
        verdicts = {ix["name"]: ix["unused"] for ix in _stats()["indexes"]}
    assert verdicts["idx_audit_logs_tenant_id"] == "statistics too young to judge"


def _check_w001() -> dict[str, str]:
    from django.core.management.base import CommandError

    out = StringIO()
    try:
        call_command(
            "check_tenant_indexes", "--database", "default", "--format", "json",
            "tenant_indexes_helpdesk", stdout=out,
        )  # fmt: skip
    except CommandError as e:
        assert e.returncode == 1, str(e)
    doc = json.loads(out.getvalue())
    return {f["index"]: f["message"] for f in doc["findings"] if f["id"] == "tenant_indexes.W001"}


@pytest.mark.django_db(transaction=True)
def test_w001__the_check_judges_over_the_same_recorded_history_as_stats() -> None:
    """CHECK_INCLUDES_USAGE: the check's W001 is stats' W001, with history and without."""
    from datetime import timedelta

    from django.test import override_settings

    tenant = Tenant.objects.create(name="Acme", slug="acme")
    User.objects.create(tenant=tenant, email="a@example.com")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_reset()")
    with override_settings(TENANT_INDEXES={"CHECK_INCLUDES_USAGE": True}):
        # No history, young statistics: neither judges anything unused.
        assert _check_w001() == {}
        _stats("--record")
        IndexUsageSnapshot.objects.update(recorded_at=F("recorded_at") - timedelta(days=40))
        _tenant_scans(tenant, 2)
        _stats("--record")
        stats = {
            f["index"]: f["message"]
            for f in _stats()["findings"]
            if f["id"] == "tenant_indexes.W001"
        }
        check = _check_w001()
    assert set(check) == set(stats)  # the messages differ only in the size each read
    for name, message in check.items():
        assert message.split("; it costs")[0] == stats[name].split("; it costs")[0]
    assert "idx_audit_logs_tenant_id" in check and INDEX not in check
    assert "in the last 30 days of recorded history" in check["idx_audit_logs_tenant_id"]


def test_history_database__not_an_alias_is_e009_and_one_line_exit_2() -> None:
    from django.core.management.base import CommandError
    from django.test import override_settings

    from tenant_indexes.checks import check_tenant_index_declarations

    with override_settings(TENANT_INDEXES={"HISTORY_DATABASE": "archive"}):
        messages = check_tenant_index_declarations()
        with pytest.raises(CommandError) as info:
            call_command("tenant_index_stats", "--record", stdout=StringIO())
    assert [m.id for m in messages] == ["tenant_indexes.E009"]
    assert "HISTORY_DATABASE" in messages[0].msg and "must be an alias" in messages[0].msg
    assert info.value.returncode == 2 and "\n" not in str(info.value)
    assert "must be an alias of settings.DATABASES" in str(info.value)
