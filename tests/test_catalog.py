"""The catalog snapshot on the real server: contents, query count, connection state, errors."""

from __future__ import annotations

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from tenant_indexes.catalog import catalog_snapshot
from tenant_indexes.exceptions import CatalogUnavailable, UnsupportedDatabase

_SAVEPOINT_SQL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
SEED = [(None, "customers"), (None, "tickets"), (None, "messages"), (None, "testapp_invoice")]


def _setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_catalog_snapshot__resolves_key_columns_order_and_flags() -> None:
    snapshot = catalog_snapshot("default", SEED)
    assert snapshot.vendor == "postgresql"
    assert snapshot.server_version_num >= 130000
    assert snapshot.server_version.split(".")[0] == str(snapshot.server_version_num // 10000)
    assert {t.name for t in snapshot.tables} == {n for _, n in SEED}
    customers = snapshot.table(None, "customers")
    assert customers is not None and customers.schema == "public"
    status = snapshot.index("public", "idx_customers_tenant_status")
    assert status is not None
    assert status.columns == ("tenant_id", "status")
    assert (status.valid, status.ready, status.live, status.building) == (True, True, True, False)
    assert not status.unique and status.method == "btree" and status.constraint is None
    assert "idx_customers_tenant_status" in status.definition
    assert status.idx_scan is not None and status.size_bytes >= 0
    ticket_tenant = snapshot.index("public", "idx_messages_ticket_tenant")
    assert ticket_tenant.columns == ("ticket_id", "tenant_id")
    invoice = [ix for ix in snapshot.indexes if ix.table == "testapp_invoice" and not ix.primary]
    assert [(ix.columns, ix.descending) for ix in invoice] == [
        (("tenant_id", "paid", "number"), (False, False, True))
    ]
    pkey = [ix for ix in snapshot.indexes if ix.table == "customers" and ix.primary]
    assert len(pkey) == 1 and pkey[0].constraint == "customers_pkey" and pkey[0].unique


@pytest.mark.django_db
def test_catalog_snapshot__include_expressions_and_predicate() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE INDEX ti_probe ON tickets (tenant_id, lower(subject)) INCLUDE (priority) "
            "WHERE status = 'open'"
        )
    ix = catalog_snapshot("default", [(None, "tickets")]).index("public", "ti_probe")
    assert ix.columns == ("tenant_id", None)
    assert ix.include == ("priority",)
    assert "lower" in ix.expressions
    assert "open" in ix.predicate


@pytest.mark.django_db
def test_catalog_snapshot__missing_table_is_absent_not_an_error() -> None:
    snapshot = catalog_snapshot("default", [(None, "no_such_table"), ("nope", "customers")])
    assert snapshot.tables == () and snapshot.indexes == ()


@pytest.mark.django_db
def test_catalog_snapshot__query_count_constant_as_tables_grow() -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA ti_scale")
        for i in range(60):
            cursor.execute(f"CREATE TABLE ti_scale.t{i} (id int, tenant_id int)")
            cursor.execute(f"CREATE INDEX ti_scale_t{i}_tenant ON ti_scale.t{i} (tenant_id)")
    counts = {}
    for n in (1, 10, 60):
        tables = [("ti_scale", f"t{i}") for i in range(n)]
        with CaptureQueriesContext(connection) as queries:
            snapshot = catalog_snapshot("default", tables)
        assert len(snapshot.tables) == n and len(snapshot.indexes) == n
        # Inside the test's transaction: a savepoint around four SELECTs (settings, tables,
        # indexes, and the definitions of one index per shape).
        counts[n] = len([q for q in queries if not q["sql"].startswith(_SAVEPOINT_SQL)])
    assert counts[1] == counts[10] == counts[60] == 4, counts


@pytest.mark.django_db(transaction=True)
def test_catalog_snapshot__read_only_timeouts_and_connection_state_restored() -> None:
    before = (_setting("statement_timeout"), _setting("lock_timeout"), _setting("jit"))
    with CaptureQueriesContext(connection) as queries:
        catalog_snapshot("default", SEED)
    # Django 5.2 logs BEGIN/ROLLBACK, 4.2 does not.
    sql = [q["sql"] for q in queries if q["sql"] not in ("BEGIN", "ROLLBACK")]
    assert len(sql) == 5  # with the definitions of one index per shape, in the same snapshot
    assert sql[0] == "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
    assert "statement_timeout" in sql[1] and "lock_timeout" in sql[1] and "'jit'" in sql[1]
    assert connection.get_autocommit() and not connection.in_atomic_block
    assert (_setting("statement_timeout"), _setting("lock_timeout"), _setting("jit")) == before
    assert _setting("transaction_read_only") == "off"
    assert _setting("transaction_isolation") == "read committed"


