"""The build engine: the version gate, and identifiers the build and the dry run must quote."""

from __future__ import annotations

import pytest
from django.db import connection, models
from django.test.utils import isolate_apps

from tenant_indexes.build import (
    BuildOutcome,
    build_index_concurrently,
    create_index_sql,
    drop_index_sql,
    ensure_concurrent_builds_supported,
)
from tenant_indexes.exceptions import UnsafeServerVersionError
from tenant_indexes.sql import qualified_name, quote_identifier
from tests.test_operations import run_sql


@pytest.mark.parametrize("version", [140000, 140001, 140002, 140003])
def test_version_gate__refuses_14_0_to_14_3(version: int) -> None:
    with pytest.raises(UnsafeServerVersionError, match=r"14\.[0-3].*fixed in 14\.4"):
        ensure_concurrent_builds_supported(version, allow_pg14_bug=False)


@pytest.mark.parametrize("version", [130015, 140004, 140012, 150008, 160004])
def test_version_gate__allows_other_versions(version: int) -> None:
    ensure_concurrent_builds_supported(version, allow_pg14_bug=False)


def test_version_gate__override_allows_14_2() -> None:
    ensure_concurrent_builds_supported(140002, allow_pg14_bug=True)


def test_quote_identifier__doubles_embedded_quotes_and_qualifies_by_schema() -> None:
    assert quote_identifier('odd"name') == '"odd""name"'
    assert qualified_name("public", 'odd"name') == '"public"."odd""name"'
    assert qualified_name(None, "plain") == '"plain"'


QUOTED_TABLE = 'ti_quote"table'
QUOTED_INDEX = 'ti_quote"idx'


@pytest.mark.django_db(transaction=True)
@isolate_apps("tests.testapp")
def test_build__table_and_index_names_with_a_double_quote() -> None:
    """The build, its adoption and the repair's dry-run SQL all survive a ``"`` in a name."""

    class Quoted(models.Model):  # noqa: DJ008
        tenant_id = models.IntegerField(db_column='tenant"id')

        class Meta:
            app_label = "testapp"
            db_table = QUOTED_TABLE
            managed = False

    index = models.Index(fields=["tenant_id"], name=QUOTED_INDEX)
    run_sql(connection, f'CREATE TABLE {quote_identifier(QUOTED_TABLE)} ("tenant""id" int)')
    try:
        with connection.schema_editor(atomic=False) as editor:
            assert build_index_concurrently(editor, Quoted, index) is BuildOutcome.BUILT
        with connection.schema_editor(atomic=False) as editor:
            assert build_index_concurrently(editor, Quoted, index) is BuildOutcome.ADOPTED
            create = create_index_sql(editor, Quoted, index)
        drop = drop_index_sql("public", QUOTED_INDEX)
        assert '"ti_quote""idx"' in create and '"ti_quote""table"' in create
        assert drop.endswith('"public"."ti_quote""idx"')
        # The dry run's statements, pasted as they are, drop and rebuild the index.
        run_sql(connection, drop)
        run_sql(connection, create)
        found = run_sql(
            connection,
            "SELECT indexrelid::regclass::text FROM pg_index "
            f"WHERE indrelid = '{qualified_name(None, QUOTED_TABLE)}'::regclass",
        )
        assert found == [('"ti_quote""idx"',)]
    finally:
        run_sql(connection, f"DROP TABLE IF EXISTS {quote_identifier(QUOTED_TABLE)}")
