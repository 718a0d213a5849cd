"""``tenant_index_stats``' core: read, sum and judge the usage of the tenant indexes.

:func:`collect_usage` reads the usage statistics of every alias (a primary and its
replicas) through :mod:`tenant_indexes.statistics` and judges them with
:mod:`tenant_indexes.usageanalysis` into a :class:`UsageReport`. The same judgements run
inside ``check_tenant_indexes`` when ``TENANT_INDEXES["CHECK_INCLUDES_USAGE"]`` is true:
W002 from the check's own snapshot (no extra query), W001 over every checked alias.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections

from .catalog import CatalogSnapshot
from .compare import missing_table_finding, undeclared_invalid_finding
from .conf import get_config
from .declared import TenantTable
from .findings import W_REDUNDANT, W_UNUSED, Finding
from .health import register_database_set_producer, register_finding_producer
from .reads import first_error_line
from .reports import DatabaseReport, exit_code_for, overall_status
from .statistics import (
    ServerStats,
    TenantQueryPlan,
    UsageSnapshot,
    server_stats,
    tenant_query_plans,
    usage_snapshot,
)
from .targeting import missing_schemas, resolve_databases, tenant_tables_for
from .usageanalysis import (
    IndexStats,
    StatsAge,
    TableStats,
    UsageThresholds,
    analyse_usage,
    stats_age,
)
from .usagefindings import usage_findings

# Stands in for the times a structural (W002-only) judgement does not need.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class UsageReport:
    """What ``tenant_index_stats`` reports: the ``check_tenant_indexes`` JSON plus usage.

    ``indexes`` and ``tables`` are summed over the aliases; ``statistics`` says how old
    each alias's statistics are. ``status`` and :meth:`exit_code` are those of the check.
    """

    status: str
    databases: tuple[Any, ...] = ()
    indexes: tuple[IndexStats, ...] = ()
    tables: tuple[TableStats, ...] = ()
    statistics: tuple[StatsAge, ...] = ()
    findings: tuple[Any, ...] = ()
    stats_min_age: timedelta = timedelta(days=7)
    snapshots: tuple[UsageSnapshot, ...] = ()
    history: tuple[Any, ...] | None = None
    history_days: float | None = None

    @property
    def too_young(self) -> tuple[StatsAge, ...]:
        """The aliases whose statistics are too young to judge W001."""
        return tuple(age for age in self.statistics if age.age < self.stats_min_age)

    def as_dict(self) -> dict[str, Any]:
        """The check's ``--format json`` document with ``tables`` and ``statistics`` added."""
        indexes = []
        for stats in self.indexes:
            entry = stats.as_dict()
            entry["database"] = self.statistics[0].alias if self.statistics else None
            entry["status"] = "ok" if stats.index.valid else "invalid"
            indexes.append(entry)
        return {
            "status": self.status,
            "databases": [d.as_dict() for d in self.databases],
            "indexes": indexes,
            "tables": [t.as_dict() for t in self.tables],
            "statistics": {
                "min_age_seconds": int(self.stats_min_age.total_seconds()),
                "too_young_to_judge": bool(self.too_young),
                "databases": [age.as_dict() for age in self.statistics],
            },
            "findings": [f.as_dict() for f in self.findings],
            **(
                {}
                if self.history is None
                else {
                    "history": {
                        "days": self.history_days,
                        "indexes": [h.as_dict() for h in self.history],
                    }
                }
            ),
        }

    def exit_code(self, fail_level: Any = "error") -> int:
        """0 healthy, 1 a finding at or above ``fail_level``, 2 a database was not checked."""
        return exit_code_for(self.databases, self.findings, fail_level)


SORT_KEYS = {
    "size": lambda s: (-s.index.known_size_bytes, s.index.schema, s.index.table, s.index.name),
    "scans": lambda s: (-s.idx_scan, s.index.schema, s.index.table, s.index.name),
    "name": lambda s: (s.index.schema, s.index.table, s.index.name),
}