@pytest.mark.django_db
def test_catalog_snapshot__inside_a_callers_transaction_leaves_it_usable() -> None:
    before = _setting("statement_timeout")
    with transaction.atomic():
        catalog_snapshot("default", SEED)
        assert _setting("statement_timeout") == before
        with connection.cursor() as cursor:  # still writable
            cursor.execute("CREATE TEMP TABLE ti_probe_tmp (x int)")


@pytest.mark.django_db
def test_catalog_snapshot__non_postgresql_alias_is_unsupported() -> None:
    with pytest.raises(UnsupportedDatabase, match="needs PostgreSQL"):
        catalog_snapshot("sqlite", SEED)
    assert connections["sqlite"].connection is None  # decided without connecting


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "override",
    [
        {"HOST": "127.0.0.1", "PORT": "1"},  # nothing listens there
        {"USER": "ti_no_such_role"},  # the server refuses the login
        {"NAME": "ti_no_such_database"},
    ],
    ids=["unreachable", "unknown-role", "unknown-database"],
)
def test_catalog_snapshot__connection_failures_raise_catalog_unavailable(override) -> None:
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(override)
    try:
        with pytest.raises(CatalogUnavailable, match="database 'default'"):
            catalog_snapshot("default", SEED)
        assert "connect_timeout" not in connection.settings_dict["OPTIONS"]
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


@pytest.mark.django_db(transaction=True)
def test_catalog_snapshot__timeouts_come_from_the_setting() -> None:
    config = {"CHECK_STATEMENT_TIMEOUT_MS": 1234, "CHECK_LOCK_TIMEOUT_MS": 567}
    with override_settings(TENANT_INDEXES=config), CaptureQueriesContext(connection) as queries:
        catalog_snapshot("default", SEED)
    settings_sql = next(q["sql"] for q in queries if "set_config" in q["sql"])
    assert "'1234ms'" in settings_sql and "'567ms'" in settings_sql


def test_index_row__null_key_text_and_column_of_an_index_being_changed_are_kept() -> None:
    """While a concurrent build or drop changes an index, the catalog can give NULL for a
    key's text or a column name; a reader (a second repair, the check) must not fail on it."""
    from tenant_indexes.indexrows import index_from_row

    row = (
        "public", "t", "t_tenant", [None, "status"], "1 2", 2, "0 0", None, "1978 1978",
        "0 100", None, None, None, False, False, None, "btree", False, False, True, None, 8192,
        0, 0, 0, None,
    )  # fmt: skip
    ix = index_from_row(row)
    assert (ix.schema, ix.name, ix.columns, ix.keys) == (
        "public",
        "t_tenant",
        (None, "status"),
        (None, (2, "status", 100, 1978, None, 0)),
    )
    # Read without column names (the snapshot's way), a dropped or unknown attnum is None too.
    ix = index_from_row((*row[:3], None, *row[4:]), attribute_names=(None, "status"))
    assert ix.columns == (None, "status")


_SHAPES_DDL = """
    CREATE TABLE shapes (a int, gone int, c text, d int, body text);
    ALTER TABLE shapes DROP COLUMN gone;
    ALTER TABLE shapes ADD COLUMN e int;
    CREATE INDEX shapes_a ON shapes (a);
    CREATE INDEX shapes_c_d ON shapes (c COLLATE "C" DESC, d) INCLUDE (e);
    CREATE INDEX shapes_expr ON shapes (e, lower(c), a NULLS FIRST);
    CREATE INDEX shapes_sig100 ON shapes
        USING gist (to_tsvector('simple', body) tsvector_ops (siglen = 100));
    CREATE INDEX shapes_sig100_too ON shapes
        USING gist (to_tsvector('simple', body) tsvector_ops (siglen = 100));
    CREATE INDEX shapes_sig200 ON shapes
        USING gist (to_tsvector('simple', body) tsvector_ops (siglen = 200));
"""


@pytest.mark.django_db
def test_catalog_snapshot__column_names_from_the_tables_match_the_servers_lookup() -> None:
    """The snapshot takes index column names from its tables' columns by attnum; across a
    dropped column, an added one, expressions and INCLUDE they are the server's own."""
    from tenant_indexes.indexrows import index_from_row, index_rows_sql

    with connection.cursor() as cursor:
        cursor.execute(_SHAPES_DDL)
        cursor.execute(
            index_rows_sql("ix.indrelid = 'shapes'::regclass"), []
        )  # column names resolved on the server
        by_server = {ix.name: ix for ix in map(index_from_row, cursor.fetchall())}
    snapshot = catalog_snapshot("default", [(None, "shapes")])
    by_snapshot = {ix.name: ix for ix in snapshot.indexes}
    assert by_snapshot.keys() == by_server.keys() and len(by_server) == 6
    for name, ix in by_snapshot.items():
        assert (ix.columns, ix.include, ix.keys) == (
            by_server[name].columns,
            by_server[name].include,
            by_server[name].keys,
        ), name
    assert by_snapshot["shapes_c_d"].columns == ("c", "d")
    assert by_snapshot["shapes_c_d"].include == ("e",)
    assert by_snapshot["shapes_expr"].columns == ("e", None, "a")


