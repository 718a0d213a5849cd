"""The online-safe index changes (``ChangeIndexConcurrently``, ``RemoveIndexConcurrently``)
on a hash-partitioned table with a writer, on the real server.

After every step each leaf partition still has a valid index that leads with the tenant
column, every partitioned index is valid, no leaf keeps an unattached index and no
partitioned index keeps a temporary name (``_ti_new`` / ``_ti_old``).
"""

from __future__ import annotations

import pytest
from django.db import connection, models
from django.db.migrations.state import ModelState, ProjectState

from tenant_indexes.operations import AddIndexConcurrently, RemoveIndexConcurrently
from tenant_indexes.safe_changes import ChangeIndexConcurrently
from tests.support import dbapi
from tests.test_partitions import INDEX, TABLE, _create, _drop, _model, _run, _Writer

OTHER = "ti_part_events_status"


def _state(model, indexes: list[models.Index]) -> ProjectState:
    state = ProjectState()
    model_state = ModelState.from_model(model)
    model_state.options["indexes"] = list(indexes)
    model_state.options["managed"] = True  # the table is made by the test; migrate it here
    state.add_model(model_state)
    return state


def _apply(operation, model, before: list[models.Index]) -> list[models.Index]:
    """Run ``operation`` forwards from a state with ``before``; the indexes after it."""
    from_state = _state(model, before)
    to_state = from_state.clone()
    operation.state_forwards("testapp", to_state)
    with connection.schema_editor(atomic=False) as editor:
        operation.database_forwards("testapp", editor, from_state, to_state)
    return list(to_state.models["testapp", "event"].options["indexes"])


def _leaves_without_a_tenant_index() -> list[str]:
    """Leaf partitions without a valid, non-partial index whose first key is tenant_id."""
    rows = _run(
        """
        SELECT c.relname
          FROM pg_partition_tree(%s::regclass) t
          JOIN pg_class c ON c.oid = t.relid
         WHERE t.isleaf AND NOT EXISTS (
               SELECT 1 FROM pg_index ix
                 JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = ix.indkey[0]
                WHERE ix.indrelid = c.oid AND ix.indisvalid AND ix.indpred IS NULL
                  AND a.attname = 'tenant_id')
         ORDER BY 1
        """,
        [TABLE],
    )
    return [r[0] for r in rows]


def _parent_indexes() -> dict[str, tuple[str, bool]]:
    """The partitioned table's own indexes: name -> (definition, valid)."""
    rows = _run(
        """
        SELECT i.relname, pg_get_indexdef(ix.indexrelid), ix.indisvalid
          FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid
         WHERE ix.indrelid = %s::regclass
        """,
        [TABLE],
    )
    return {name: (definition, valid) for name, definition, valid in rows}


def _leftovers() -> list[str]:
    """Temporary names left on the partitioned table's own indexes (its partitions' indexes
    keep the names they were built under, ``_ti_new`` included: a rename is the parent's)."""
    return sorted(n for n in _parent_indexes() if n.endswith(("_ti_new", "_ti_old")))


def _unattached_leaf_indexes() -> list[str]:
    """Indexes on a leaf that belong to no partitioned index (none are expected)."""
    rows = _run(
        """
        SELECT i.relname
          FROM pg_partition_tree(%s::regclass) t
          JOIN pg_index ix ON ix.indrelid = t.relid
          JOIN pg_class i ON i.oid = ix.indexrelid
         WHERE t.isleaf
           AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = ix.indexrelid)
        """,
        [TABLE],
    )
    return [r[0] for r in rows]


def _assert_served() -> None:
    assert _leaves_without_a_tenant_index() == []
    assert _leftovers() == []
    assert _unattached_leaf_indexes() == []
    assert all(valid for _, valid in _parent_indexes().values()), _parent_indexes()


