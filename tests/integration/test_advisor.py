"""The index advisor on a planted workload, on two real servers the tests start themselves.

- PostgreSQL 15 from Debian's binaries with ``pg_stat_statements`` preloaded and ``hypopg``
  (Debian's ``postgresql-15-hypopg``): suggestions verified as hypothetical indexes, and the
  parameters bound to representative values (15 has no ``EXPLAIN (GENERIC_PLAN)``);
- the embedded PostgreSQL (18 by default) with ``pg_stat_statements`` preloaded and no hypopg:
  the same suggestions, marked unverified.

The workload has five planted problems and five well-served statements on the help-desk
tables, each run a few hundred times: two missing composite indexes (a table whose only tenant
index was dropped, queried by tenant and one more column), a wrong leading column
(``(created_at, tenant_id)``), a post-filter after the tenant-only index, and a sort after it.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from tests.support.cluster import DEBIAN_PG15_BIN, Cluster, start_cluster
from tests.support.pgbouncer import pgbouncer

ALIAS = "advisor"
APP = "tenant_indexes_helpdesk"
RUNS = 200
PRELOAD = {"shared_preload_libraries": "pg_stat_statements"}

# (table, key columns) the advisor must suggest, one per planted problem.
PLANTED = {
    ("audit_logs", ("tenant_id", "action")),  # missing composite: no tenant index at all
    ("tenant_usage_metrics", ("tenant_id", "metric")),  # missing composite: no tenant index at all
    ("files", ("tenant_id", "created_at")),  # wrong leading column (created_at, tenant_id)
    ("customers", ("tenant_id", "email")),  # post-filter after idx_customers_tenant_id
    ("tickets", ("tenant_id", "created_at")),  # sort after idx_tickets_tenant_id
}

PLANTED_SQL = [
    "SELECT id FROM audit_logs WHERE tenant_id = %s AND action = %s",
    "SELECT sum(value) FROM tenant_usage_metrics WHERE tenant_id = %s AND metric = %s",
    "SELECT id FROM files WHERE tenant_id = %s AND created_at >= %s",
    "SELECT id FROM customers WHERE tenant_id = %s AND email = %s",
    "SELECT id, subject FROM tickets WHERE tenant_id = %s ORDER BY created_at DESC LIMIT %s",
]
SERVED_SQL = [
    "SELECT id FROM tickets WHERE tenant_id = %s AND status = %s",
    "SELECT count(*) FROM users WHERE tenant_id = %s",
    "SELECT id FROM customers WHERE tenant_id = %s AND status = %s",
    "SELECT id FROM integration_credentials WHERE tenant_id = %s",
    "SELECT count(*) FROM messages WHERE tenant_id = %s",
]

TENANT = "00000000-0000-0000-0000-{:012d}"

SEED_SQL = [
    "INSERT INTO tenants (id, name, slug, created_at) SELECT"
    " ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, 't' || g, 't' || g, now()"
    " FROM generate_series(1, 200) g",
    # Skewed tenants: tenant 1 has a quarter of every table, the others share the rest.
    "CREATE TEMP TABLE spread AS SELECT g, ('00000000-0000-0000-0000-' ||"
    " lpad((CASE WHEN g % 4 = 0 THEN 1 ELSE 2 + g % 199 END)::text, 12, '0'))::uuid AS tenant"
    " FROM generate_series(1, 40000) g",
    "INSERT INTO customers (tenant_id, name, email, status, created_at) SELECT tenant, 'c',"
    " 'c' || g || '@x', CASE WHEN g % 10 = 0 THEN 'inactive' ELSE 'active' END,"
    " now() - g * interval '1 minute' FROM spread",
    "INSERT INTO users (tenant_id, email, name, role, is_active, created_at)"
    " SELECT tenant, g || '@x', '', 'agent', true, now() FROM spread WHERE g <= 4000",
    "INSERT INTO tickets (tenant_id, customer_id, subject, status, priority, created_at,"
    " updated_at) SELECT s.tenant, c.id, 's', (ARRAY['open','pending','resolved','closed'])"
    "[1 + s.g % 4], 'normal', now() - s.g * interval '1 minute', now()"
    " FROM spread s JOIN customers c ON c.email = 'c' || s.g || '@x'",
    "INSERT INTO messages (tenant_id, ticket_id, body, created_at)"
    " SELECT tenant_id, id, 'b', created_at FROM tickets",
    "INSERT INTO files (tenant_id, name, size, content_type, storage_key, created_at)"
    " SELECT tenant, 'f', 1, 'text/plain', 'k' || g, now() - g * interval '1 minute'"
    " FROM spread",
    "INSERT INTO integration_credentials (tenant_id, provider, label, secret_ref, created_at)"
    " SELECT tenant, 'slack', '', 'r' || g, now() FROM spread WHERE g <= 2000",
    "INSERT INTO audit_logs (tenant_id, action, actor, target_type, target_id, metadata,"
    " created_at) SELECT tenant, 'action' || (g % 50), 'a', 't', g::text, '{}',"
    " now() FROM spread",
    "INSERT INTO tenant_usage_metrics (tenant_id, metric, value, period_start, period_end)"
    " SELECT tenant, (ARRAY['tickets','messages','storage_bytes','api_calls'])[1 + g % 4],"
    " g, current_date, current_date FROM spread",
    # The planted index problems.
    "DROP INDEX idx_audit_logs_tenant_id",
    "DROP INDEX idx_usage_metrics_tenant_id",
    "DROP INDEX idx_files_tenant_id",
    "CREATE INDEX files_created_tenant ON files (created_at, tenant_id)",
    "ANALYZE",
]


def _workload(cluster: Cluster, dbname: str) -> None:
    """Run every statement RUNS times for assorted tenants (server-side parameters)."""
    with cluster.connect(dbname) as conn:
        conn.execute(
            "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
            " WHERE datname = current_database()), 0)"
        )
        for run in range(RUNS):
            tenant = TENANT.format(2 + run % 150)
            args: list[tuple[Any, ...]] = [
                (tenant, f"action{run % 50}"),
                (tenant, "api_calls"),
                (tenant, "2000-01-01"),
                (tenant, f"c{run}@x"),
                (tenant, 20),
                (tenant, "open"),
                (tenant,),
                (tenant, "active"),
                (tenant,),
                (tenant,),
            ]
            for sql, values in zip(PLANTED_SQL + SERVED_SQL, args, strict=True):
                conn.execute(sql, values).fetchall()


def _server(kind: str) -> Cluster:
    if kind == "pg15":
        if not (DEBIAN_PG15_BIN / "initdb").exists():
            pytest.fail(f"Debian's PostgreSQL 15 binaries are not in {DEBIAN_PG15_BIN}")
        return start_cluster(bin_dir=DEBIAN_PG15_BIN, settings=PRELOAD, tcp=True)
    from tests.support.cluster import embedded_bin

    share = embedded_bin().parent / "share"
    if not list(share.rglob("pg_stat_statements.control")):
        # TENANT_INDEXES_EMBEDDED=pg16: pgserver's PostgreSQL 16 ships no contrib; the
        # Debian 15 run above covers the advisor there.
        pytest.skip("the selected embedded PostgreSQL ships no pg_stat_statements")
    return start_cluster(settings=PRELOAD, tcp=True)


@pytest.fixture(scope="module", params=["pg15", "embedded"])
def workload(request: Any, django_db_blocker: Any) -> Iterator[tuple[str, Cluster]]:
    """A server with the help desk migrated, seeded, planted and the workload run."""
    from django.conf import settings

    cluster = _server(request.param)
    dbname = "advisor"
    try:
        cluster.create_database(dbname)
        with cluster.connect(dbname) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            if request.param == "pg15":
                conn.execute("CREATE EXTENSION hypopg")
        conf = cluster.database_settings(
            copy.deepcopy(connections["default"].settings_dict), dbname
        )
        settings.DATABASES[ALIAS] = conf
        connections.settings[ALIAS] = conf
        with django_db_blocker.unblock():
            call_command("migrate", APP, database=ALIAS, verbosity=0)
        with cluster.connect(dbname) as conn:
            for sql in SEED_SQL:
                conn.execute(sql)
        _workload(cluster, dbname)
        with django_db_blocker.unblock():
            yield request.param, cluster
    finally:
        try:
            _forget_alias(ALIAS)
        finally:
            cluster.destroy()


def _suggest(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command(
        "suggest_tenant_indexes", APP, "--database", ALIAS, "--format", "json", *args, stdout=out
    )
    return json.loads(out.getvalue())


def _normalised(sql: str) -> str:
    """The text pg_stat_statements keeps: parameters as $1, $2, ..."""
    parts = sql.split("%s")
    return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, 1))


def _forget_alias(alias: str) -> None:
    """Close and remove a database alias a test added for itself."""
    from django.conf import settings

    connections[alias].close()
    del connections[alias]
    connections.settings.pop(alias, None)
    settings.DATABASES.pop(alias, None)


def test_advisor__finds_the_five_planted_problems_and_nothing_for_the_served(
    workload: tuple[str, Cluster],
) -> None:
    kind, _ = workload
    report = _suggest()
    found = {(s["table"], tuple(s["columns"])) for s in report["suggestions"]}
    assert found == PLANTED, json.dumps(report, indent=1)[:6000]
    suggested = {st["query"] for s in report["suggestions"] for st in s["statements"]}
    assert {_normalised(sql) for sql in PLANTED_SQL} <= suggested
    assert not {_normalised(sql) for sql in SERVED_SQL} & suggested
    for s in report["suggestions"]:
        assert s["statements"] and all(st["calls"] >= RUNS for st in s["statements"]), s
        assert s["tenant_index"].startswith("TenantIndex(fields=[")
        assert "AddIndexConcurrently(" in s["migration_operation"]
        assert s["estimated_bytes"] > 8192
    if kind == "pg15":
        assert report["hypopg"] is True
        for s in report["suggestions"]:
            assert s["verification"] == "hypopg", s
            typical = [m for m in s["measurements"] if m["role"] == "typical"]
            assert typical and all(m["uses_index"] for m in typical), s
            assert all(m["cost_after"] < m["cost_before"] for m in typical), s
    else:
        assert {s["verification"] for s in report["suggestions"]} == {"unverified"}
        assert any("hypopg" in note for note in report["notes"])
    sort = next(s for s in report["suggestions"] if s["table"] == "tickets")
    assert (
        sort["tenant_index"] == 'TenantIndex(fields=["-created_at"], name="idx_tickets_created_at")'
    )
    assert any(f["id"] == "tenant_indexes.W060" for f in report["findings"])


def test_advisor__each_suggestion_built_serves_its_statements(
    workload: tuple[str, Cluster],
) -> None:
    """Build every suggestion for real: each of its statements' plans then scans it."""
    _, cluster = workload
    report = _suggest()
    with cluster.connect("advisor") as conn:
        try:
            for s in report["suggestions"]:
                keys = ", ".join(
                    c + (" DESC" if f.startswith("-") else "")
                    for c, f in zip(s["columns"], ["", *_fields(s)], strict=True)
                )
                conn.execute(f'CREATE INDEX "{s["name"]}" ON {s["table"]} ({keys})')
            conn.execute("ANALYZE")
            for s, sql, values in _planted_with_values():
                plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", values).fetchone()[0]
                names = _index_names(plan[0]["Plan"])
                assert _name_for(report, s) in names, (sql, plan)
        finally:
            for s in report["suggestions"]:
                conn.execute(f'DROP INDEX IF EXISTS "{s["name"]}"')


