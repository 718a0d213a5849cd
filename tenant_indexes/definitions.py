"""Index definitions of schema copies: the server writes one per shape, the copies are derived.

Writing definitions (``pg_get_indexdef``) is most of what reading the indexes of thousands of
schemas costs the server: at 10,000 schemas, 5 s of the indexes statement's 9.5 s. Yet the
schema copies of one table repeat the same definitions but for the schema. For an ordinary
index without expressions, predicate, storage parameters or ``NULLS NOT DISTINCT``
(:data:`~tenant_indexes.indexrows.SHARED_DEFINITION_SQL`), the server writes::

    CREATE [UNIQUE ]INDEX <index> ON <schema>.<table> USING <method> (<keys>)[ INCLUDE (...)]

where the names are quoted by ``quote_ident`` and the keys are the column names, each with
its collation where it is not the column's, its operator class where it is not the default
for the column's type, the class's options, and ``DESC`` / ``NULLS FIRST``. So two such
indexes with the same name, table name, table columns (names, types and collations) and key
pieces (:func:`~tenant_indexes.indexrows.definition_key`) differ only in the schema. The
snapshot asks the server for one index of each such group, and writes the others' as that
text with their own schema: the same text the server would have written, character for
character. Where the server's text does not start as expected, or its index went away in
between, the group's definitions are asked of the server one by one instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .indexrows import CatalogIndex

# Indexes by oid: the definition and the quoted names that start it (one index of each
# group, and the indexes of a group whose definition could not be derived).
_REPRESENTATIVES_SQL = """
    SELECT x.oid, pg_get_indexdef(x.oid), i.relname, t.relname, quote_ident(i.relname),
           quote_ident(n.nspname), quote_ident(t.relname)
      FROM unnest(%s::oid[]) AS x(oid)
      JOIN pg_index ix ON ix.indexrelid = x.oid
      JOIN pg_class i ON i.oid = ix.indexrelid
      JOIN pg_class t ON t.oid = ix.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
"""


def _set_definition(index: CatalogIndex, definition: str | None) -> None:
    # The index was made by the snapshot a moment ago and is not shared yet: its one field
    # that waited for the server is filled in place (a frozen dataclass's own way to set).
    object.__setattr__(index, "definition", definition)


class SharedDefinitions:
    """The indexes of one read whose definitions are derived, grouped by what decides them.

    Add each with :meth:`add` as it is read, then :meth:`resolve` once: one statement for
    one index of each group (none when nothing was added), and one more only for groups
    whose definition could not be derived.
    """

    def __init__(self) -> None:
        # key -> [(index, oid, quoted schema), ...]; the first one is asked of the server.
        self._groups: dict[tuple[Any, ...], list[tuple[CatalogIndex, int, str]]] = {}

    def __len__(self) -> int:
        return sum(len(members) for members in self._groups.values())

    def add(self, key: tuple[Any, ...], index: CatalogIndex, oid: int, quoted_schema: str) -> None:
        """An index read without its definition (see the module docstring for ``key``);
        ``quoted_schema`` is its schema as ``quote_ident`` writes it."""
        self._groups.setdefault(key, []).append((index, oid, quoted_schema))

    def resolve(self, cursor: Any) -> None:
        """Fill in every added index's definition, through ``cursor``."""
        if not self._groups:
            return
        groups = list(self._groups.values())
        cursor.execute(_REPRESENTATIVES_SQL, [[members[0][1] for members in groups]])
        written = {row[0]: row[1:] for row in cursor.fetchall()}
        leftover: list[tuple[CatalogIndex, int, str]] = []
        for members in groups:
            index, oid, quoted_schema = members[0]
            definition, name, table, quoted_name, found_schema, quoted_table = written.get(
                oid, (None,) * 6
            )
            head = f"CREATE {'UNIQUE ' if index.unique else ''}INDEX {quoted_name} ON "
            tail = f".{quoted_table} USING "
            prefix = head + f"{found_schema}{tail}"
            if (
                definition is None
                or (name, table, found_schema) != (index.name, index.table, quoted_schema)
                or not definition.startswith(prefix)
            ):  # dropped, renamed or written otherwise since it was read
                leftover.extend(members)
                continue
            rest = definition[len(prefix) :]
            for member, _, schema in members:
                _set_definition(member, f"{head}{schema}{tail}{rest}")
        if leftover:
            cursor.execute(_REPRESENTATIVES_SQL, [[oid for _, oid, _ in leftover]])
            found = {row[0]: row[1] for row in cursor.fetchall()}
            for member, oid, _ in leftover:
                _set_definition(member, found.get(oid))
        self._groups.clear()
