"""Declared tenant indexes against a catalog snapshot: index states, differences, findings.

Pure functions: (declared tables, catalog snapshot) in, frozen data out. The check
(:mod:`tenant_indexes.health`), the repair and the migration operation's build all decide
through this one comparison. Findings E001-E005, E050 and W050.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .catalog import CatalogIndex, CatalogSnapshot, CatalogTable
from .declared import DeclaredIndex, TenantTable
from .findings import (
    E_DRIFT,
    E_INVALID,
    E_MISSING,
    E_MISSING_SCHEMA,
    E_MISSING_TABLE,
    E_NO_TENANT_LEADING,
    E_TENANT_INDEX_WRONG_METHOD,
    W_UNDECLARED_INVALID,
    Finding,
    FindingSubject,
    IndexState,
    Level,
)
from .normalise import DeclaredDefinition, NormalisedDefinition
from .partitionleaves import drop_sql, leaf_findings
from .reports import IndexReport
from .schemadrift import drift_findings
from .sql import qualified_name


def index_state(table: TenantTable, index: DeclaredIndex, snapshot: CatalogSnapshot) -> IndexState:
    """The state of one declared index in a snapshot."""
    live_table = snapshot.table(table.schema, table.table)
    if live_table is None:
        return IndexState.MISSING
    return _state(index, live_table, snapshot.index(live_table.schema, index.name), snapshot)


def _state(
    index: DeclaredIndex,
    live_table: CatalogTable,
    live: CatalogIndex | None,
    snapshot: CatalogSnapshot,
) -> IndexState:
    """:func:`index_state` once the live table and index are looked up."""
    if live is None:
        return IndexState.MISSING
    if live.building:
        return IndexState.BUILDING
    if not live.valid:
        return IndexState.INVALID
    normalised = snapshot.normalised_definition(live.schema, live.name)
    if definition_differences(index, live, live_table, normalised):
        return IndexState.DRIFT
    return IndexState.OK


def definition_differences(
    index: DeclaredIndex,
    live: CatalogIndex,
    table: CatalogTable | str,
    normalised: NormalisedDefinition | None = None,
) -> list[str]:
    """What differs between a declared index and the live one of the same name.

    The one comparison of definitions: the check and the migration operation both use it.
    PostgreSQL rewrites predicates and expressions (casts, parentheses, ``IN`` as
    ``= ANY``), so their texts are compared as the server normalised them
    (:func:`tenant_indexes.normalise.normalise_definitions`). Without a normalisation only
    identical texts count as equal; a normalisation that failed is a difference.

    Args:
        index: the declared index.
        live: the live index of the same name.
        table: the declared table (its live version, or its name).
        normalised: both sides' predicate and expressions as the server deparsed them.
    """
    table_name = table if isinstance(table, str) else table.name
    differences = []
    if live.table != table_name:
        differences.append(f"it is on table {live.table}, not {table_name}")
    if tuple(live.columns) != tuple(index.columns):
        differences.append(
            f"key columns are ({columns_text(live.columns)}), "
            f"declared ({columns_text(index.columns)})"
        )
    elif index.descending and tuple(live.descending) != tuple(index.descending):
        differences.append("column sort order (ASC/DESC) differs")
    if tuple(live.include) != tuple(index.include):
        differences.append(
            f"INCLUDE columns are ({', '.join(live.include)}), "
            f"declared ({', '.join(index.include)})"
        )
    if live.unique != index.unique:
        differences.append("it is UNIQUE, declared not unique" if live.unique else
                           "it is not UNIQUE, declared unique")  # fmt: skip
    if live.method != index.method:
        differences.append(f"method is {live.method}, declared {index.method}")
    if (live.predicate is None) != (index.condition is None):
        differences.append(
            f"it has the predicate WHERE {live.predicate}, declared none"
            if live.predicate
            else f"it has no predicate, declared WHERE {index.condition}"
        )
    differences.extend(_normalised_differences(index, live, normalised))
    return differences


def _normalised_differences(
    index: DeclaredIndex, live: CatalogIndex, normalised: NormalisedDefinition | None
) -> list[str]:
    """Predicate and expression differences when both sides have them."""
    with_predicate = index.condition is not None and live.predicate is not None
    with_expressions = bool(index.key_expressions) and live.expressions is not None
    if not (with_predicate or with_expressions):
        return []
    if normalised is not None and normalised.error is not None:
        what = " and ".join(
            part
            for part, present in (("predicate", with_predicate), ("expressions", with_expressions))
            if present
        )
        return [
            f"its {what} could not be compared: the server could not normalise them "
            f"({normalised.error})"
        ]
    differences = []
    if with_predicate:
        if normalised is not None:
            declared, found = normalised.declared_predicate, normalised.live_predicate
        else:
            declared, found = index.condition, live.predicate
        if declared != found:
            differences.append(
                f"its predicate is WHERE {live.predicate}, declared WHERE {index.condition}"
            )
    if with_expressions:
        if normalised is not None:
            same = normalised.declared_expressions == normalised.live_expressions
        else:
            same = ", ".join(index.key_expressions) == live.expressions
        if not same:
            differences.append(
                f"its expressions are ({live.expressions}), declared "
                f"({', '.join(index.key_expressions)})"
            )
    return differences


def declared_definitions(tables: Iterable[TenantTable]) -> list[DeclaredDefinition]:
    """The predicates and expressions of the declared indexes that have any, for
    :func:`tenant_indexes.catalog.catalog_snapshot` to normalise in the same pass."""
    return [
        DeclaredDefinition(
            schema=table.schema,
            table=table.table,
            name=index.name,
            predicate=index.condition,
            expressions=index.key_expressions,
        )
        for table in tables
        for index in table.indexes
        if index.condition is not None or index.key_expressions
    ]


def columns_text(columns: Iterable[str | None]) -> str:
    """Key columns for a message, ``<expression>`` for an expression key."""
    return ", ".join(c if c is not None else "<expression>" for c in columns)


def index_reports(
    tables: Sequence[TenantTable], snapshot: CatalogSnapshot
) -> tuple[IndexReport, ...]:
    """One report per declared tenant index, in declaration order."""
    reports = []
    alias = snapshot.alias
    for table in tables:
        live_table = snapshot.table(table.schema, table.table)
        schema = live_table.schema if live_table else (table.schema or snapshot.current_schema)
        for index in table.indexes:
            live = snapshot.index(live_table.schema, index.name) if live_table else None
            reports.append(
                IndexReport(
                    database=alias,
                    schema=schema,
                    table=table.table,
                    name=index.name,
                    columns=index.columns,
                    status=_state(index, live_table, live, snapshot)
                    if live_table
                    else IndexState.MISSING,
                    model=table.model,
                    app_label=table.app_label,
                    unique=index.unique,
                    method=index.method,
                    live=live,
                )
            )
    return tuple(reports)


def find_problems(tables: Sequence[TenantTable], snapshot: CatalogSnapshot) -> list[Finding]:
    """E001-E005: declared tenant indexes against one database's snapshot.

    Args:
        tables: the declared tenant tables for the snapshot's alias.
        snapshot: the live catalog of that alias.

    Returns:
        The findings, table by table in declaration order.
    """
    alias = snapshot.alias
    findings: list[Finding] = [
        Finding(
            id=E_MISSING_SCHEMA,
            level=Level.ERROR,
            database=alias,
            schema=missing,
            table="",
            index=None,
            message=f"schema {missing} of TENANT_INDEXES['CHECK_SCHEMAS'] does not exist, "
            "so none of its tenant tables could be checked",
            hint="Create the schema and migrate it, or take it out of CHECK_SCHEMAS (or "
            "out of what its callable returns)",
        )
        for missing in snapshot.missing_schemas
    ]
    for table in tables:
        if table.schema is not None and table.schema in snapshot.missing_schemas:
            continue  # one E040 for the schema, not one E005 per table
        live_table = snapshot.table(table.schema, table.table)
        if live_table is None:
            findings.append(
                missing_table_finding(alias, table, table.schema or snapshot.current_schema)
            )
            continue
        for index in table.indexes:
            finding = _index_finding(table, index, live_table, snapshot)
            if finding is not None:
                findings.append(finding)
        if live_table.partition_leaves is not None:
            # Judged per leaf partition: each is read with its own index.
            findings.extend(
                leaf_findings(alias, live_table.schema, live_table.name, table.tenant_column,
                              live_table.partition_leaves)
            )  # fmt: skip
        elif (tenant_leading := _tenant_leading_finding(table, live_table, snapshot)) is not None:
            findings.append(tenant_leading)
        findings.extend(_undeclared_invalid_findings(table, live_table, snapshot))
    findings.extend(drift_findings(tables, snapshot))
    return findings


def _undeclared_invalid_findings(
    table: TenantTable, live_table: CatalogTable, snapshot: CatalogSnapshot
) -> list[Finding]:
    declared = {ix.name for ix in table.indexes}
    return [
        undeclared_invalid_finding(snapshot.alias, ix)
        for ix in snapshot.indexes_of(live_table)
        if not ix.valid and not ix.building and ix.name not in declared
    ]


def missing_table_finding(alias: str, table: TenantTable, schema: str | None) -> Finding:
    """E005: the table of a tenant model does not exist. Shared by the check and
    ``tenant_index_stats``."""
    label = f"{schema}.{table.table}" if schema else table.table
    return Finding(
        id=E_MISSING_TABLE,
        level=Level.ERROR,
        database=alias,
        schema=schema,
        table=table.table,
        index=None,
        message=f"table {label} of {table.model} does not exist",
        hint=f"Apply the migrations: python manage.py migrate {table.app_label} --database {alias}",
    )


def undeclared_invalid_finding(alias: str, ix: CatalogIndex) -> Finding:
    """W050 for an INVALID index on a tenant table that no model declares.

    A declared INVALID index is E002; one nobody declares is still maintained on every
    write (once ready) and, when unique, enforces nothing: worth a warning, not an error,
    since no model relies on it. Shared by the check and ``tenant_index_stats``.
    """
    qualified = qualified_name(ix.schema, ix.name)
    unique = (
        " It is UNIQUE but enforces nothing while INVALID: duplicates can be inserted."
        if ix.unique
        else ""
    )
    cost = "every write maintains it" if ix.ready else "it takes space"
    return Finding(
        id=W_UNDECLARED_INVALID,
        level=Level.WARNING,
        database=alias,
        schema=ix.schema,
        table=ix.table,
        index=ix.name,
        message=f"index {qualified} on tenant table {ix.schema}.{ix.table} is INVALID and "
        f"no model declares it: queries never use it, yet {cost}." + unique,
        hint=f"Drop it without blocking writes: {drop_sql(ix)}; or, if "
        "it is wanted, declare it in the model's Meta.indexes and rebuild it with "
        f"repair_tenant_indexes --database {alias}. Definition: {ix.definition}",
    )


def _index_finding(
    table: TenantTable, index: DeclaredIndex, live_table: CatalogTable, snapshot: CatalogSnapshot
) -> Finding | None:
    alias = snapshot.alias
    live = snapshot.index(live_table.schema, index.name)
    differences: list[str] = []
    if live is not None and live.valid and not live.building:
        normalised = snapshot.normalised_definition(live.schema, live.name)
        differences = definition_differences(index, live, live_table, normalised)
        if not differences:
            return None  # the common case, decided before any text is made
    common: FindingSubject = {
        "database": alias,
        "schema": live_table.schema,
        "table": live_table.name,
        "index": index.name,
        "level": Level.ERROR,
    }
    if live is None:
        return Finding(
            id=E_MISSING,
            message=f"index {index.name} ({columns_text(index.columns)}) declared by "
            f"{table.model} does not exist on {live_table.schema}.{live_table.name}",
            hint=f"Create it concurrently: python manage.py repair_tenant_indexes "
            f"--database {alias} (--dry-run prints the SQL), or python manage.py migrate "
            f"{table.app_label} --database {alias} if its migration is not applied",
            **common,
        )
    if live.building:
        return None
    if not live.valid and live.partitioned:
        return Finding(
            id=E_INVALID,
            message=f"index {index.name} on partitioned table {live_table.schema}."
            f"{live_table.name} is INVALID: {live.partitions_attached} of "
            f"{live.partitions_total} partitions attached; the planner ignores it on the "
            "partitions without one",
            hint=f"Finish it: python manage.py repair_tenant_indexes --database {alias} "
            "builds each missing partition index concurrently and attaches it (a partitioned "
            "index cannot be dropped or built CONCURRENTLY)",
            **common,
        )
    if not live.valid:
        return Finding(
            id=E_INVALID,
            message=f"index {index.name} on {live_table.schema}.{live_table.name} is INVALID "
            "(a failed or cancelled concurrent build); the planner ignores it"
            + (", yet every write still maintains it" if live.ready else ""),
            hint=f"Rebuild it: python manage.py repair_tenant_indexes --database {alias}, or "
            f"DROP INDEX CONCURRENTLY {qualified_name(live_table.schema, index.name)}; then "
            "recreate it (fix duplicate rows first if it is unique)",
            **common,
        )
    if differences:
        return Finding(
            id=E_DRIFT,
            message=f"index {index.name} differs from its declaration in {table.model}: "
            + "; ".join(differences),
            hint=f"Rebuild it from the declaration: {drop_sql(live)}; then "
            f"python manage.py repair_tenant_indexes --database {alias}. Live definition: "
            f"{live.definition}",
            **common,
        )
    return None


def _tenant_leading_finding(
    table: TenantTable, live_table: CatalogTable, snapshot: CatalogSnapshot
) -> Finding | None:
    live_indexes = snapshot.indexes_of(live_table)

    def leads(ix: CatalogIndex) -> bool:
        # A partial index does not serve every tenant query, so it does not count.
        return bool(ix.columns) and ix.columns[0] == table.tenant_column and not ix.predicate

    # Only a B-tree counts: a BRIN index summarises block ranges, so on rows that are not
    # stored in tenant order every range holds every tenant and a tenant query reads every
    # block; a hash index serves equality on one column only (never a composite
    # "tenant_id, ..." key, ordering, ranges or IN lists). GIN/GiST/SP-GiST need extension
    # operator classes for a plain tenant column and serve no ordering either.
    if any(leads(ix) and ix.usable and ix.method == "btree" for ix in live_indexes):
        return None
    if any(leads(ix) and ix.building and ix.method == "btree" for ix in live_indexes):
        return None  # one is being built right now: reported as "building", not a failure
    other_methods = [ix for ix in live_indexes if leads(ix) and ix.usable]
    if other_methods:
        names = ", ".join(f"{ix.name} ({ix.method.upper()})" for ix in other_methods)
        return Finding(
            id=E_TENANT_INDEX_WRONG_METHOD,
            level=Level.ERROR,
            database=snapshot.alias,
            schema=live_table.schema,
            table=live_table.name,
            index=other_methods[0].name,
            message=f"table {live_table.schema}.{live_table.name} leads with "
            f"{table.tenant_column} only in {names}, no B-tree: a BRIN index keeps one "
            "summary per block range, so unless rows are stored in tenant order every range "
            "matches every tenant and a tenant query reads the whole table; a hash index "
            "serves single-column equality only, never a composite, ordered or range "
            "tenant query",
            hint=f"Declare a B-tree TenantIndex on {live_table.schema}.{live_table.name} "
            "(TenantIndex(fields=[...]) in Meta.indexes), makemigrations and migrate; then "
            "drop the other index if nothing else needs it",
        )
    declared = [ix.name for ix in table.indexes if ix.leads_with == table.tenant_column]
    hint = (
        f"Create the declared {', '.join(declared)}: python manage.py repair_tenant_indexes "
        f"--database {snapshot.alias}"
        if declared
        else f"Declare one in {table.model}.Meta.indexes, e.g. TenantIndex(fields=[...]), then "
        "makemigrations and migrate"
    )
    return Finding(
        id=E_NO_TENANT_LEADING,
        level=Level.ERROR,
        database=snapshot.alias,
        schema=live_table.schema,
        table=live_table.name,
        index=None,
        message=f"table {live_table.schema}.{live_table.name} has no valid index whose first "
        f"column is {table.tenant_column}: every tenant query reads the whole table",
        hint=hint,
    )
