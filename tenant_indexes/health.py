"""Declared tenant indexes compared with the live catalog: index states and findings.

``find_problems()`` and ``index_reports()`` are pure: (declared tables, catalog snapshot) in,
frozen data out. ``check_databases()`` is the one call that the command, the system check
and the HTTP view make; it never raises for a database that cannot be checked, it reports
it (status ``unknown``, exit code 2).

Finding producers are pluggable: any ``(tables, snapshot) -> Iterable[Finding]`` callable
appended with :func:`register_finding_producer` runs in the same pass (the usage analysis
adds W001/W002 that way) and sees the same snapshot, so it costs no extra catalog query.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connections

from .catalog import (
    CatalogSnapshot,
    DeclaredDefinition,
    LiveIndex,
    LiveTable,
    NormalisedDefinition,
    catalog_snapshot,
)
from .conf import get_config
from .declared import DeclaredIndex, TenantTable, declared_tenant_tables
from .exceptions import CatalogUnavailable, UnknownAppLabel, UnknownDatabaseAlias
from .findings import (
    E_DRIFT,
    E_INVALID,
    E_MISSING,
    E_MISSING_TABLE,
    E_NO_TENANT_LEADING,
    Finding,
    FindingSubject,
    IndexState,
    Level,
)


@dataclass(frozen=True)
class IndexReport:
    """One declared tenant index on one database, with its state and usage where known."""

    database: str
    schema: str | None
    table: str
    name: str
    columns: tuple[str | None, ...]
    status: IndexState
    model: str
    app_label: str
    unique: bool = False
    method: str = "btree"
    live: LiveIndex | None = None

    def as_dict(self) -> dict[str, Any]:
        """The index as in DESIGN.md's JSON, with usage fields when the index exists."""
        data: dict[str, Any] = {
            "database": self.database,
            "schema": self.schema,
            "table": self.table,
            "name": self.name,
            "columns": list(self.columns),
            "status": self.status.value,
            "model": self.model,
            "app_label": self.app_label,
            "unique": self.unique,
            "method": self.method,
        }
        if self.live is not None:
            data.update(
                valid=self.live.valid,
                definition=self.live.definition,
                size_bytes=self.live.size_bytes,
                idx_scan=self.live.idx_scan,
                idx_tup_read=self.live.idx_tup_read,
                idx_tup_fetch=self.live.idx_tup_fetch,
            )
        return data


@dataclass(frozen=True)
class DatabaseReport:
    """How the check of one alias went; ``error`` is set when it could not be checked."""

    alias: str
    vendor: str
    server_version: str | None
    error: str | None = None
    server_version_num: int | None = None
    tables: int = 0
    duration_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "vendor": self.vendor,
            "server_version": self.server_version,
            "server_version_num": self.server_version_num,
            "error": self.error,
            "tables": self.tables,
            "duration_seconds": round(self.duration_seconds, 6),
        }


@dataclass(frozen=True)
class HealthReport:
    """The result of one check over one or more database aliases."""

    status: str
    databases: tuple[DatabaseReport, ...] = ()
    indexes: tuple[IndexReport, ...] = ()
    findings: tuple[Finding, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Exactly the JSON document of DESIGN.md (keys may be added, never renamed)."""
        return {
            "status": self.status,
            "databases": [d.as_dict() for d in self.databases],
            "indexes": [i.as_dict() for i in self.indexes],
            "findings": [f.as_dict() for f in self.findings],
        }

    def exit_code(self, fail_level: Level | str = Level.ERROR) -> int:
        """0 healthy, 1 a finding at or above ``fail_level``, 2 a database was not checked.

        "Could not check" wins: a partial answer must not pass a deploy gate.
        """
        return exit_code_for(self.databases, self.findings, fail_level)


FindingProducer = Callable[[Sequence[TenantTable], CatalogSnapshot], Iterable[Finding]]


def index_state(table: TenantTable, index: DeclaredIndex, snapshot: CatalogSnapshot) -> IndexState:
    """The state of one declared index in a snapshot."""
    live_table = snapshot.table(table.schema, table.table)
    if live_table is None:
        return IndexState.MISSING
    live = snapshot.index(live_table.schema, index.name)
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
    live: LiveIndex,
    table: LiveTable | str,
    normalised: NormalisedDefinition | None = None,
) -> list[str]:
    """What differs between a declared index and the live one of the same name.

    The one comparison of definitions: the check and the migration operation both use it.
    PostgreSQL rewrites predicates and expressions (casts, parentheses, ``IN`` as
    ``= ANY``), so their texts are compared as the server normalised them
    (:func:`tenant_indexes.catalog.normalise_definitions`). Without a normalisation only
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
            f"key columns are ({_columns(live.columns)}), declared ({_columns(index.columns)})"
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
    index: DeclaredIndex, live: LiveIndex, normalised: NormalisedDefinition | None
) -> list[str]:
    """Predicate and expression differences when both sides have them (fix-defs)."""
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


