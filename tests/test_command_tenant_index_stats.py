"""``manage.py tenant_index_stats`` on the run's real PostgreSQL."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

SEED_REDUNDANT = {
    "idx_customers_tenant_id": "idx_customers_tenant_status",
    "idx_tickets_tenant_id": "idx_tickets_tenant_status",
}


def _stats(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("tenant_index_stats", *args, stdout=out, stderr=StringIO())
    except CommandError as e:
        return e.returncode, out.getvalue()
    return 0, out.getvalue()


def _json(*args: str) -> tuple[int, dict[str, Any]]:
    code, text = _stats("--format", "json", *args)
    return code, json.loads(text)


@pytest.mark.django_db
def test_stats__fresh_help_desk_is_ok_with_the_seed_pair_kept_as_its_contract() -> None:
    code, doc = _json("--database", "default", "--fail-level", "warning", "tenant_indexes_helpdesk")
    assert (code, doc["status"]) == (0, "ok")
    assert [f["id"] for f in doc["findings"]] == []
    assert {"status", "databases", "indexes", "findings", "tables", "statistics"} <= set(doc)
    assert doc["databases"][0]["alias"] == "default"
    by_name = {ix["name"]: ix for ix in doc["indexes"]}
    for name, other in SEED_REDUNDANT.items():
        assert by_name[name]["redundant_to"] == other
        assert by_name[name]["redundancy_kept"] == "seed contract"
        assert f'DROP INDEX CONCURRENTLY "public"."{name}"' in by_name[name]["drop_hint"]
    assert {"idx_users_tenant_id", "users_pkey", "idx_messages_ticket_tenant"} <= set(by_name)
    users = by_name["idx_users_tenant_id"]
    for key in ("idx_scan", "idx_tup_read", "idx_tup_fetch", "size_bytes", "last_idx_scan"):
        assert key in users
    if connection.pg_version < 160000:
        assert users["last_idx_scan"] == "unknown"
    _, text = _stats("--database", "default", "tenant_indexes_helpdesk")
    assert "redundant (kept: seed contract) to idx_tickets_tenant_status" in text
    assert "idx_tickets_tenant_id: The help desk declares" in text
    code, out, _ = _check("--database", "default", "--fail-level", "warning")
    assert code == 0 and json.loads(out)["status"] == "ok"


def _check(*args: str) -> tuple[int, str, str]:
    out = StringIO()
    try:
        with override_settings(TENANT_INDEXES={"CHECK_INCLUDES_USAGE": True}):
            call_command("check_tenant_indexes", "--format", "json", *args, stdout=out)
    except CommandError as e:
        return e.returncode, out.getvalue(), str(e)
    return 0, out.getvalue(), ""


@pytest.mark.django_db
def test_stats__own_redundant_index_is_w002_until_acknowledged() -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX users_tenant_email ON users (tenant_id, lower(email))")
    code, doc = _json("--database", "default", "tenant_indexes_helpdesk")
    assert (code, doc["status"]) == (0, "warning")  # a warning; the default fail level is error
    (w002,) = [f for f in doc["findings"] if f["id"] == "tenant_indexes.W002"]
    assert w002["index"] == "idx_users_tenant_id"
    assert "users_tenant_email" in w002["message"]
    assert "narrower (tenant_id) index can still win" in w002["hint"]
    assert "ACKNOWLEDGED_REDUNDANT" in w002["hint"]
    with override_settings(TENANT_INDEXES={"ACKNOWLEDGED_REDUNDANT": ["idx_users_tenant_id"]}):
        code, doc = _json(
            "--database", "default", "--fail-level", "warning", "tenant_indexes_helpdesk"
        )
    assert [f["id"] for f in doc["findings"]] == []
    assert (code, doc["status"]) == (0, "ok")
    kept = {ix["name"]: ix["redundancy_kept"] for ix in doc["indexes"] if ix["redundant_to"]}
    assert kept == {**dict.fromkeys(SEED_REDUNDANT, "seed contract"),
                    "idx_users_tenant_id": "acknowledged"}  # fmt: skip


@pytest.mark.django_db
def test_stats__warnings_fail_at_fail_level_warning() -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX users_tenant_email ON users (tenant_id, email)")
    code, _ = _stats("--database", "default", "--fail-level", "warning", "tenant_indexes_helpdesk")
    assert code == 1


@pytest.mark.django_db
def test_stats__sort_by_size_and_by_scans() -> None:
    _, by_size = _json("--database", "default", "--sort", "size")
    sizes = [ix["size_bytes"] for ix in by_size["indexes"]]
    assert sizes == sorted(sizes, reverse=True)
    _, by_scans = _json("--database", "default", "--sort", "scans")
    scans = [ix["idx_scan"] for ix in by_scans["indexes"]]
    assert scans == sorted(scans, reverse=True)


@pytest.mark.django_db
def test_stats__text_and_prometheus_render() -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX users_tenant_email ON users (tenant_id, email)")
    code, text = _stats("--database", "default", "tenant_indexes_helpdesk")
    assert code == 0
    assert "idx_users_tenant_id" in text and "tenant_indexes.W002" in text
    assert "statistics of default" in text
    code, prom = _stats("--database", "default", "--format", "prometheus")
    assert code == 0
    assert 'tenant_indexes_index_scans{schema="public",table="users",index="users_pkey"}' in prom
    assert "tenant_indexes_statistics_age_seconds" in prom


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--database", "nope"], "unknown database alias 'nope'"),
        (["no_such_app"], "unknown app label 'no_such_app'"),
    ],
)
def test_stats__bad_input_exits_2_with_a_message(args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as e:
        call_command("tenant_index_stats", *args, stdout=StringIO())
    assert e.value.returncode == 2
    assert message in str(e.value)


def _add_tenants(cursor: Any, count: int) -> Any:
    """``count`` tenants, ``t1`` to ``t<count>``; the id of ``t1``."""
    cursor.execute(
        "INSERT INTO tenants (id, name, slug, created_at) "
        "SELECT gen_random_uuid(), 't' || g, 't' || g, now() FROM generate_series(1, %s) g",
        [count],
    )
    cursor.execute("SELECT id FROM tenants WHERE slug = 't1'")
    return cursor.fetchone()[0]


def _explain_without_the_files_tenant_index() -> tuple[dict[str, Any], dict[str, Any]]:
    """Drop ``files``' tenant index, analyse, run ``--explain``: the document, its tables."""
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX idx_files_tenant_id")
        cursor.execute("ANALYZE files")
        cursor.execute("ANALYZE users")
    with override_settings(TENANT_INDEXES={"SEQ_SCAN_MIN_ROWS": 1000}):
        _, doc = _json("--database", "default", "--explain", "tenant_indexes_helpdesk")
    return doc, {t["table"]: t for t in doc["tables"]}