@pytest.mark.django_db(transaction=True)
def test_partition_safe_changes__change_twice_rename_and_remove_with_a_writer() -> None:
    try:
        _create("hash")
        model = _model()
        writer = _Writer()
        writer.start()
        try:
            tenant = models.Index(fields=["tenant_id"], name=INDEX)
            status = models.Index(fields=["status"], name=OTHER)
            indexes = _apply(AddIndexConcurrently("Event", tenant), model, [])
            indexes = _apply(AddIndexConcurrently("Event", status), model, indexes)
            _assert_served()

            # Same name, new definition: built as <name>_ti_new, swapped, old dropped.
            wider = models.Index(fields=["tenant_id", "status"], name=INDEX)
            indexes = _apply(ChangeIndexConcurrently("Event", tenant, wider), model, indexes)
            _assert_served()
            assert "(tenant_id, status)" in _parent_indexes()[INDEX][0]

            # And again: the partitions' indexes kept the names they were built under, so
            # the next build must not collide with them.
            back = models.Index(fields=["tenant_id"], name=INDEX)
            indexes = _apply(ChangeIndexConcurrently("Event", wider, back), model, indexes)
            _assert_served()
            assert "(tenant_id)" in _parent_indexes()[INDEX][0]

            # A new name: the new index is built, then the old one dropped.
            renamed = models.Index(fields=["tenant_id", "id"], name=f"{INDEX}_id")
            indexes = _apply(ChangeIndexConcurrently("Event", back, renamed), model, indexes)
            _assert_served()
            assert set(_parent_indexes()) == {f"{INDEX}_id", OTHER}

            # Remove one: the partitioned index and every partition's copy go.
            indexes = _apply(RemoveIndexConcurrently("Event", OTHER), model, indexes)
            _assert_served()
            assert set(_parent_indexes()) == {f"{INDEX}_id"}
            assert [i.name for i in indexes] == [f"{INDEX}_id"]
        finally:
            writer.stop.set()
            writer.join(30)
        assert writer.error is None, writer.error
        assert writer.rows > 0
    finally:
        _drop()


@pytest.mark.django_db(transaction=True)
def test_partition_safe_changes__change_resumes_after_a_run_stopped_before_the_swap() -> None:
    try:
        _create("hash")
        model = _model()
        tenant = models.Index(fields=["tenant_id"], name=INDEX)
        indexes = _apply(AddIndexConcurrently("Event", tenant), model, [])
        wider = models.Index(fields=["tenant_id", "status"], name=INDEX)
        # A run killed after its first partition's build: the staged parent is INVALID.
        _run(f'CREATE INDEX "{INDEX}_ti_new" ON ONLY {TABLE} (tenant_id, status)')
        _run(f"CREATE INDEX {TABLE}_0_{INDEX}_ti_new ON {TABLE}_0 (tenant_id, status)")
        _run(f'ALTER INDEX "{INDEX}_ti_new" ATTACH PARTITION {TABLE}_0_{INDEX}_ti_new')
        assert _leaves_without_a_tenant_index() == []
        indexes = _apply(ChangeIndexConcurrently("Event", tenant, wider), model, indexes)
        _assert_served()
        assert set(_parent_indexes()) == {INDEX}
        assert "(tenant_id, status)" in _parent_indexes()[INDEX][0]
    finally:
        _drop()


def _sqlmigrate(operation, model, before: list[models.Index]) -> list[str]:
    """What ``sqlmigrate`` prints for ``operation`` (its schema editor, ``collect_sql``)."""
    from_state = _state(model, before)
    to_state = from_state.clone()
    operation.state_forwards("testapp", to_state)
    with connection.schema_editor(collect_sql=True, atomic=False) as editor:
        operation.database_forwards("testapp", editor, from_state, to_state)
    return list(editor.collected_sql)


def _run_as_psql(statements: list[str]) -> None:
    """One by one through a raw autocommit session: each must be accepted."""
    with dbapi.connect_like(connection.settings_dict) as psql:
        for statement in statements:
            psql.execute(statement)


def _refused_on_a_partitioned_table(statements: list[str]) -> list[str]:
    """Statements PostgreSQL refuses on this partitioned table or its partitioned indexes."""
    return [
        s
        for s in statements
        if (s.startswith("CREATE") and "CONCURRENTLY" in s and f'"{TABLE}" ' in s)
        or s.startswith("DROP INDEX CONCURRENTLY")
    ]


@pytest.mark.django_db(transaction=True)
def test_sqlmigrate__add_index_concurrently_on_a_partitioned_table_prints_the_partition_build() -> (
    None
):
    try:
        _create("range")  # with a hash sub-partition
        model = _model()
        tenant = models.Index(fields=["tenant_id"], name=INDEX)
        printed = _sqlmigrate(AddIndexConcurrently("Event", tenant), model, [])
        assert _refused_on_a_partitioned_table(printed) == []
        assert printed[0].startswith("SET lock_timeout = ") and printed[-1] == "RESET lock_timeout;"
        assert f'ON ONLY "public"."{TABLE}"' in printed[1]
        assert sum(" ATTACH PARTITION " in s for s in printed) == 5  # 4 leaves, 1 sub-partition
        assert _parent_indexes() == {}  # printed, not run
        _run_as_psql(printed)
        assert _parent_indexes()[INDEX][1] is True
        _assert_served()
    finally:
        _drop()