def snapshot_for(alias: str, tables: Sequence[TenantTable]) -> CatalogSnapshot:
    """The catalog snapshot of ``alias`` for ``tables``, with their predicates and
    expressions normalised (see :func:`definition_differences`)."""
    return catalog_snapshot(
        alias, [(t.schema, t.table) for t in tables], definitions=declared_definitions(tables)
    )


def _columns(columns: Iterable[str | None]) -> str:
    return ", ".join(c if c is not None else "<expression>" for c in columns)


def index_reports(
    tables: Sequence[TenantTable], snapshot: CatalogSnapshot
) -> tuple[IndexReport, ...]:
    """One report per declared tenant index, in declaration order."""
    reports = []
    for table in tables:
        live_table = snapshot.table(table.schema, table.table)
        for index in table.indexes:
            live = snapshot.index(live_table.schema, index.name) if live_table else None
            reports.append(
                IndexReport(
                    database=snapshot.alias,
                    schema=live_table.schema
                    if live_table
                    else (table.schema or snapshot.current_schema),
                    table=table.table,
                    name=index.name,
                    columns=index.columns,
                    status=index_state(table, index, snapshot),
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
    findings: list[Finding] = []
    for table in tables:
        live_table = snapshot.table(table.schema, table.table)
        schema = table.schema or snapshot.current_schema
        label = f"{schema}.{table.table}" if schema else table.table
        if live_table is None:
            findings.append(
                Finding(
                    id=E_MISSING_TABLE,
                    level=Level.ERROR,
                    database=alias,
                    schema=schema,
                    table=table.table,
                    index=None,
                    message=f"table {label} of {table.model} does not exist",
                    hint=f"Apply the migrations: python manage.py migrate {table.app_label} "
                    f"--database {alias}",
                )
            )
            continue
        for index in table.indexes:
            finding = _index_finding(table, index, live_table, snapshot)
            if finding is not None:
                findings.append(finding)
        tenant_leading = _tenant_leading_finding(table, live_table, snapshot)
        if tenant_leading is not None:
            findings.append(tenant_leading)
    return findings


def _index_finding(
    table: TenantTable, index: DeclaredIndex, live_table: LiveTable, snapshot: CatalogSnapshot
) -> Finding | None:
    alias = snapshot.alias
    qualified = f"{live_table.schema}.{index.name}"
    live = snapshot.index(live_table.schema, index.name)
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
            message=f"index {index.name} ({_columns(index.columns)}) declared by "
            f"{table.model} does not exist on {live_table.schema}.{live_table.name}",
            hint=f"Create it concurrently: python manage.py repair_tenant_indexes "
            f"--database {alias} (--dry-run prints the SQL), or python manage.py migrate "
            f"{table.app_label} --database {alias} if its migration is not applied",
            **common,
        )
    if live.building:
        return None
    if not live.valid:
        return Finding(
            id=E_INVALID,
            message=f"index {index.name} on {live_table.schema}.{live_table.name} is INVALID "
            "(a failed or cancelled concurrent build); the planner ignores it"
            + (", yet every write still maintains it" if live.ready else ""),
            hint=f"Rebuild it: python manage.py repair_tenant_indexes --database {alias}, or "
            f"DROP INDEX CONCURRENTLY {qualified}; then recreate it "
            "(fix duplicate rows first if it is unique)",
            **common,
        )
    normalised = snapshot.normalised_definition(live.schema, live.name)
    differences = definition_differences(index, live, live_table, normalised)
    if differences:
        return Finding(
            id=E_DRIFT,
            message=f"index {index.name} differs from its declaration in {table.model}: "
            + "; ".join(differences),
            hint=f"Rebuild it from the declaration: DROP INDEX CONCURRENTLY {qualified}; then "
            f"python manage.py repair_tenant_indexes --database {alias}. Live definition: "
            f"{live.definition}",
            **common,
        )
    return None


def _tenant_leading_finding(
    table: TenantTable, live_table: LiveTable, snapshot: CatalogSnapshot
) -> Finding | None:
    live_indexes = snapshot.indexes_of(live_table)

    def leads(ix: LiveIndex) -> bool:
        # A partial index does not serve every tenant query, so it does not count.
        return bool(ix.columns) and ix.columns[0] == table.tenant_column and not ix.predicate

    if any(leads(ix) and ix.valid and not ix.building for ix in live_indexes):
        return None
    if any(leads(ix) and ix.building for ix in live_indexes):
        return None  # one is being built right now: reported as "building", not a failure
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


# The producers that run on every snapshot. Extend with register_finding_producer().
FINDING_PRODUCERS: list[FindingProducer] = [find_problems]


def register_finding_producer(producer: FindingProducer) -> FindingProducer:
    """Add a producer of findings to every check (usable as a decorator); idempotent."""
    if producer not in FINDING_PRODUCERS:
        FINDING_PRODUCERS.append(producer)
    return producer


# --- tenant_index_stats (issue #4): producers that need every alias at once ---------------
# W001 ("unused") must see a primary and its replicas together: an index scanned only on a
# replica is used. These run once per check, after every alias's snapshot was taken.
DatabaseSetProducer = Callable[
    [Sequence[tuple[Sequence[TenantTable], CatalogSnapshot]]], Iterable[Finding]
]
DATABASE_SET_PRODUCERS: list[DatabaseSetProducer] = []


def register_database_set_producer(producer: DatabaseSetProducer) -> DatabaseSetProducer:
    """Add a producer that sees every checked alias's snapshot at once; idempotent."""
    if producer not in DATABASE_SET_PRODUCERS:
        DATABASE_SET_PRODUCERS.append(producer)
    return producer


# --- end tenant_index_stats ---------------------------------------------------------------


def tenant_tables_for(alias: str, app_labels: Sequence[str] | None = None) -> list[TenantTable]:
    """The declared tenant tables to look for on one alias, one copy per configured schema."""
    tables = declared_tenant_tables(alias, app_labels)
    schemas = list(get_config()["CHECK_SCHEMAS"] or [])
    if not schemas:
        return list(tables)
    return [
        replace(t, schema=schema) if t.schema is None else t for schema in schemas for t in tables
    ]


def default_databases(app_labels: Sequence[str] | None = None) -> list[str]:
    """Every PostgreSQL alias that tenant models migrate to.

    When tenant models migrate only to other backends, those aliases are returned so the
    check can say that it needs PostgreSQL instead of silently checking nothing.
    """
    with_tenant_models = [
        alias for alias in settings.DATABASES if declared_tenant_tables(alias, app_labels)
    ]
    postgres = [a for a in with_tenant_models if connections[a].vendor == "postgresql"]
    return postgres or with_tenant_models


def resolve_databases(
    databases: Sequence[str] | None = None, app_labels: Sequence[str] | None = None
) -> list[str]:
    """Validate the requested app labels and aliases and say which aliases to read.

    Shared by the check, the usage report and the repair so that a typo gets the same
    message (and exit code 2) from every command.

    Args:
        databases: requested aliases, in order; repeats are read once. Empty or ``None``:
            :func:`default_databases`.
        app_labels: requested app labels (``None``: every installed app).

    Returns:
        The aliases to read, each once, in the order given.

    Raises:
        UnknownDatabaseAlias: an alias is not in ``settings.DATABASES``.
        UnknownAppLabel: an app label is not installed.
    """
    for label in app_labels or ():
        try:
            apps.get_app_config(label)
        except LookupError as e:
            raise UnknownAppLabel(f"unknown app label {label!r}") from e
    for alias in databases or ():
        if alias not in settings.DATABASES:
            raise UnknownDatabaseAlias(
                f"unknown database alias {alias!r} (known: {', '.join(settings.DATABASES)})"
            )
    return list(dict.fromkeys(databases)) if databases else default_databases(app_labels)


def check_databases(
    databases: Sequence[str] | None = None,
    app_labels: Sequence[str] | None = None,
    producers: Sequence[FindingProducer] | None = None,
) -> HealthReport:
    """Check the declared tenant indexes against the live catalog of each database.

    Args:
        databases: aliases to check (default: :func:`default_databases`).
        app_labels: only the models of these apps (default: every installed app).
        producers: the finding producers (default: :data:`FINDING_PRODUCERS`).

    Returns:
        The report. A database that cannot be checked (not PostgreSQL, unreachable, bad
        credentials, timeout) is a ``DatabaseReport`` with ``error`` set and makes the
        status ``unknown``.

    Raises:
        UnknownDatabaseAlias: an alias is not in ``settings.DATABASES``.
        UnknownAppLabel: an app label is not installed.
    """
    aliases = resolve_databases(databases, app_labels)
    producers = list(FINDING_PRODUCERS if producers is None else producers)
    database_reports: list[DatabaseReport] = []
    indexes: list[IndexReport] = []
    findings: list[Finding] = []
    checked: list[tuple[Sequence[TenantTable], CatalogSnapshot]] = []
    for alias in aliases:
        started = time.perf_counter()
        vendor = connections[alias].vendor
        tables = tenant_tables_for(alias, app_labels)
        try:
            snapshot = snapshot_for(alias, tables)
        except CatalogUnavailable as e:
            database_reports.append(
                DatabaseReport(
                    alias=alias,
                    vendor=vendor,
                    server_version=None,
                    error=str(e),
                    tables=len(tables),
                    duration_seconds=time.perf_counter() - started,
                )
            )
            continue
        indexes.extend(index_reports(tables, snapshot))
        for producer in producers:
            findings.extend(producer(tables, snapshot))
        checked.append((tables, snapshot))  # tenant_index_stats (issue #4)
        database_reports.append(
            DatabaseReport(
                alias=alias,
                vendor=snapshot.vendor,
                server_version=snapshot.server_version,
                server_version_num=snapshot.server_version_num,
                tables=len(tables),
                duration_seconds=time.perf_counter() - started,
            )
        )
    for set_producer in DATABASE_SET_PRODUCERS:  # tenant_index_stats (issue #4)
        findings.extend(set_producer(checked))
    return HealthReport(
        status=overall_status(database_reports, findings),
        databases=tuple(database_reports),
        indexes=tuple(indexes),
        findings=tuple(findings),
    )


def exit_code_for(
    databases: Sequence[DatabaseReport], findings: Sequence[Finding], fail_level: Level | str
) -> int:
    """DESIGN.md's exit code of a check or usage report.

    Args:
        databases: the report's databases; one with ``error`` set was not checked.
        findings: the report's findings.
        fail_level: the lowest finding level that makes the result unhealthy.

    Returns:
        2 when a database was not checked (a partial answer must not pass a deploy gate),
        1 when a finding is at or above ``fail_level``, else 0.
    """
    threshold = Level(fail_level).rank
    if any(d.error for d in databases):
        return 2
    if any(f.level.rank >= threshold for f in findings):
        return 1
    return 0


def overall_status(databases: Sequence[DatabaseReport], findings: Sequence[Finding]) -> str:
    """``unknown`` if a database was not checked, else the worst finding level, else ``ok``."""
    if any(d.error for d in databases):
        return "unknown"
    if any(f.level is Level.ERROR for f in findings):
        return "error"
    if any(f.level is Level.WARNING for f in findings):
        return "warning"
    return "ok"


__all__ = [
    "FINDING_PRODUCERS",
    "DatabaseReport",
    "Finding",
    "FindingProducer",
    "HealthReport",
    "IndexReport",
    "IndexState",
    "Level",
    "check_databases",
    "default_databases",
    "find_problems",
    "index_reports",
    "index_state",
    "overall_status",
    "register_finding_producer",
]
