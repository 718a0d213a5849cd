"""Drift between schemas that each hold a copy of the tenant tables (``CHECK_SCHEMAS``,
django-tenants): an index that most copies of a table have and one copy lacks.

Declared indexes are already judged in every schema (E001 names the schema that lacks
one); this covers the others, made by ``RunSQL`` or by hand, which no model declares. It
reads only the check's snapshot: no statement of its own. A copy is judged against the
others only when at least three schemas hold the table, and an index counts as "what the
others have" when more than half of the other copies have an index of that name.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .findings import W_SCHEMA_DRIFT, Finding, Level
from .sql import qualified_name, quote_identifier

if TYPE_CHECKING:
    from .catalog import CatalogIndex, CatalogSnapshot
    from .declared import TenantTable

MIN_COPIES = 3


def _create_concurrently(index: CatalogIndex, schema: str, table: str) -> str:
    """The server's definition of another copy's index, for ``schema.table``.

    The part from ``USING`` on is the other copy's own; what comes before is rebuilt from
    the names, quoted, so that a name with ``ON`` or ``USING`` in it cannot shift the text.
    ``CONCURRENTLY`` where PostgreSQL accepts it: not on a partitioned table (``ON ONLY``).
    """
    definition = index.definition or ""
    only = " ON ONLY " in definition
    head = re.match(r"^CREATE (UNIQUE )?INDEX ", definition)
    quoted = '"' + index.name.replace('"', '""') + '"'
    for printed in (quoted, index.name):
        rest = definition[head.end() :] if head else ""
        if rest.startswith(printed + " ON "):
            tail = rest[len(printed) + len(" ON ") :]
            if " USING " in tail:
                using = tail[tail.index(" USING ") :]
                break
    else:
        using = definition[definition.rindex(" USING ") :] if " USING " in definition else ""
    unique = "UNIQUE " if head and head.group(1) else ""
    concurrently = "" if only else "CONCURRENTLY "
    target = ("ONLY " if only else "") + qualified_name(schema, table)
    name = quote_identifier(index.name)  # CREATE INDEX takes the table's schema
    return f"CREATE {unique}INDEX {concurrently}{name} ON {target}{using}"


def drift_findings(tables: Sequence[TenantTable], snapshot: CatalogSnapshot) -> list[Finding]:
    """W040 for each schema copy of a table that lacks an undeclared index most others have."""
    copies: dict[str, list[str]] = defaultdict(list)
    declared: dict[str, set[str]] = defaultdict(set)
    for t in tables:
        if t.schema is not None and snapshot.table(t.schema, t.table) is not None:
            copies[t.table].append(t.schema)
            declared[t.table].update(ix.name for ix in t.indexes)
    findings: list[Finding] = []
    for table, found in copies.items():
        schemas = list(dict.fromkeys(found))
        if len(schemas) < MIN_COPIES:
            continue
        held: dict[str, tuple[CatalogIndex, ...]] = {}
        for schema in schemas:
            live = snapshot.table(schema, table)
            assert live is not None
            held[schema] = snapshot.indexes_of(live)
        counts = Counter(ix.name for indexes in held.values() for ix in indexes)
        total = len(held)
        # What most of the other copies have and no model declares: worked out once a table.
        usual = [
            (name, count)
            for name, count in sorted(counts.items())
            if name not in declared[table] and count * 2 > total - 1
        ]
        for schema, indexes in held.items() if usual else ():
            have = {ix.name for ix in indexes}
            for name, count in usual:
                if name in have:
                    continue
                model = next(ix for ixs in held.values() for ix in ixs if ix.name == name)
                findings.append(
                    Finding(
                        id=W_SCHEMA_DRIFT,
                        level=Level.WARNING,
                        database=snapshot.alias,
                        schema=schema,
                        table=table,
                        index=name,
                        message=f"schema {schema} lacks index {name} on {table}, which {count} "
                        f"of the other {total - 1} schemas have (no model declares it)",
                        hint="Create it as the others have it: "
                        f"{_create_concurrently(model, schema, table)}; or drop it "
                        "from the others if it is not wanted",
                    )
                )
    return findings
