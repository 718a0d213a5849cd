"""Concurrent index builds on partitioned tables (range, list, hash, sub-partitions).

PostgreSQL refuses ``CREATE INDEX CONCURRENTLY`` on a partitioned table, and a plain
``CREATE INDEX`` there locks every partition against writes for the whole build. The online
way, which :func:`build_partitioned_index` takes:

1. create the parent's index ``ON ONLY`` the parent (instant: it indexes no rows and starts
   INVALID), and the same on every partitioned sub-partition, attached to its parent;
2. per leaf partition, adopt a valid index of the same definition that is not attached
   elsewhere, else build one with ``CREATE INDEX CONCURRENTLY`` (an INVALID one left by a
   killed run is dropped concurrently first);
3. ``ALTER INDEX parent ATTACH PARTITION child`` for each (brief locks, bounded by
   ``BUILD_LOCK_TIMEOUT``); the server marks an index valid once every partition under it
   has a valid attached index;
4. verify that the parent index is valid.

Every step reads the catalog first, so a run that was killed at any point is resumed by
running it again: attached children are kept, valid unattached ones adopted, INVALID ones
rebuilt. The same steps, collected instead of run, are the SQL that
``repair_tenant_indexes --dry-run`` and ``sqlmigrate`` print (:mod:`.partitionplan`).

:func:`drop_partitioned_index` removes one with a single plain ``DROP INDEX`` under a lock
timeout: PostgreSQL refuses ``DROP INDEX CONCURRENTLY`` on a partitioned index, refuses to
drop a partition's attached index on its own and has no way to detach one, so the parent
and every partition's index go together in one catalog change (no rows are read, but each
partition is locked ``ACCESS EXCLUSIVE`` for that moment). :func:`prebuild_for_partition`
builds the index of a table concurrently *before* it is attached with ``ATTACH PARTITION``,
which would otherwise build it under a lock that blocks writes.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import OperationalError, transaction

from . import buildcontrol
from .conf import get_config
from .exceptions import IndexBuildError
from .sql import qualified_name, quote_identifier, quoting_by_our_rule, table_name, table_reference

logger = logging.getLogger("tenant_indexes.build")

_MAX_IDENTIFIER = 63


@dataclass(frozen=True)
class Partition:
    """One member of a partition tree (``pg_partition_tree``), the root excluded.

    Attributes:
        schema: its schema.
        name: the table name.
        parent_schema: its parent's schema.
        parent: its parent's table name.
        level: 1 for a direct partition, 2 for a sub-partition, ...
        leaf: a table with rows (``relkind 'r'``), not a partitioned one.
    """

    schema: str
    name: str
    parent_schema: str
    parent: str
    level: int
    leaf: bool


_TREE_SQL = """
    SELECT n.nspname, c.relname, pn.nspname, pc.relname, t.level, t.isleaf
      FROM pg_partition_tree(%s::regclass) AS t
      JOIN pg_class c ON c.oid = t.relid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_class pc ON pc.oid = t.parentrelid
      JOIN pg_namespace pn ON pn.oid = pc.relnamespace
     WHERE t.level > 0
     ORDER BY t.level, n.nspname, c.relname
"""

# The index of one table that is attached to a given parent index, if any (none when the
# parent index does not exist: the dry run's plan reads this before it would create it).
_ATTACHED_SQL = """
    SELECT i.relname, ix.indisvalid
      FROM pg_inherits h
      JOIN pg_index ix ON ix.indexrelid = h.inhrelid
      JOIN pg_class i ON i.oid = ix.indexrelid
     WHERE h.inhparent = to_regclass(%s) AND ix.indrelid = %s::regclass
