"""Definitions the snapshot derives from one schema copy's equal the server's own, text for
text: quoted and keyword names, collations, operator classes and their options, order,
INCLUDE, methods, and copies whose columns differ; and a copy dropped meanwhile."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tenant_indexes.catalog import catalog_snapshot
from tenant_indexes.definitions import SharedDefinitions
from tenant_indexes.indexrows import index_from_row, index_rows_sql
from tenant_indexes.sql import quote_identifier

SCHEMAS = ["ti_def_a", "Ti Def B", "select", 'we"ird', "ti_def_e"]

TABLE_DDL = """
    CREATE TABLE {s}."Order" (
        id bigint PRIMARY KEY,
        tenant_id int NOT NULL,
        {title} text {collate},
        body tsvector,
        doc jsonb,
        tags int[],
        created timestamptz,
        UNIQUE (tenant_id, id)
    );
    CREATE INDEX "Order_tenant_created" ON {s}."Order" (tenant_id, created DESC NULLS LAST)
        INCLUDE (id);
    CREATE UNIQUE INDEX order_tenant_title ON {s}."Order" (tenant_id, {title});
    CREATE INDEX order_title_c ON {s}."Order" ({title} COLLATE "C");
    CREATE INDEX order_title_pattern ON {s}."Order" (tenant_id, {title} text_pattern_ops);
    CREATE INDEX order_hash ON {s}."Order" USING hash (tenant_id);
    CREATE INDEX order_doc ON {s}."Order" USING gin (doc jsonb_path_ops);
    CREATE INDEX order_tags ON {s}."Order" USING gin (tags);
    CREATE INDEX order_body ON {s}."Order" USING gist (body tsvector_ops (siglen = {siglen}));
    CREATE INDEX order_lower ON {s}."Order" (tenant_id, lower({title}));
    CREATE INDEX order_recent ON {s}."Order" (tenant_id) WHERE created IS NOT NULL;
    CREATE INDEX order_fill ON {s}."Order" (tenant_id) WITH (fillfactor = 70);
    CREATE UNIQUE INDEX order_once ON {s}."Order" (tenant_id, created){nulls_not_distinct};
    CREATE TABLE {s}.parted (tenant_id int NOT NULL, id int) PARTITION BY HASH (tenant_id);
    CREATE TABLE {s}.parted_0 PARTITION OF {s}.parted FOR VALUES WITH (MODULUS 2, REMAINDER 0);
    CREATE TABLE {s}.parted_1 PARTITION OF {s}.parted FOR VALUES WITH (MODULUS 2, REMAINDER 1);
    CREATE INDEX parted_tenant ON {s}.parted (tenant_id, id);
"""


def _server_definitions() -> dict[tuple[str, str], str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname, c.relname, pg_get_indexdef(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('i', 'I') AND n.nspname = ANY(%s)",
            [SCHEMAS],
        )
        return {(schema, name): text for schema, name, text in cursor.fetchall()}


@pytest.fixture
def copies() -> list[tuple[str, str]]:
    """Five schema copies of two tables; the fourth copy's title column is called
    differently and the fifth's has another collation and operator-class options."""
    nulls_not_distinct = connection.pg_version >= 150000
    with connection.cursor() as cursor:
        for n, schema in enumerate(SCHEMAS):
            quoted = quote_identifier(schema)
            cursor.execute(f"CREATE SCHEMA {quoted}")
            cursor.execute(
                TABLE_DDL.format(
                    s=quoted,
                    title="heading" if n == 3 else "title",
                    collate='COLLATE "C"' if n == 4 else "",
                    siglen=200 if n == 4 else 100,
                    nulls_not_distinct=" NULLS NOT DISTINCT" if nulls_not_distinct else "",
                )
            )
    return [(schema, table) for schema in SCHEMAS for table in ("Order", "parted", "parted_0")]


@pytest.mark.django_db
def test_derived_definitions_equal_the_servers(copies: list[tuple[str, str]]) -> None:
    with CaptureQueriesContext(connection) as queries:
        snapshot = catalog_snapshot("default", copies)
    asked = [q["sql"] for q in queries if "pg_get_indexdef(x.oid)" in q["sql"]]
    assert len(asked) == 1 and "quote_ident(i.relname)" in asked[0]  # none asked again
    expected = _server_definitions()
    assert len(expected) == 5 * (14 + 3)  # 14 on "Order", the parent's and two partitions'
    read = {(ix.schema, ix.name): ix.definition for ix in snapshot.indexes}
    partitions = {k: v for k, v in expected.items() if k[1].startswith("parted_1")}
    assert read == {k: v for k, v in expected.items() if k not in partitions}
    # The cases that matter are there, and tell the copies apart.
    assert read[("select", "order_tenant_title")] == (
        'CREATE UNIQUE INDEX order_tenant_title ON "select"."Order" USING btree (tenant_id, title)'
    )
    assert read[('we"ird', "order_title_c")].startswith('CREATE INDEX order_title_c ON "we""ird"')
    assert "heading" in read[(SCHEMAS[3], "order_tenant_title")]
    assert 'COLLATE "C"' in read[("ti_def_a", "order_title_c")]
    assert 'COLLATE "C"' not in read[("ti_def_e", "order_title_c")]  # the column's own
    assert "siglen='200'" in read[("ti_def_e", "order_body")]
    assert "siglen='100'" in read[("ti_def_a", "order_body")]
    assert " ON ONLY " in read[("ti_def_a", "parted_tenant")]
    if connection.pg_version >= 150000:
        assert read[("ti_def_e", "order_once")].endswith(" NULLS NOT DISTINCT")


@pytest.mark.django_db
def test_derived_definitions__a_copy_dropped_meanwhile_is_asked_again(
    copies: list[tuple[str, str]],
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            index_rows_sql(
                "i.relname = 'order_hash'",
                extra_columns=("ix.indexrelid",),
                shared_definitions=True,
                server_version_num=connection.pg_version,
            ),
            [],
        )
        rows = cursor.fetchall()
        assert len(rows) == 5 and all(row[20] is None for row in rows)  # left to derive
        shared = SharedDefinitions()
        by_schema = {}
        for row in rows:
            index = index_from_row(row[:-1])
            by_schema[index.schema] = index
            shared.add(("one group",), index, row[-1], quote_identifier(index.schema))
        # The first one added is the one asked for: gone before the definitions are read.
        first = rows[0][0]
        cursor.execute(f"DROP INDEX {quote_identifier(first)}.order_hash")
        shared.resolve(cursor)
    expected = _server_definitions()
    for schema, index in by_schema.items():
        assert index.definition == (None if schema == first else expected[(schema, "order_hash")])