@pytest.mark.django_db
def test_stats__explain_flags_a_large_table_without_a_tenant_index() -> None:
    with connection.cursor() as cursor:
        _add_tenants(cursor, 50)
        cursor.execute(
            "INSERT INTO files (tenant_id, name, size, content_type, storage_key, created_at) "
            "SELECT t.id, 'f', 1, 'text/plain', t.id::text || '/' || g, now() "
            "FROM tenants t CROSS JOIN generate_series(1, 100) g"
        )
        cursor.execute(
            "INSERT INTO users (tenant_id, email, name, role, is_active, created_at) "
            "SELECT t.id, g || '@x', '', 'agent', true, now() "
            "FROM tenants t CROSS JOIN generate_series(1, 100) g"
        )
    doc, tables = _explain_without_the_files_tenant_index()
    with connection.cursor() as cursor:  # the EXPLAIN asked about a real tenant of the table
        cursor.execute(
            "SELECT count(*) FROM files WHERE tenant_id = %s",
            [tables["files"]["explain"]["tenant"]],
        )
        assert cursor.fetchone()[0] == 100
    assert tables["users"]["explain"]["uses_tenant_index"] is True
    assert tables["users"]["explain"]["indexes"] == ["idx_users_tenant_id"]
    assert tables["files"]["explain"]["uses_tenant_index"] is False
    assert tables["audit_logs"]["explain"]["tenant"] is None  # no rows: nothing to ask
    w011 = [f["table"] for f in doc["findings"] if f["id"] == "tenant_indexes.W011"]
    assert w011 == ["files"]


@pytest.mark.django_db
def test_stats__non_postgresql_alias_exits_2_saying_postgresql_is_needed() -> None:
    code, out = _stats("--database", "sqlite", "--format", "json")
    assert code == 2
    doc = json.loads(out)
    assert doc["status"] == "unknown"
    assert "need PostgreSQL" in doc["databases"][0]["error"]