@pytest.mark.django_db(transaction=True)
def test_sqlmigrate__add_index_concurrently_where_the_index_is_valid_says_so_not_nothing() -> None:
    """Planned against this database's catalog, the build of a valid index is empty: the
    output says why instead of printing a bare SET/RESET pair."""
    try:
        _create("hash")
        model = _model()
        tenant = models.Index(fields=["tenant_id"], name=INDEX)
        indexes = _apply(AddIndexConcurrently("Event", tenant), model, [])
        printed = _sqlmigrate(AddIndexConcurrently("Event", tenant), model, indexes[:-1])
        assert len(printed) == 1 and printed[0].startswith("-- tenant_indexes: index ")
        assert "is valid in this database already" in printed[0]
    finally:
        _drop()


@pytest.mark.django_db(transaction=True)
def test_sqlmigrate__remove_index_concurrently_on_a_partitioned_table_prints_a_bounded_drop() -> (
    None
):
    try:
        _create("hash")
        model = _model()
        tenant = models.Index(fields=["tenant_id"], name=INDEX)
        status = models.Index(fields=["status"], name=OTHER)
        indexes = _apply(AddIndexConcurrently("Event", tenant), model, [])
        indexes = _apply(AddIndexConcurrently("Event", status), model, indexes)
        printed = _sqlmigrate(RemoveIndexConcurrently("Event", OTHER), model, indexes)
        assert _refused_on_a_partitioned_table(printed) == []
        assert printed == [
            "BEGIN;",
            "SET LOCAL lock_timeout = '5s';",
            f'DROP INDEX IF EXISTS "public"."{OTHER}";',
            "COMMIT;",
        ]
        assert OTHER in _parent_indexes()  # printed, not run
        _run_as_psql(printed)
        assert set(_parent_indexes()) == {INDEX}
        _assert_served()
        left = _run(
            "SELECT count(*) FROM pg_indexes WHERE tablename LIKE %s AND indexdef LIKE %s",
            [f"{TABLE}%", "%(status)%"],
        )
        assert left == [(0,)]  # every partition's copy went with it
    finally:
        _drop()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("new_name", [INDEX, f"{INDEX}_wide"])
def test_sqlmigrate__change_index_concurrently_on_a_partitioned_table_prints_build_swap_drop(
    new_name: str,
) -> None:
    try:
        _create("hash")
        model = _model()
        tenant = models.Index(fields=["tenant_id"], name=INDEX)
        indexes = _apply(AddIndexConcurrently("Event", tenant), model, [])
        wider = models.Index(fields=["tenant_id", "status"], name=new_name)
        printed = _sqlmigrate(ChangeIndexConcurrently("Event", tenant, wider), model, indexes)
        assert _refused_on_a_partitioned_table(printed) == []
        assert sum(s.startswith("CREATE INDEX CONCURRENTLY") for s in printed) == 4
        assert printed[-2].startswith("DROP INDEX IF EXISTS ")
        assert printed[-3].startswith("SET LOCAL lock_timeout")
        assert set(_parent_indexes()) == {INDEX}  # printed, not run
        _run_as_psql(printed)
        assert set(_parent_indexes()) == {new_name}
        definition, valid = _parent_indexes()[new_name]
        assert valid and "(tenant_id, status)" in definition
        _assert_served()
    finally:
        _drop()


@pytest.mark.django_db(transaction=True)
def test_sqlmigrate__add_index_concurrently_before_the_table_exists_says_so_in_a_comment() -> None:
    model = _model()  # its table is not there
    tenant = models.Index(fields=["tenant_id"], name=INDEX)
    printed = _sqlmigrate(AddIndexConcurrently("Event", tenant), model, [])
    assert len(printed) == 2
    assert printed[0].startswith(f"-- tenant_indexes: table {TABLE} does not exist yet")
    assert "\n" not in printed[0]
    assert printed[1].startswith(f'CREATE INDEX CONCURRENTLY "{INDEX}" ON "{TABLE}"')