"""

# What makes two indexes identical, for the indexes ``where`` selects.
_DEFINITION_SQL = """
    SELECT i.relname, ix.indisvalid, ix.indisunique, am.amname,
           pg_get_expr(ix.indpred, ix.indrelid),
           array(SELECT pg_get_indexdef(ix.indexrelid, k, true)
                   FROM generate_series(1, ix.indnkeyatts) AS k ORDER BY k),
           ix.indclass::oid[], ix.indoption::int2[], ix.indcollation::oid[]
      FROM pg_index ix
      JOIN pg_class i ON i.oid = ix.indexrelid
      JOIN pg_am am ON am.oid = i.relam
     WHERE {where}
"""

# Indexes of one table not attached to any parent index.
_CANDIDATES_SQL = _DEFINITION_SQL.format(
    where="ix.indrelid = %s::regclass "
    "AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = ix.indexrelid)"
)


# When attaching ``child`` (%s) to ``parent`` (%s) completes a parent index that is itself a
# partition's, the server marks it valid and goes up the tree, taking ACCESS EXCLUSIVE on
# every ancestor table. The ancestors as (schema, table) pairs (root first), else no row.
_CASCADE_SQL = """
    SELECT array(SELECT ARRAY[n.nspname::text, c.relname::text]
                   FROM pg_partition_ancestors(p.indrelid) WITH ORDINALITY AS a(relid, k)
                   JOIN pg_class c ON c.oid = a.relid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE a.relid <> p.indrelid ORDER BY a.k DESC)
      FROM pg_index p JOIN pg_class t ON t.oid = p.indrelid
     WHERE p.indexrelid = %s::regclass AND t.relispartition
       AND (SELECT ci.indisvalid FROM pg_index ci WHERE ci.indexrelid = %s::regclass)
       AND 1 + (SELECT count(*) FROM pg_inherits h JOIN pg_index ci ON ci.indexrelid = h.inhrelid
                 WHERE h.inhparent = p.indexrelid AND ci.indisvalid)
           >= (SELECT count(*) FROM pg_inherits h WHERE h.inhparent = p.indrelid)
"""

_ATTACHED_ANYWHERE_SQL = "SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s)"


def _is_lock_conflict(error: BaseException) -> bool:
    return buildcontrol.sqlstate(error) in (
        buildcontrol.LOCK_NOT_AVAILABLE,
        buildcontrol.DEADLOCK_DETECTED,
    )


def relkind(connection: Any, table: str, schema: str | None = None) -> str | None:
    """``pg_class.relkind`` of ``table`` (on the search_path unless ``schema``)."""
    relation = qualified_name(schema, table_name(table)) if schema else table_reference(table)
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s)", [relation])
        row = cursor.fetchone()
    return row[0] if row else None


def is_partitioned(connection: Any, table: str, schema: str | None = None) -> bool:
    """``table`` is a partitioned table (``relkind 'p'``)."""
    return relkind(connection, table, schema) == "p"


def partition_tree(connection: Any, schema: str, table: str) -> list[Partition]:
    """Every partition under ``schema.table``, parents before their children."""
    with connection.cursor() as cursor:
        cursor.execute(_TREE_SQL, [qualified_name(schema, table)])
        return [Partition(*row) for row in cursor.fetchall()]


def child_index_name(index_name: str, partition: str) -> str:
    """The name of ``index_name``'s index on one partition: ``<partition>_<index>``,
    shortened with a stable hash when longer than PostgreSQL's 63 bytes."""
    name = f"{partition}_{index_name}"
    if len(name.encode()) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name.encode()[: _MAX_IDENTIFIER - 9].decode(errors='ignore')}_{digest}"


class _Table:
    """The ``table`` part of Django's index ``Statement``: any relation, maybe ``ONLY``."""

    def __init__(self, schema: str, table: str, only: bool = False):
        self.schema, self.table, self.only = schema, table, only

    def references_table(self, table: str) -> bool:
        return table == self.table

    def __str__(self) -> str:
        return ("ONLY " if self.only else "") + qualified_name(self.schema, self.table)


class _Name:
    def __init__(self, name: str):
        self.name = name

    def references_index(self, table: str, index: str) -> bool:  # pragma: no cover
        return index == self.name

    def __str__(self) -> str:
        return quote_identifier(self.name)