def collect_usage(
    databases: Sequence[str] | None = None,
    app_labels: Sequence[str] | None = None,
    *,
    explain: bool = False,
    sort: str = "size",
) -> UsageReport:
    """Read, sum and judge the usage of the tenant tables' indexes over several aliases.

    Args:
        databases: the aliases (a primary and its replicas); default: every PostgreSQL
            alias that tenant models migrate to.
        app_labels: only the models of these apps.
        explain: also EXPLAIN (never ANALYZE) a tenant query per table on the first alias.
        sort: order of ``indexes``: ``size`` or ``scans`` (largest first) or ``name``.

    Returns:
        The report; an alias that cannot be read is a database entry with ``error`` set.

    Raises:
        UnknownDatabaseAlias: an alias is not in ``settings.DATABASES``.
        UnknownAppLabel: an app label is not installed.
    """
    aliases = resolve_databases(databases, app_labels)
    thresholds = UsageThresholds.from_config(get_config())
    reports: list[DatabaseReport] = []
    snapshots: list[UsageSnapshot] = []
    tenant_columns: dict[tuple[str, str], str] = {}
    declared_names: dict[tuple[str, str], set[str]] = {}
    missing_tables: list[Finding] = []
    for alias in aliases:
        started = time.perf_counter()
        connection = connections[alias]
        tables = tenant_tables_for(alias, app_labels)
        unreadable = DatabaseReport(alias=alias, vendor=connection.vendor, server_version=None)
        if connection.vendor != "postgresql":
            error = f"database {alias!r} is {connection.vendor}: usage statistics need PostgreSQL"
            reports.append(replace(unreadable, error=error))
            continue
        try:
            missing = missing_schemas(alias, [t.schema for t in tables])
            if missing:
                error = (
                    f"database {alias!r}: schema(s) {', '.join(missing)} of "
                    "TENANT_INDEXES['CHECK_SCHEMAS'] do not exist"
                )
                reports.append(replace(unreadable, error=error))
                continue
            snapshot = usage_snapshot(alias, [(t.schema, t.table) for t in tables])
            missing_tables.extend(_missing_tables(alias, tables, snapshot))
        except DatabaseError as e:
            reports.append(replace(unreadable, error=f"database {alias!r}: {first_error_line(e)}"))
            continue
        for live, declared in _declared_tables_of(tables, snapshot):
            for t in declared:
                tenant_columns[(live.schema, live.table)] = t.tenant_column
                declared_names.setdefault((live.schema, live.table), set()).update(
                    ix.name for ix in t.indexes
                )
        snapshots.append(snapshot)
        reports.append(
            DatabaseReport(
                alias=alias,
                vendor=connection.vendor,
                server_version=snapshot.server.server_version,
                server_version_num=snapshot.server.server_version_num,
                tables=len(snapshot.tables),
                duration_seconds=time.perf_counter() - started,
            )
        )
    plans: tuple[TenantQueryPlan, ...] = ()
    if explain and snapshots:
        first = snapshots[0]
        try:
            plans = tenant_query_plans(
                first.server.alias,
                [(t.schema, t.table, tenant_columns[(t.schema, t.table)]) for t in first.tables],
            )
        except DatabaseError as e:
            position = next(i for i, r in enumerate(reports) if r.alias == first.server.alias)
            reports[position] = replace(
                reports[position],
                error=f"database {first.server.alias!r}: --explain failed: {first_error_line(e)}",
            )
    index_stats, table_stats, ages = judge_usage(snapshots, tenant_columns, thresholds, plans)
    findings = missing_tables + usage_findings(
        index_stats, table_stats, ages, tenant_columns, thresholds
    )
    if snapshots:
        findings.extend(
            undeclared_invalid_finding(snapshots[0].server.alias, ix)
            for ix in snapshots[0].indexes
            if not ix.valid
            and not ix.building
            and ix.name not in declared_names.get((ix.schema, ix.table), set())
        )
    return UsageReport(
        status=overall_status(reports, findings),
        databases=tuple(reports),
        indexes=tuple(sorted(index_stats, key=SORT_KEYS[sort])),
        tables=table_stats,
        statistics=ages,
        findings=tuple(findings),
        stats_min_age=thresholds.stats_min_age,
        snapshots=tuple(snapshots),
    )


def judge_usage(
    snapshots: Sequence[UsageSnapshot],
    tenant_columns: dict[tuple[str, str], str],
    thresholds: UsageThresholds,
    plans: Sequence[TenantQueryPlan] = (),
) -> tuple[tuple[IndexStats, ...], tuple[TableStats, ...], tuple[StatsAge, ...]]:
    """The one W001 / W002 judgement of ``tenant_index_stats`` and ``check_tenant_indexes``.

    :func:`~tenant_indexes.usageanalysis.analyse_usage` over the aliases' snapshots, then
    W001 over the last ``UNUSED_DAYS`` of recorded history where it covers that span on
    every alias (read from the ``HISTORY_DATABASE`` alias), else the statistics' age.
    """
    index_stats, table_stats, ages = analyse_usage(snapshots, tenant_columns, thresholds, plans)
    return _judged_over_history(index_stats, snapshots, thresholds), table_stats, ages


def _declared_tables_of(
    tables: Sequence[TenantTable], snapshot: UsageSnapshot
) -> list[tuple[Any, list[TenantTable]]]:
    """Each live table of ``snapshot`` with the declared tables it is, in declaration
    order: those of its schema and name, and those of its name asked for on the
    search_path (schema ``None``). Looked up by name: at 80,000 tables, comparing every
    declared table with every live one was 6.4 billion comparisons."""
    by_name: dict[tuple[str | None, str], list[tuple[int, TenantTable]]] = {}
    for position, t in enumerate(tables):
        by_name.setdefault((t.schema, t.table), []).append((position, t))
    found = []
    for live in snapshot.tables:
        matches = by_name.get((None, live.table), []) + by_name.get((live.schema, live.table), [])
        found.append((live, [t for _, t in sorted(matches, key=lambda match: match[0])]))
    return found


