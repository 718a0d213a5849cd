"""The SQL a build or drop on a partitioned table would run, printed instead of run.

``repair_tenant_indexes --dry-run`` and ``sqlmigrate`` print what the real run does. On a
partitioned table that is not one statement but a plan that depends on the catalog: which
partitions are attached already, which leaf has a valid identical index to adopt, which
``<partition>_<index>`` names are taken by indexes attached to another parent (after a
rename swap of ``ChangeIndexConcurrently``). So the plan is the build itself,
:class:`~tenant_indexes.partitions._PartitionedBuild`, with its statements collected instead
of executed: the same catalog reads and the same decisions. Where the run reads back the
outcome of a step (a leaf's build ended valid, the parent index is valid at the end) the
plan reads nothing, and where the server's reaction to an attach decides the run's next
statement (an attach that completes a sub-partition's index locks its ancestors) the plan
works it out from the partition tree.

Every ``CREATE INDEX`` is printed ``IF NOT EXISTS``, and the parent's ``ON ONLY`` index is
printed even when it exists, so the statements are safe to paste into ``psql`` in order.

Under ``sqlmigrate`` the only query on a table that is not partitioned is one ``relkind``
lookup of it (:func:`partitioned_schema`); a table that does not exist yet gets the plain
statements and a ``--`` comment saying what ``migrate`` does if it is partitioned by then.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import DatabaseError, transaction

from . import buildcontrol
from .conf import get_config
from .partitions import _DEFINITION_SQL, Partition, _PartitionedBuild, index_sql, relkind
from .sql import qualified_name, quote_identifier, table_name

_CREATE_PREFIX = r"^(CREATE (?:UNIQUE )?INDEX (?:CONCURRENTLY )?)(?!IF NOT EXISTS)"

# How many valid indexes are attached to a (partitioned) index; 0 when it does not exist.
_VALID_CHILDREN_SQL = """
    SELECT count(*) FROM pg_inherits h JOIN pg_index ci ON ci.indexrelid = h.inhrelid
     WHERE h.inhparent = to_regclass(%s) AND ci.indisvalid
"""

# A scratch table of the parent's columns, in this session's temporary schema and rolled
# back: the server's definition of the declared index, before the parent index exists.
_REFERENCE = "ti_plan_reference"

_NOT_YET = (
    "-- tenant_indexes: table {table} does not exist yet; if it is partitioned when migrate "
    "runs, the index is created ON ONLY it, built on each partition concurrently and "
    "attached, and a drop is one plain DROP INDEX under a lock timeout"
)


_VALID_HERE = (
    "-- tenant_indexes: index {index} on partitioned table {table} is valid in this database "
    "already, so migrate adopts it here; the SQL is planned against each database's catalog "
    "(repair_tenant_indexes --dry-run prints it for another)"
)


class _PartitionPlan(_PartitionedBuild):
    """A :class:`_PartitionedBuild` whose statements are collected in :attr:`statements`."""

    def __init__(self, schema_editor: Any, model: Any, index: Any, schema: str) -> None:
        super().__init__(schema_editor, model, index, schema, None)
        self.statements: list[str] = []
        self._valid_children: dict[tuple[str, str], int] = {}
        self._reference: tuple[tuple[Any, ...] | None] | None = None

    def _say(self, message: str) -> None:
        pass  # nothing is done, so nothing is reported

    def _start(self) -> None:
        pass  # the caller prints the session settings

    def _execute(self, sql: str) -> None:
        self.statements.append(re.sub(_CREATE_PREFIX, r"\1IF NOT EXISTS ", sql, count=1))

    def _create_parent(self, existing: tuple[bool] | None) -> bool:
        return True  # IF NOT EXISTS: a no-op where an earlier run created it

    def _built(self, schema: str, child: str) -> None:
        pass  # not built: nothing to read back

    def _finish(self) -> str:
        return "planned"

    def _reference_definition(self) -> tuple[Any, ...] | None:
        if self._reference is None:
            found = super()._reference_definition()
            self._reference = (found if found is not None else self._scratch_definition(),)
        return self._reference[0]

    def _scratch_definition(self) -> tuple[Any, ...] | None:
        """What the server will write for the parent index the plan creates: the declared
        index built on an empty temporary copy of the parent's columns, rolled back. ``None``
        where the session may create no table (read-only): no adoption is planned then."""
        alias = self.connection.alias
        try:
            with transaction.atomic(using=alias):
                with self.connection.cursor() as cursor:
                    cursor.execute(
                        f"CREATE TEMPORARY TABLE {quote_identifier(_REFERENCE)} "
                        f"(LIKE {qualified_name(self.schema, self.table)})"
                    )
                    cursor.execute(
                        index_sql(self.editor, self.model, self.index, schema="pg_temp",
                                  table=_REFERENCE, name=f"{_REFERENCE}_index",
                                  concurrently=False)
                    )  # fmt: skip
                rows = self._fetch(
                    _DEFINITION_SQL.format(where="ix.indexrelid = to_regclass(%s)"),
                    [qualified_name("pg_temp", f"{_REFERENCE}_index")],
                )
                transaction.set_rollback(True, using=alias)
        except DatabaseError:
            return None
        return rows[0] if rows else None

    def _attach(self, part: Partition, parent_index: str, child: str, valid: bool) -> None:
        parent = qualified_name(part.parent_schema, parent_index)
        attach = f"ALTER INDEX {parent} ATTACH PARTITION {qualified_name(part.schema, child)}"
        ancestors = self._completes(part, valid)
        if not ancestors:
            self.statements.append(attach)
            return
        only = ", ".join(f"ONLY {qualified_name(*a)}" for a in ancestors)
        lock = f"LOCK TABLE {only} IN ACCESS EXCLUSIVE MODE"
        self.statements.extend(["BEGIN", lock, attach, "COMMIT"])

    def _completes(self, part: Partition, valid: bool) -> list[tuple[str, str]]:
        """The tables the run locks before this attach (root first): those above the
        partition whose index it completes, which the server then marks valid up the tree
        (the run finds them with ``_CASCADE_SQL``, after the earlier steps ran)."""
        key = (part.parent_schema, part.parent)
        if not valid or not self._one_more_valid(key):
            return []
        ancestors = self._ancestors(key)
        # Count the completed sub-partition's index as one more valid child of each table
        # above it that it completes in turn, as the server marks them: later attaches are
        # planned with those counts.
        above = self._parent_of(key)
        while above is not None and self._one_more_valid(above):
            above = self._parent_of(above)
        return ancestors

    def _one_more_valid(self, table: tuple[str, str]) -> bool:
        """Count one more valid index attached under ``table``'s; whether it is complete."""
        if table not in self._valid_children:
            rows = self._fetch(_VALID_CHILDREN_SQL, [qualified_name(table[0], self.names[table])])
            self._valid_children[table] = int(rows[0][0])
        self._valid_children[table] += 1
        total = sum(1 for p in self.tree if (p.parent_schema, p.parent) == table)
        return self._valid_children[table] >= total

    def _parent_of(self, table: tuple[str, str]) -> tuple[str, str] | None:
        return next(((p.parent_schema, p.parent) for p in self.tree
                     if (p.schema, p.name) == table), None)  # fmt: skip

    def _ancestors(self, table: tuple[str, str]) -> list[tuple[str, str]]:
        chain: list[tuple[str, str]] = []
        above = self._parent_of(table)
        while above is not None:
            chain.insert(0, above)
            above = self._parent_of(above)
        return chain