@pytest.mark.django_db
def test_catalog_snapshot__key_identities_tell_collation_order_and_opclass_options_apart() -> None:
    with connection.cursor() as cursor:
        cursor.execute(_SHAPES_DDL)
        cursor.execute("CREATE INDEX shapes_c_plain ON shapes (c, d)")
    snapshot = catalog_snapshot("default", [(None, "shapes")])
    keys = {ix.name: ix.keys for ix in snapshot.indexes}
    assert keys["shapes_sig100"] == keys["shapes_sig100_too"]
    assert keys["shapes_sig100"] != keys["shapes_sig200"]
    assert keys["shapes_sig100"][0][4] == "siglen=100"  # the operator class's options
    # Same columns, another collation and order: not interchangeable keys.
    assert keys["shapes_c_d"][0] != keys["shapes_c_plain"][0]
    assert keys["shapes_c_d"][1] == keys["shapes_c_plain"][1]
    expression = keys["shapes_expr"][1]
    assert expression[0] == 0 and "lower" in expression[1]


def _fetch_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "tenant_indexes-fetch"]


@pytest.mark.django_db
def test_rows_in_batches__a_fetch_error_reaches_the_caller_and_no_thread_is_left() -> None:
    from django.db import DataError

    from tenant_indexes.catalog import ROWS_PER_FETCH, _rows_in_batches

    # The error comes with the third fetch: the thread fetching ahead hands it over.
    sql = "SELECT g, 1 / (g - %s) FROM generate_series(1, %s) AS g"
    fail_at = 2 * ROWS_PER_FETCH + 10
    read = []
    with pytest.raises(DataError, match="division by zero"), transaction.atomic():
        for row in _rows_in_batches(connection, sql, [fail_at, 3 * ROWS_PER_FETCH]):
            read.append(row[0])
    assert read == list(range(1, 2 * ROWS_PER_FETCH + 1))
    assert _fetch_threads() == []
    with connection.cursor() as cursor:  # the connection is usable
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db
def test_rows_in_batches__a_caller_that_stops_early_stops_the_fetching() -> None:
    from tenant_indexes.catalog import ROWS_PER_FETCH, _rows_in_batches

    with transaction.atomic():
        rows = _rows_in_batches(
            connection, "SELECT g FROM generate_series(1, %s) AS g", [10 * ROWS_PER_FETCH]
        )
        assert next(rows) == (1,)
        rows.close()  # the caller gives up after one row, with fetches still to come
        assert _fetch_threads() == []
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_cursors")
            assert cursor.fetchone() == (0,)
        # The rows of a whole read arrive in order.
        sql = "SELECT g FROM generate_series(1, %s) AS g ORDER BY g"
        whole = [row[0] for row in _rows_in_batches(connection, sql, [3 * ROWS_PER_FETCH + 7])]
        assert whole == list(range(1, 3 * ROWS_PER_FETCH + 8))


@pytest.mark.django_db
def test_array_literal__the_server_reads_back_what_was_written() -> None:
    from tenant_indexes.indexrows import array_literal

    values = ["plain", 'a "quoted" one', "back\\slash", "{braces}", "a,b", " spaced ", "",
              "NULL", None, "ümlaut", "'single'", '\\"', "x\ty"]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT %s::text[], %s::oid[], %s::text[]",
            [array_literal(values), array_literal([1, 4294967295]), array_literal([])],
        )
        assert cursor.fetchone() == (values, [1, 4294967295], [])


@pytest.mark.django_db
def test_snapshot_statements__look_catalog_rows_up_by_key_never_scan_them_whole() -> None:
    """The plans of the tables and indexes statements read pg_class and pg_constraint
    through their indexes, whatever share of the database is asked for: the cost follows
    the tables asked for, not the database's size (joined, the planner hashes the whole of
    both once many tables are asked for)."""
    from tenant_indexes.catalog import _SNAPSHOT_TABLES_SQL, _snapshot_indexes_sql
    from tenant_indexes.indexrows import array_literal, requested_arrays
    from tests.support.plans import many_small_tables, plan, whole_catalog_scans

    with connection.cursor() as cursor:
        arrays = requested_arrays(many_small_tables(cursor, "ti_plans"))
        cursor.execute(
            "SELECT array_agg(c.oid) FROM pg_class c "
            "WHERE c.relnamespace = 'ti_plans'::regnamespace AND c.relkind = 'r'"
        )
        (oids,) = cursor.fetchone()
        plans = [
            plan(cursor, _SNAPSHOT_TABLES_SQL, [array_literal(a) for a in arrays]),
            plan(cursor, _snapshot_indexes_sql(connection.pg_version), [array_literal(oids)]),
        ]
    assert whole_catalog_scans("\n".join(plans)) == []