def _fields(suggestion: dict[str, Any]) -> list[str]:
    inside = suggestion["tenant_index"].split("fields=[", 1)[1].split("]", 1)[0]
    return [f.strip().strip('"') for f in inside.split(",") if f.strip()]


def _planted_with_values() -> list[tuple[str, str, tuple[Any, ...]]]:
    tenant = TENANT.format(7)
    values: list[tuple[Any, ...]] = [
        (tenant, "action3"),
        (tenant, "api_calls"),
        (tenant, "2000-01-01"),
        (tenant, "c5@x"),
        (tenant, 20),
    ]
    tables = ["audit_logs", "tenant_usage_metrics", "files", "customers", "tickets"]
    return list(zip(tables, PLANTED_SQL, values, strict=True))


def _name_for(report: dict[str, Any], table: str) -> str:
    return next(s["name"] for s in report["suggestions"] if s["table"] == table)


def _index_names(node: dict[str, Any]) -> set[str]:
    names = {node["Index Name"]} if node.get("Index Name") else set()
    for child in node.get("Plans", ()):
        names |= _index_names(child)
    return names


def test_advisor__text_output_names_the_line_to_add(workload: tuple[str, Cluster]) -> None:
    out = io.StringIO()
    call_command("suggest_tenant_indexes", APP, "--database", ALIAS, stdout=out)
    text = out.getvalue()
    assert "5 suggestion(s)" in text
    assert 'TenantIndex(fields=["action"], name="idx_audit_logs_action")' in text
    assert "AddIndexConcurrently(" in text