def _missing_tables(
    alias: str, tables: Sequence[TenantTable], snapshot: UsageSnapshot
) -> list[Finding]:
    """E005 for each tenant table the snapshot did not find, as the check reports it."""
    found = {id(t) for _, declared in _declared_tables_of(tables, snapshot) for t in declared}
    missing = [t for t in tables if id(t) not in found]
    if not missing:
        return []
    current: str | None = None
    if any(t.schema is None for t in missing):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            current = cursor.fetchone()[0]
    return [missing_table_finding(alias, t, t.schema or current) for t in missing]


def _judged_over_history(
    index_stats: tuple[IndexStats, ...],
    snapshots: Sequence[UsageSnapshot],
    thresholds: UsageThresholds,
) -> tuple[IndexStats, ...]:
    """W001 over the last ``UNUSED_DAYS`` of recorded history, where there is enough of it.

    Without the history table (the core migration not applied) nothing changes.
    """
    from django.db import transaction

    from .history import history_database, usage_since
    from .usageanalysis import judge_over_history

    store = history_database()
    if not snapshots:
        return index_stats
    days = float(get_config()["UNUSED_DAYS"])
    aliases = [s.server.alias for s in snapshots]
    now = max(s.server.now for s in snapshots)
    try:
        with transaction.atomic(using=store):
            history = usage_since(days, now=now, databases=aliases)
    except DatabaseError:
        return index_stats
    return judge_over_history(index_stats, history, aliases, days, thresholds)


def with_history(report: UsageReport, days: float) -> UsageReport:
    """``report`` with the deltas of the last ``days`` days of recorded history added.

    Only the report's own aliases count; the window ends at the first alias's clock.
    """
    from .history import usage_since

    if not report.snapshots:
        return replace(report, history=(), history_days=days)
    now = max(s.server.now for s in report.snapshots)
    aliases = [s.server.alias for s in report.snapshots]
    history = usage_since(days, now=now, databases=aliases)
    return replace(report, history=tuple(history), history_days=days)


# W001/W002 in check_tenant_indexes, opt-in through TENANT_INDEXES["CHECK_INCLUDES_USAGE"].


def tenant_columns(
    tables: Sequence[TenantTable], snapshot: CatalogSnapshot
) -> dict[tuple[str, str], str]:
    """``{(schema, table): tenant column}`` of the declared tables that exist in ``snapshot``."""
    columns = {}
    for table in tables:
        live = snapshot.table(table.schema, table.table)
        if live is not None:
            columns[(live.schema, live.name)] = table.tenant_column
    return columns


def _as_usage_snapshot(snapshot: CatalogSnapshot, server: ServerStats) -> UsageSnapshot:
    return UsageSnapshot(
        server=server,
        indexes=snapshot.indexes,
        tables=(),  # seq-scan-heavy tables are tenant_index_stats' business, not a probe's
    )


def redundancy_findings(tables: Sequence[TenantTable], snapshot: CatalogSnapshot) -> list[Finding]:
    """W002 for check_tenant_indexes, from its own snapshot (no extra query).

    Returns nothing unless ``TENANT_INDEXES["CHECK_INCLUDES_USAGE"]`` is true.
    """
    config = get_config()
    if not config["CHECK_INCLUDES_USAGE"]:
        return []
    thresholds = UsageThresholds.from_config(config)
    server = ServerStats(snapshot.alias, snapshot.server_version, 0, False, None, _EPOCH, _EPOCH)
    usage = _as_usage_snapshot(snapshot, server)
    columns = tenant_columns(tables, snapshot)
    index_stats, _, _ = analyse_usage([usage], columns, thresholds)
    ages = (stats_age(server),)
    return [
        f for f in usage_findings(index_stats, (), ages, columns, thresholds) if f.id == W_REDUNDANT
    ]


def unused_findings(
    checked: Sequence[tuple[Sequence[TenantTable], CatalogSnapshot]],
) -> list[Finding]:
    """W001 for check_tenant_indexes, judged over every checked alias at once.

    Judged by :func:`judge_usage`, as ``tenant_index_stats`` judges it: over recorded
    history where it covers ``UNUSED_DAYS`` on every alias. Costs two statements per alias
    (the statistics' age) and two queries on ``HISTORY_DATABASE``. Returns nothing unless
    ``TENANT_INDEXES["CHECK_INCLUDES_USAGE"]`` is true or when an alias cannot tell its age.
    """
    config = get_config()
    if not config["CHECK_INCLUDES_USAGE"] or not checked:
        return []
    thresholds = UsageThresholds.from_config(config)
    usages = []
    columns: dict[tuple[str, str], str] = {}
    for tables, snapshot in checked:
        try:
            server = server_stats(snapshot.alias)
        except DatabaseError:
            return []  # the age is unknown, so nothing may be judged unused
        usages.append(_as_usage_snapshot(snapshot, server))
        columns.update(tenant_columns(tables, snapshot))
    index_stats, _, ages = judge_usage(usages, columns, thresholds)
    return [
        f for f in usage_findings(index_stats, (), ages, columns, thresholds) if f.id == W_UNUSED
    ]


def register_check_producers() -> None:
    """Wire W002 and W001 into :func:`tenant_indexes.health.check_databases` (idempotent)."""
    register_finding_producer(redundancy_findings)
    register_database_set_producer(unused_findings)
