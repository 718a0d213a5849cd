"""The check's view of partitioned tables: is every leaf partition served by a tenant index?

A query through a partitioned table reads each leaf partition with that partition's own
index, so "has a valid tenant-leading index" (``tenant_indexes.E004``) is judged per leaf:
a leaf without one is reported on the leaf, and a partitioned table whose leaves all have
one is fine whether or not its own partitioned index is complete (that is E002's business).
The check reads the leaves in its table query (:data:`LEAVES_COLUMN_SQL`), so this costs no
statement of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .findings import E_NO_TENANT_LEADING, Finding, Level
from .sql import qualified_name

if TYPE_CHECKING:
    from .catalog import CatalogIndex


@dataclass(frozen=True)
class PartitionLeaf:
    """A leaf partition, for the check: ``leading`` is the first key column of each of its
    valid, non-partial B-tree indexes (its own or attached)."""

    schema: str
    name: str
    leading: tuple[str, ...]


# A column of the check's table query (``c``: the table's pg_class row): for a partitioned
# table, its leaves as JSON text; NULL for any other table. Each leaf's rows are looked up
# by oid (the planner takes pg_partition_tree for a thousand rows, and joined, it hashed
# the whole of pg_class and pg_namespace for every partitioned table).
LEAVES_COLUMN_SQL = """
    CASE WHEN c.relkind = 'p' THEN (
        SELECT coalesce(json_agg(json_build_object('schema', ln.nspname, 'name', lc.relname,
                 'leading', array(
                     SELECT DISTINCT a.attname FROM pg_index lx
                       JOIN pg_class li ON li.oid = lx.indexrelid
                       JOIN pg_am am ON am.oid = li.relam AND am.amname = 'btree'
                       JOIN pg_attribute a ON a.attrelid = lx.indrelid AND a.attnum = lx.indkey[0]
                      WHERE lx.indrelid = t.relid AND lx.indisvalid AND lx.indpred IS NULL))
                 ORDER BY ln.nspname, lc.relname), '[]')::text
          FROM pg_partition_tree(c.oid) t
          CROSS JOIN LATERAL (SELECT lc.relname, lc.relnamespace
                                FROM pg_class lc WHERE lc.oid = t.relid OFFSET 0) lc
          CROSS JOIN LATERAL (SELECT ln.nspname
                                FROM pg_namespace ln WHERE ln.oid = lc.relnamespace OFFSET 0) ln
         WHERE t.isleaf AND t.level > 0)
    END"""


def parse_leaves(text: str | None) -> tuple[PartitionLeaf, ...] | None:
    """The value of :data:`LEAVES_COLUMN_SQL`; ``None`` for a table that is not partitioned."""
    if text is None:
        return None
    return tuple(
        PartitionLeaf(str(x["schema"]), str(x["name"]), tuple(x["leading"] or ()))
        for x in json.loads(text)
    )


def leaf_findings(
    alias: str, schema: str, table: str, tenant_column: str, leaves: tuple[PartitionLeaf, ...]
) -> list[Finding]:
    """E004 for each leaf of ``schema.table`` with no valid B-tree index, without a
    predicate, whose first column is ``tenant_column``."""
    uncovered = [leaf for leaf in leaves if tenant_column not in leaf.leading]
    return [
        Finding(
            id=E_NO_TENANT_LEADING,
            level=Level.ERROR,
            database=alias,
            schema=leaf.schema,
            table=leaf.name,
            index=None,
            message=f"partition {leaf.schema}.{leaf.name} of {schema}.{table} has no valid "
            f"index whose first column is {tenant_column}: every tenant query that reaches "
            "it reads the whole partition",
            hint=f"python manage.py repair_tenant_indexes --database {alias} builds the "
            "declared tenant index on each partition concurrently and attaches it",
        )
        for leaf in uncovered
    ]


def is_partitioned_index(index: CatalogIndex) -> bool:
    """An index of a partitioned table, whichever read made ``index`` (the usage read
    carries no partition counts; the server's definition of such an index says ``ON ONLY``)."""
    return index.partitioned or " ON ONLY " in (index.definition or "")


def drop_sql(index: CatalogIndex) -> str:
    """How to drop ``index`` without blocking writes, as PostgreSQL accepts it.

    ``DROP INDEX CONCURRENTLY`` for an ordinary index; a partitioned index refuses it, so
    for one: a plain ``DROP INDEX`` (a catalog change that briefly locks every partition)
    under a short ``lock_timeout``, so that it gives up rather than queue writes.
    """
    qualified = qualified_name(index.schema, index.name)
    if not is_partitioned_index(index):
        return f"DROP INDEX CONCURRENTLY {qualified}"
    return (
        f"SET lock_timeout = '5s'; DROP INDEX {qualified} (a partitioned index cannot be "
        "dropped CONCURRENTLY; the plain drop reads no rows but locks every partition for a "
        "moment)"
    )