def test_advisor__missing_extension_exits_2_with_the_line_that_enables_it(
    workload: tuple[str, Cluster],
) -> None:
    _, cluster = workload
    with cluster.connect("advisor") as conn:
        conn.execute("DROP EXTENSION pg_stat_statements")
    try:
        with pytest.raises(CommandError) as raised:
            _suggest()
    finally:
        with cluster.connect("advisor") as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
    assert raised.value.returncode == 2
    assert "CREATE EXTENSION pg_stat_statements;" in str(raised.value)


def test_advisor__through_pgbouncer_in_transaction_mode_gives_the_same_answer(
    workload: tuple[str, Cluster],
) -> None:
    """Everything the advisor prepares or creates (hypothetical indexes too) lives in one
    transaction, so a transaction pooler changes nothing."""
    from django.conf import settings

    direct = {(s["table"], tuple(s["columns"])) for s in _suggest()["suggestions"]}
    with pgbouncer(connections[ALIAS].settings_dict, pool_mode="transaction") as entry:
        settings.DATABASES["advisor_pool"] = entry
        connections.settings["advisor_pool"] = entry
        try:
            out = io.StringIO()
            call_command(
                "suggest_tenant_indexes",
                APP,
                "--database",
                "advisor_pool",
                "--format",
                "json",
                stdout=out,
            )
        finally:
            _forget_alias("advisor_pool")
    pooled = {(s["table"], tuple(s["columns"])) for s in json.loads(out.getvalue())["suggestions"]}
    assert pooled == direct == PLANTED