def index_sql(
    schema_editor: Any,
    model: Any,
    index: Any,
    *,
    schema: str,
    table: str,
    name: str,
    concurrently: bool,
    only: bool = False,
) -> str:
    """Django's ``CREATE INDEX`` statement for ``index``, on another relation and name."""
    with quoting_by_our_rule(schema_editor):
        statement = index.create_sql(model, schema_editor, concurrently=concurrently)
        statement.parts["table"] = _Table(schema, table, only)
        statement.parts["name"] = _Name(name)
        return str(statement)


class _PartitionedBuild:
    def __init__(self, schema_editor: Any, model: Any, index: Any, schema: str, output: Any):
        self.editor = schema_editor
        self.connection = schema_editor.connection
        self.model, self.index, self.schema, self.output = model, index, schema, output
        self.table = table_name(model._meta.db_table)
        self.config = get_config()
        self.tree: list[Partition] = []
        self.names: dict[tuple[str, str], str] = {}

    def _say(self, message: str) -> None:
        logger.info(message)
        if self.output is not None and self.output.verbosity >= 1:
            self.output.write("    " + message)

    def _execute(self, sql: str) -> None:
        self.editor.execute(sql, params=None)

    def _fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def _index_of(self, schema: str, name: str) -> tuple[bool] | None:
        rows = self._fetch(
            "SELECT ix.indisvalid FROM pg_index ix WHERE ix.indexrelid = to_regclass(%s)",
            [qualified_name(schema, name)],
        )
        return rows[0] if rows else None

    def _same_definition(self, row: tuple[Any, ...], reference: tuple[Any, ...]) -> bool:
        # unique, method, predicate, key texts, operator classes, options, collations
        return row[2:] == reference[2:]

    def _start(self) -> None:
        from .build import build_settings

        with self.connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, false)",
                           [build_settings(self.config)["lock_timeout"]])  # fmt: skip

    def _create_parent(self, existing: tuple[bool] | None) -> bool:
        """Whether the parent's ``ON ONLY`` index is to be created (it does not exist)."""
        return existing is None

    def _built(self, schema: str, child: str) -> None:
        """Raise unless the concurrent build of ``child`` ended valid."""
        found = self._index_of(schema, child)
        if not found or not found[0]:
            raise IndexBuildError(f'CREATE INDEX CONCURRENTLY "{child}" did not end valid')

    def _finish(self) -> str:
        parent_index = self.index.name
        valid = self._index_of(self.schema, parent_index)
        if not valid or not valid[0]:
            raise IndexBuildError(
                f'Index "{parent_index}" on partitioned table "{self.table}" is still INVALID '
                "after attaching every partition's index; run again to finish it."
            )
        return "built"

    def run(self) -> str:
        schema, parent_index = self.schema, self.index.name
        self._start()
        existing = self._index_of(schema, parent_index)
        if existing is not None and existing[0]:
            return "adopted"
        if self._create_parent(existing):
            self._say(f'creating "{parent_index}" ON ONLY "{schema}"."{self.table}"')
            self._execute(
                index_sql(self.editor, self.model, self.index, schema=schema,
                          table=self.table, name=parent_index, concurrently=False, only=True)
            )  # fmt: skip
        self.tree = partition_tree(self.connection, schema, self.table)
        self.names = names = {(schema, self.table): parent_index}
        leaves = [p for p in self.tree if p.leaf]
        for part in self.tree:
            parent_name = names[(part.parent_schema, part.parent)]
            attached = self._fetch(
                _ATTACHED_SQL,
                [qualified_name(part.parent_schema, parent_name),
                 qualified_name(part.schema, part.name)],
            )  # fmt: skip
            if attached:  # done by an earlier run (PostgreSQL attaches only valid leaves)
                names[(part.schema, part.name)] = attached[0][0]
                continue
            child = self._free_child_name(part)
            if not part.leaf:
                own = self._index_of(part.schema, child)
                if own is None:
                    self._execute(
                        index_sql(self.editor, self.model, self.index, schema=part.schema,
                                  table=part.name, name=child, concurrently=False, only=True)
                    )  # fmt: skip
                names[(part.schema, part.name)] = child
                self._attach(part, parent_name, child, bool(own and own[0]))
                continue
            child = self._leaf_index(part, child)
            names[(part.schema, part.name)] = child
            self._attach(part, parent_name, child, True)
            done = sum(1 for leaf in leaves if (leaf.schema, leaf.name) in names)
            self._say(f"partition {done} of {len(leaves)}: {part.schema}.{part.name} attached")
        return self._finish()

    def _free_child_name(self, part: Partition) -> str:
        """``<partition>_<index>``, else ``<partition>_<index>_<n>`` when an index attached
        to another parent has that name: renaming a partitioned index (the swap of
        ``ChangeIndexConcurrently``) renames only the parent, its partitions' keep theirs."""
        for n in range(100):
            child = child_index_name(self.index.name + (f"_{n}" if n else ""), part.name)
            if not self._fetch(_ATTACHED_ANYWHERE_SQL, [qualified_name(part.schema, child)]):
                return child
        raise IndexBuildError(f"No free index name for {self.index.name} on {part.name}")

    def _leaf_index(self, part: Partition, child: str) -> str:
        """A valid, unattached index with the declared definition on one leaf partition."""
        rows = self._fetch(_CANDIDATES_SQL, [qualified_name(part.schema, part.name)])
        own = next((r for r in rows if r[0] == child), None)
        if own is not None and not own[1]:
            self._say(f'dropping the INVALID index "{child}" concurrently')
            self._execute(f"DROP INDEX CONCURRENTLY IF EXISTS {qualified_name(part.schema, child)}")
            own = None
        if own is not None:
            return child
        reference = self._reference_definition()
        for row in rows:
            if row[1] and reference is not None and self._same_definition(row, reference):
                self._say(f'adopting the valid index "{row[0]}" on {part.schema}.{part.name}')
                return str(row[0])
        self._say(f'building "{child}" on {part.schema}.{part.name} concurrently')
        self._execute(
            index_sql(self.editor, self.model, self.index, schema=part.schema,
                      table=part.name, name=child, concurrently=True)
        )  # fmt: skip
        self._built(part.schema, child)
        return child

    def _reference_definition(self) -> tuple[Any, ...] | None:
        """The parent index's definition as the server writes it (keys by column name, so
        it compares with a partition's index whatever the partition's column order)."""
        rows = self._fetch(
            _DEFINITION_SQL.format(where="ix.indexrelid = to_regclass(%s)"),
            [qualified_name(self.schema, self.index.name)],
        )
        return rows[0] if rows else None

    def _attach(self, part: Partition, parent_index: str, child: str, valid: bool) -> None:
        """``ALTER INDEX ... ATTACH PARTITION``, in the lock order of a writer.

        A writer through the root locks root, partition, sub-partition, then the leaf's
        indexes. The attach locks the child index first; when that completes a
        sub-partition's index, the server then locks every ancestor table ACCESS EXCLUSIVE
        to mark the indexes above valid: a deadlock with a writer in between. That attach
        takes the ancestors' locks first, root first, in one transaction with it. A lock
        timeout or deadlock rolls back a catalog-only step: retried with backoff. ``valid``
        (whether ``child`` is valid) is for the dry run's plan; the run asks the catalog."""
        parent = qualified_name(part.parent_schema, parent_index)
        index = qualified_name(part.schema, child)
        attach = f"ALTER INDEX {parent} ATTACH PARTITION {index}"
        retries = int(self.config["BUILD_LOCK_RETRIES"])
        attempt = 0
        while True:
            attempt += 1
            try:
                with transaction.atomic(using=self.connection.alias):
                    rows = self._fetch(_CASCADE_SQL, [parent, index])
                    ancestors = rows[0][0] if rows else []
                    if ancestors:
                        only = ", ".join(f"ONLY {qualified_name(*a)}" for a in ancestors)
                        self._execute(f"LOCK TABLE {only} IN ACCESS EXCLUSIVE MODE")
                    self._execute(attach)
                return
            except OperationalError as error:
                if not _is_lock_conflict(error) or attempt > retries:
                    raise
                pause = buildcontrol.retry_pause(self.config, attempt)
                message = "Attaching %s to %s: %s (try %d of %d); next try in %.1fs."
                logger.warning(message, index, parent, error, attempt, retries + 1, pause)
                time.sleep(pause)


