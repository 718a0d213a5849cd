"""Usage counters read from real statistics views, and the W001 verdicts built on them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from tenant_indexes.helpdesk.models import Tenant, User
from tenant_indexes.statistics import ServerStats, usage_snapshot
from tenant_indexes.usageanalysis import UnusedVerdict, UsageThresholds, analyse_usage, stats_age
from tests.support.helpdesk import HELPDESK_TABLES

SEED_TABLES = {("public", t): "tenant_id" for t in HELPDESK_TABLES if t != "tenants"}


def _view_row(sql: str, params: list) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _index_view(name: str) -> tuple:
    return _view_row(
        "SELECT idx_scan, idx_tup_read, idx_tup_fetch, pg_relation_size(indexrelid) "
        "FROM pg_stat_user_indexes WHERE indexrelname = %s",
        [name],
    )


def _flush_statistics() -> None:
    # The backend flushes its pending counters before it reports "ready for query", so when
    # this returns the counters of every earlier (committed) statement are visible to all.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")


def _reset_index_counters(*names: str) -> None:
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute("SELECT pg_stat_reset_single_table_counters(%s::regclass)", [name])


@pytest.mark.django_db(transaction=True)
def test_usage_snapshot__tenant_query_moves_the_counters_the_views_report() -> None:
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    User.objects.bulk_create([User(tenant=tenant, email=f"u{i}@example.com") for i in range(20)])
    _flush_statistics()
    before = _index_view("idx_users_tenant_id")

    with connection.cursor() as cursor:
        # On a 20-row table the planner would rightly read the heap; the point here is the
        # counters of an index scan, so take the sequential scan off the table.
        cursor.execute("SET enable_seqscan = off")
    try:
        assert len(list(User.objects.for_tenant(tenant))) == 20
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET enable_seqscan")
    _flush_statistics()

    snapshot = usage_snapshot("default", list(SEED_TABLES))
    index = next(ix for ix in snapshot.indexes if ix.name == "idx_users_tenant_id")
    after = _index_view("idx_users_tenant_id")
    assert after[0] == before[0] + 1
    assert (
        index.idx_scan,
        index.idx_tup_read,
        index.idx_tup_fetch,
        index.exact_size_bytes,
    ) == after
    assert index.columns == ("tenant_id",)
    assert (index.method, index.unique, index.primary, index.constraint) == (
        "btree",
        False,
        False,
        None,
    )

    table = next(t for t in snapshot.tables if t.table == "users")
    seq_scan, idx_scan, n_live_tup, total = _view_row(
        "SELECT seq_scan, idx_scan, n_live_tup, pg_total_relation_size(relid) "
        "FROM pg_stat_user_tables WHERE relname = 'users'",
        [],
    )
    assert (table.seq_scan, table.idx_scan, table.n_live_tup, table.total_bytes) == (
        seq_scan,
        idx_scan,
        n_live_tup,
        total,
    )
    assert n_live_tup == 20

    if connection.pg_version >= 160000:
        (last,) = _view_row(
            "SELECT last_idx_scan FROM pg_stat_user_indexes "
            "WHERE indexrelname = 'idx_users_tenant_id'",
            [],
        )
        assert last is not None and index.last_idx_scan == last
    else:
        assert index.last_idx_scan is None
        stats, _, _ = analyse_usage([snapshot], SEED_TABLES, UsageThresholds())
        users = next(s for s in stats if s.index.name == "idx_users_tenant_id")
        assert users.as_dict()["last_idx_scan"] == "unknown"


@pytest.mark.django_db
def test_w001__unique_and_primary_indexes_are_never_unused() -> None:
    _reset_index_counters("users_pkey", "files_storage_key_key", "idx_audit_logs_tenant_id")
    snapshot = usage_snapshot("default", [*SEED_TABLES, ("public", "tenants")])
    stats, _, _ = analyse_usage(
        [snapshot], SEED_TABLES, UsageThresholds(stats_min_age=timedelta(0))
    )
    verdicts = {s.index.name: s for s in stats}
    for name in ("users_pkey", "files_storage_key_key", "tenants_slug_key"):
        assert verdicts[name].unused is UnusedVerdict.ENFORCES_CONSTRAINT, name
    assert verdicts["users_pkey"].idx_scan == 0
    # The control: a plain index with the same zero count is unused.
    assert verdicts["idx_audit_logs_tenant_id"].idx_scan == 0
    assert verdicts["idx_audit_logs_tenant_id"].unused is UnusedVerdict.UNUSED


@pytest.mark.django_db
def test_w001__statistics_reset_just_now_are_too_young_to_judge() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_reset()")
    (reset_at,) = _view_row(
        "SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()", []
    )
    snapshot = usage_snapshot("default", list(SEED_TABLES))
    stats, _, ages = analyse_usage([snapshot], SEED_TABLES, UsageThresholds())
    assert ages[0].source == "stats_reset" and ages[0].since == reset_at
    assert ages[0].age < timedelta(days=7)
    assert {s.unused for s in stats} == {
        UnusedVerdict.TOO_YOUNG,
        UnusedVerdict.ENFORCES_CONSTRAINT,
    }
    # The same counters with the age requirement lifted: now they are judged.
    stats, _, _ = analyse_usage(
        [snapshot], SEED_TABLES, UsageThresholds(stats_min_age=timedelta(0))
    )
    assert UnusedVerdict.UNUSED in {s.unused for s in stats}


def test_stats_age__never_reset_counts_from_the_server_start() -> None:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    server = ServerStats(
        alias="default",
        server_version="16.2",
        server_version_num=160002,
        in_recovery=False,
        stats_reset=None,
        postmaster_start=started,
        now=started + timedelta(days=3),
    )
    age = stats_age(server)
    assert (age.since, age.age, age.source) == (started, timedelta(days=3), "server start")


@pytest.mark.django_db
def test_usage_snapshot__four_statements_whatever_the_number_of_tables() -> None:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        usage_snapshot("default", [("public", "users")])
    with CaptureQueriesContext(connection) as all_tables:
        snapshot = usage_snapshot("default", list(SEED_TABLES))
    assert len(snapshot.tables) == len(SEED_TABLES)

    def statements(captured: CaptureQueriesContext) -> list[str]:
        # The rolled-back savepoint around the read is the transaction's, not the read's.
        return [
            q["sql"]
            for q in captured
            if not q["sql"].startswith(("SAVEPOINT", "ROLLBACK TO", "RELEASE"))
        ]

    assert len(statements(one)) == len(statements(all_tables)) == 4


@pytest.mark.django_db(transaction=True)
def test_w010__sequential_scans_dominating_a_large_tenant_table() -> None:
    from django.test import override_settings

    from tenant_indexes.usage import collect_usage

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_reset()")
        cursor.execute(
            "INSERT INTO tenants (id, name, slug, created_at) "
            "SELECT gen_random_uuid(), 't' || g, 't' || g, now() FROM generate_series(1, 20) g"
        )
        cursor.execute(
            "INSERT INTO files (tenant_id, name, size, content_type, storage_key, created_at) "
            "SELECT t.id, 'f', 1, 'text/plain', t.id::text || '/' || g, now() "
            "FROM tenants t CROSS JOIN generate_series(1, 100) g"
        )
        for _ in range(5):
            # No tenant filter: the kind of query that reads every tenant's rows.
            cursor.execute("SELECT count(*) FROM files WHERE content_type = 'image/png'")
    _flush_statistics()
    seq_scan, idx_scan, live = _view_row(
        "SELECT seq_scan, idx_scan, n_live_tup FROM pg_stat_user_tables WHERE relname = 'files'",
        [],
    )
    assert live == 2000 and seq_scan >= 5

    config = {"SEQ_SCAN_MIN_ROWS": 1000, "SEQ_SCAN_MIN_SCANS": 5, "SEQ_SCAN_MIN_SHARE": 0.5}
    with override_settings(TENANT_INDEXES=config):
        report = collect_usage(["default"], ["tenant_indexes_helpdesk"])
    files = next(t for t in report.tables if t.table == "files")
    assert (files.seq_scan, files.idx_scan, files.n_live_tup) == (seq_scan, idx_scan, live)
    heavy = [f.table for f in report.findings if f.id == "tenant_indexes.W010"]
    assert heavy == ["files"]  # users etc.: too few rows; tenants is not tenant-scoped

    # Small tables are ignored: the same counters under the default 10,000-row floor.
    report = collect_usage(["default"], ["tenant_indexes_helpdesk"])
    assert not [f for f in report.findings if f.id == "tenant_indexes.W010"]


@pytest.mark.django_db(transaction=True)
def test_representative_tenants__typical_outside_most_common_vals_largest_first_of_them() -> None:
    from tenant_indexes.statistics import representative_tenants

    assert representative_tenants("default", "users", "tenant_id") == (None, None)  # empty
    assert representative_tenants("default", "no_such_table", "tenant_id") == (None, None)
    tenants = [Tenant.objects.create(name=f"T{i}", slug=f"t{i}") for i in range(120)]
    big = tenants[7]
    User.objects.bulk_create(
        [User(tenant=big, email=f"b{i}@example.com") for i in range(3000)]
        + [User(tenant=t, email=f"{t.slug}-{i}@example.com") for t in tenants for i in range(2)]
    )
    # Never analysed: no most common values, so no largest; the typical one is a real row's.
    typical, largest = representative_tenants("default", ("public", "users"), "tenant_id")
    assert largest is None
    assert typical in {str(t.pk) for t in tenants}
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE users")
        cursor.execute(
            "SELECT most_common_vals::text::text[] FROM pg_stats "
            "WHERE tablename = 'users' AND attname = 'tenant_id'"
        )
        (common,) = cursor.fetchone()
    typical, largest = representative_tenants("default", ("public", "users"), "tenant_id")
    assert largest == str(big.pk) == common[0]
    assert typical not in common
    assert User.objects.filter(tenant_id=typical).count() == 2


def test_stats_age__survives_a_clean_restart_and_restarts_after_a_crash(
    django_db_blocker: Any,
) -> None:
    """On 15+ the counters survive a clean restart: the age must not drop to the server
    start. After a crash they are gone, and the age starts again."""
    from django.db import connections

    from tenant_indexes.statistics import server_stats
    from tests.support.cluster import start_cluster
    from tests.test_views import extra_alias

    cluster = start_cluster()
    try:
        settings_dict = cluster.database_settings(dict(connections.settings["default"]))
        with django_db_blocker.unblock(), extra_alias("restarted", **settings_dict):
            before = stats_age(server_stats("restarted"))
            connections["restarted"].close()
            cluster.restart("fast")  # clean
            after_clean = server_stats("restarted")
            connections["restarted"].close()
            clean = stats_age(after_clean)
            assert clean.source == "statistics start"
            assert clean.since == before.since < after_clean.postmaster_start
            cluster.restart("immediate")  # a crash: the statistics are thrown away
            after_crash = server_stats("restarted")
            connections["restarted"].close()
            crashed = stats_age(after_crash)
            assert crashed.since > after_clean.postmaster_start
            assert crashed.since >= after_crash.postmaster_start
    finally:
        cluster.destroy()


@pytest.mark.django_db
def test_usage_statements__look_catalog_rows_up_by_key_never_scan_them_whole() -> None:
    """The usage statements read pg_class, pg_constraint and pg_index through their indexes
    only, per table and per index: their cost follows the tables asked for, not the
    database's size. (The table usage once joined pg_stat_all_tables, which aggregates
    every table of the database; with 100 of 10,000 schemas it ran past the 5 s timeout.)"""
    from tenant_indexes.indexrows import array_literal, requested_arrays
    from tenant_indexes.statistics import _TABLE_USAGE_SQL, _index_usage_sql
    from tests.support.plans import many_small_tables, plan, whole_catalog_scans

    with connection.cursor() as cursor:
        arrays = [
            array_literal(a) for a in requested_arrays(many_small_tables(cursor, "ti_usage_plans"))
        ]
        recent = connection.pg_version >= 160000  # pg_stat_get_lastscan() exists from 16 on
        last_seq_scan = "pg_stat_get_lastscan(p.relid)" if recent else "NULL::timestamptz"
        plans = [
            plan(cursor, _TABLE_USAGE_SQL.format(last_seq_scan=last_seq_scan), arrays),
            plan(cursor, _index_usage_sql(recent), arrays),
        ]
    assert whole_catalog_scans("\n".join(plans)) == []