def test_advisor__not_loaded_exits_2_with_the_preload_line(django_db_blocker: Any) -> None:
    """A server without pg_stat_statements in shared_preload_libraries."""
    from django.conf import settings

    cluster = start_cluster(dbname="plain")
    try:
        conf = cluster.database_settings(copy.deepcopy(connections["default"].settings_dict))
        settings.DATABASES["plain"] = conf
        connections.settings["plain"] = conf
        with django_db_blocker.unblock(), pytest.raises(CommandError) as raised:
            call_command("suggest_tenant_indexes", "--database", "plain", stdout=io.StringIO())
        assert raised.value.returncode == 2
        assert "shared_preload_libraries = 'pg_stat_statements'" in str(raised.value)
    finally:
        _forget_alias("plain")
        cluster.destroy()


def test_advisor__unknown_alias_exits_2() -> None:
    with pytest.raises(CommandError) as raised:
        call_command("suggest_tenant_indexes", "--database", "nope", stdout=io.StringIO())
    assert raised.value.returncode == 2


def test_advisor__on_a_standby_says_what_to_do(django_db_blocker: Any) -> None:
    """A read-only replica whose server does not preload pg_stat_statements: exit 2, the
    message names the standby and the line to add."""
    from django.conf import settings

    from tests.support.replica import start_replica_pair

    pair = start_replica_pair()
    try:
        conf = pair.database_settings(
            copy.deepcopy(connections["default"].settings_dict), standby=True
        )
        settings.DATABASES["standby"] = conf
        connections.settings["standby"] = conf
        with django_db_blocker.unblock(), pytest.raises(CommandError) as raised:
            call_command("suggest_tenant_indexes", "--database", "standby", stdout=io.StringIO())
        assert raised.value.returncode == 2
        message = str(raised.value)
        assert "standby" in message
        assert "shared_preload_libraries = 'pg_stat_statements'" in message
    finally:
        _forget_alias("standby")
        pair.stop()


def test_advisor__verify_by_building_builds_measures_and_drops(
    workload: tuple[str, Cluster],
) -> None:
    """The fallback without hypopg: each suggestion is built concurrently, its statements'
    plans use it (and their SELECTs are timed), and it is dropped again."""
    _, cluster = workload
    report = _suggest("--verify-by-building")
    assert {(s["table"], tuple(s["columns"])) for s in report["suggestions"]} == PLANTED
    for s in report["suggestions"]:
        assert s["verification"] == "built"
        typical = [m for m in s["measurements"] if m["role"] == "typical"]
        assert typical and all(m["uses_index"] for m in typical), s
        assert all(m["ms_before"] is not None and m["ms_after"] is not None for m in typical)
    with cluster.connect("advisor") as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'ti_advisor_%'"
        ).fetchone()[0]
    assert left == 0


def test_advisor__check_includes_w060_when_asked(workload: tuple[str, Cluster]) -> None:
    """CHECK_INCLUDES_ADVISOR adds one W060 per unserved tenant statement to the check."""
    from django.test import override_settings

    def check_findings() -> list[dict[str, Any]]:
        out = io.StringIO()
        try:
            call_command(
                "check_tenant_indexes", APP, "--database", ALIAS, "--format", "json", stdout=out
            )
        except CommandError:
            pass  # the planted drops are E001/E004 findings too: exit 1
        return list(json.loads(out.getvalue())["findings"])

    assert not [f for f in check_findings() if f["id"] == "tenant_indexes.W060"]
    with override_settings(TENANT_INDEXES={"CHECK_INCLUDES_ADVISOR": True}):
        w060 = [f for f in check_findings() if f["id"] == "tenant_indexes.W060"]
    assert {f["table"] for f in w060} == {table for table, _ in PLANTED}
    assert all("TenantIndex(fields=[" in f["hint"] for f in w060)