def build_partitioned_index(
    schema_editor: Any, model: Any, index: Any, schema: str, *, output: Any = None
) -> str:
    """Build ``index`` on the partitioned table of ``model`` without blocking writes.

    See the module docstring for the steps; resumable after a kill. Returns ``"adopted"``
    when the parent index was already valid, else ``"built"``; raises ``IndexBuildError``
    when a partition's build, or the parent, did not end valid.
    """
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout')")
        (previous,) = cursor.fetchone()
    try:
        return _PartitionedBuild(schema_editor, model, index, schema, output).run()
    finally:
        if connection.connection is not None and connection.is_usable():
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, false)", [previous])


def remove_index(schema_editor: Any, model: Any, index: Any) -> None:
    """``RemoveIndexConcurrently``'s drop: concurrent, or :func:`drop_partitioned_index`
    on a partitioned table (where PostgreSQL refuses ``CONCURRENTLY``)."""
    from .buildcontrol import table_schema

    table = model._meta.db_table
    if schema_editor.collect_sql:
        from .partitionplan import collect_remove_index

        collect_remove_index(schema_editor, model, index)
        return
    if not is_partitioned(schema_editor.connection, table):
        schema_editor.remove_index(model, index, concurrently=True)
        return
    drop_partitioned_index(schema_editor, str(table_schema(schema_editor.connection, table)),
                           index.name)  # fmt: skip