def partitioned_index_sql(schema_editor: Any, model: Any, index: Any, schema: str) -> list[str]:
    """The statements :func:`~tenant_indexes.partitions.build_partitioned_index` would run
    now on ``schema``'s partitioned table of ``model``, in order; empty when the parent
    index is valid already. The session settings are the caller's to print."""
    plan = _PartitionPlan(schema_editor, model, index, schema)
    plan.run()
    return plan.statements


def bounded_drop_sql(schema_editor: Any, schema: str, name: str) -> list[str]:
    """What :func:`~tenant_indexes.partitions.drop_partitioned_index` runs: one plain
    ``DROP INDEX`` in a transaction of its own, its lock wait bounded (``SET LOCAL``)."""
    from .build import build_settings

    timeout = schema_editor.quote_value(build_settings(get_config())["lock_timeout"])
    drop = f"DROP INDEX IF EXISTS {qualified_name(schema, name)}"
    return ["BEGIN", f"SET LOCAL lock_timeout = {timeout}", drop, "COMMIT"]


def partitioned_schema(schema_editor: Any, model: Any) -> str | None:
    """Under ``sqlmigrate``: the schema of ``model``'s table if it is partitioned, else
    ``None``. One ``relkind`` lookup for a table that is not partitioned; for one that does
    not exist yet, a comment in the collected SQL says what ``migrate`` would do instead."""
    db_table = model._meta.db_table
    kind = relkind(schema_editor.connection, db_table)
    if kind is None:
        schema_editor.collected_sql.append(_NOT_YET.format(table=table_name(db_table)))
    if kind != "p":
        return None
    return buildcontrol.table_schema(schema_editor.connection, db_table)


def collect(schema_editor: Any, statements: list[str]) -> None:
    """Add ``statements`` to the SQL ``sqlmigrate`` prints, each ending with ``;``."""
    for sql in statements:
        schema_editor.execute(sql, params=None)


def collect_build(schema_editor: Any, model: Any, index: Any, schema: str) -> None:
    """The partitioned build of ``index``, with the lock timeout the build sets."""
    from .build import build_settings

    timeout = schema_editor.quote_value(build_settings(get_config())["lock_timeout"])
    plan = partitioned_index_sql(schema_editor, model, index, schema)
    if not plan:
        # Planned against this database's catalog: here the index is built already.
        schema_editor.collected_sql.append(_VALID_HERE.format(
            index=index.name, table=qualified_name(schema, table_name(model._meta.db_table))
        ))  # fmt: skip
        return
    collect(schema_editor, [f"SET lock_timeout = {timeout}", *plan, "RESET lock_timeout"])


def collect_add_index(schema_editor: Any, model: Any, index: Any) -> None:
    """``sqlmigrate``'s SQL for a concurrent add of ``index``."""
    schema = partitioned_schema(schema_editor, model)
    if schema is None:
        schema_editor.add_index(model, index, concurrently=True)
    else:
        collect_build(schema_editor, model, index, schema)


def collect_remove_index(schema_editor: Any, model: Any, index: Any) -> None:
    """``sqlmigrate``'s SQL for a concurrent drop of ``index``."""
    schema = partitioned_schema(schema_editor, model)
    if schema is None:
        schema_editor.remove_index(model, index, concurrently=True)
    else:
        collect(schema_editor, bounded_drop_sql(schema_editor, schema, index.name))