@pytest.mark.django_db
def test_stats__locked_table_ends_in_lock_timeout_and_exit_2_not_a_hang() -> None:
    # pg_relation_size() must wait for this lock held by another session; lock_timeout ends
    # the wait, so the report says "could not check" instead of hanging.
    from tests.support import dbapi

    params = connection.get_connection_params()
    with dbapi.connect(autocommit=False, **params) as other:
        other.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        with override_settings(TENANT_INDEXES={"CHECK_LOCK_TIMEOUT_MS": 100}):
            code, out = _stats("--database", "default", "--format", "json")
        assert code == 2
        assert "lock timeout" in json.loads(out)["databases"][0]["error"]
        other.rollback()


@pytest.mark.django_db
def test_stats__explain_asks_about_a_typical_tenant_not_the_dominant_one() -> None:
    """The dominant tenant's rows come first on disk; a seq scan is right for it, so EXPLAIN
    must ask about a tenant of the long tail (outside pg_stats.most_common_vals)."""
    with connection.cursor() as cursor:
        big = _add_tenants(cursor, 200)
        cursor.execute(
            "INSERT INTO users (tenant_id, email, name, role, is_active, created_at) "
            "SELECT %s, g || '@x', '', 'agent', true, now() FROM generate_series(1, 20000) g",
            [big],
        )
        cursor.execute(
            "INSERT INTO users (tenant_id, email, name, role, is_active, created_at) "
            "SELECT t.id, g || '@x', '', 'agent', true, now() "
            "FROM tenants t CROSS JOIN generate_series(1, 10) g WHERE t.id <> %s",
            [big],
        )
        cursor.execute("ANALYZE users")
        cursor.execute("SELECT tenant_id FROM users ORDER BY ctid LIMIT 1")
        assert cursor.fetchone()[0] == big  # a plain LIMIT 1 would have picked it
    _, doc = _json("--database", "default", "--explain", "tenant_indexes_helpdesk")
    users = {t["table"]: t for t in doc["tables"]}["users"]["explain"]
    assert users["tenant"] != str(big)
    assert users["uses_tenant_index"] is True


@pytest.mark.django_db
def test_stats__explain_skew_flags_only_the_typical_tenant_without_an_index() -> None:
    """One dominant tenant (90% of users and files) and a long tail. On users the
    dominant tenant's plan is a sequential scan, which is right, and the typical tenant's
    uses idx_users_tenant_id: nothing to flag. On files the tenant index is gone, so the
    typical tenant's plan reads the whole table: W011 for files only."""
    with connection.cursor() as cursor:
        big = _add_tenants(cursor, 300)
        for table, columns, values in (
            ("users", "email, name, role, is_active", "g || '@x', '', 'agent', true"),
            (
                "files",
                "name, size, content_type, storage_key",
                "'f', 1, 'text/plain', gen_random_uuid()::text",
            ),
        ):
            cursor.execute(
                f"INSERT INTO {table} (tenant_id, {columns}, created_at) "
                f"SELECT %s, {values}, now() FROM generate_series(1, 30000) g",
                [big],
            )
            cursor.execute(
                f"INSERT INTO {table} (tenant_id, {columns}, created_at) "
                f"SELECT t.id, {values}, now() "
                "FROM tenants t CROSS JOIN generate_series(1, 10) g WHERE t.id <> %s",
                [big],
            )
    doc, tables = _explain_without_the_files_tenant_index()
    users, files = tables["users"], tables["files"]
    assert users["explain_largest"]["tenant"] == str(big)
    assert users["explain_largest"]["share"] > 0.8
    assert users["explain_largest"]["node_types"] == ["Seq Scan"]
    assert users["explain_largest"]["uses_tenant_index"] is False
    assert users["explain"]["tenant"] != str(big)
    assert users["explain"]["uses_tenant_index"] is True
    assert files["explain"]["uses_tenant_index"] is False
    assert files["explain_largest"]["tenant"] == str(big)
    w011 = [f for f in doc["findings"] if f["id"] == "tenant_indexes.W011"]
    assert [f["table"] for f in w011] == ["files"]
    assert files["explain"]["tenant"] in w011[0]["message"]
    _, text = _stats("--database", "default", "--explain", "tenant_indexes_helpdesk")
    plans = [line for line in text.splitlines() if "typical: " in line]
    users_line = next(line for line in plans if line.startswith("public.users "))
    assert f"typical: idx_users_tenant_id; largest ({big} 9" in users_line
    assert users_line.endswith("Seq Scan")