def drop_partitioned_index(schema_editor: Any, schema: str, name: str) -> None:
    """Drop a partitioned index and, with it, every partition's attached index.

    PostgreSQL refuses ``DROP INDEX CONCURRENTLY`` on a partitioned index and refuses to
    drop an attached partition's index on its own, so this is one plain ``DROP INDEX``:
    a catalog change that scans no rows but takes an ``ACCESS EXCLUSIVE`` lock on each
    partition for that moment. The lock wait is bounded by ``BUILD_LOCK_TIMEOUT`` (``SET
    LOCAL``, in a transaction of its own) so the drop gives up instead of queueing writes.
    """
    from .build import build_settings

    with transaction.atomic(using=schema_editor.connection.alias):
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)",
                           [build_settings(get_config())["lock_timeout"]])  # fmt: skip
        schema_editor.execute(f"DROP INDEX IF EXISTS {qualified_name(schema, name)}", params=None)


def prebuild_for_partition(
    schema_editor: Any, model: Any, index: Any, schema: str, table: str
) -> str:
    """Build ``index`` concurrently on ``schema.table`` before it becomes a partition.

    ``ALTER TABLE parent ATTACH PARTITION table`` builds every missing partition index under
    a lock; with this one there (and valid) the attach adopts it, and only its brief lock
    remains. Idempotent: a valid index of that name is kept, an INVALID one rebuilt. Returns
    the name of the index on ``table``.
    """
    name = child_index_name(index.name, table)
    build = _PartitionedBuild(schema_editor, model, index, schema, None)
    rows = build._fetch(_CANDIDATES_SQL, [qualified_name(schema, table)])
    own = next((r for r in rows if r[0] == name), None)
    if own is not None and own[1]:
        return name
    if own is not None:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {qualified_name(schema, name)}")
    schema_editor.execute(
        index_sql(schema_editor, model, index, schema=schema, table=table, name=name,
                  concurrently=True)
    )  # fmt: skip
    return name
