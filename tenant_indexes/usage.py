"""Usage analysis: unused (W001), redundant (W002) and seq-scan-heavy tenant tables.

The judgements (:func:`analyse_usage`, :func:`find_redundant`, :func:`usage_findings`) are
pure functions over what :func:`tenant_indexes.catalog.usage_snapshot` read, one snapshot per
database alias; :func:`collect_usage` and the check producers do the reading, through
catalog.py. Nothing here prints. The rules avoid the false positives the reference tools are
known for:

- a unique or primary index, or one backing a constraint, is never "unused": it enforces
  something even when no query scans it;
- statistics younger than ``STATS_MIN_AGE_DAYS`` are not judged at all;
- with several aliases (a primary and its replicas) an index is unused only if it is unused
  on every one of them, because replicas keep their own counters;
- "redundant" needs the same table, method, predicate and expressions, and this index's keys
  (each with its operator class, collation and order) as a leading prefix of the other's
  keys (btree) or exactly equal (any method); INCLUDE columns are not key columns.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections

from .catalog import (
    CatalogSnapshot,
    IndexUsage,
    LiveIndex,
    ServerStats,
    TableUsage,
    TenantQueryPlan,
    UsageSnapshot,
    first_error_line,
    server_stats,
    tenant_query_plans,
    usage_snapshot,
)
from .conf import get_config
from .declared import TenantTable
from .findings import (
    W_PLAN_WITHOUT_TENANT_INDEX,
    W_REDUNDANT,
    W_SEQ_SCAN_HEAVY,
    W_UNUSED,
    Finding,
    FindingSubject,
    Level,
)
from .health import (
    DatabaseReport,
    exit_code_for,
    overall_status,
    register_database_set_producer,
    register_finding_producer,
    resolve_databases,
    tenant_tables_for,
)

# Stands in for the times a structural (W002-only) judgement does not need.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class UnusedVerdict(enum.StrEnum):
    """What the statistics say about whether an index is used."""

    USED = "used"
    UNUSED = "unused"
    TOO_YOUNG = "statistics too young to judge"
    ENFORCES_CONSTRAINT = "unique or primary: enforces a constraint, never unused"
    INVALID = "invalid: not used by queries, see check_tenant_indexes"


@dataclass(frozen=True)
class StatsAge:
    """How long one alias's statistics have been counting.

    ``since`` is ``stats_reset`` when the database's statistics were reset, otherwise the
    server's start: statistics survive a clean restart but not a crash, and PostgreSQL
    records no time for that, so the start is the latest moment counting may have begun.
    """

    alias: str
    since: datetime
    age: timedelta
    source: str  # "stats_reset" or "server start"

    def as_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "since": self.since.isoformat(),
            "age_seconds": int(self.age.total_seconds()),
            "source": self.source,
        }


def stats_age(server: ServerStats) -> StatsAge:
    """The age of one alias's statistics (see :class:`StatsAge` for the conservative rule)."""
    if server.stats_reset is not None:
        since, source = server.stats_reset, "stats_reset"
    else:
        since, source = server.postmaster_start, "server start"
    return StatsAge(alias=server.alias, since=since, age=server.now - since, source=source)


@dataclass(frozen=True)
class IndexStats:
    """One index with its usage summed over every alias, and the verdicts about it.

    Attributes:
        per_alias: ``{alias: idx_scan}``, so a replica-only use stays visible.
        last_idx_scan: the latest ``last_idx_scan`` over the aliases that have the column
            (PostgreSQL 16+); ``None`` when never scanned there or unknown.
        last_idx_scan_known: ``False`` when some alias runs a server older than 16, where
            the time of the last scan is unknown (and not faked).
        redundant_to: the name of the index that covers this one, if redundant.
        redundancy_acknowledged: the redundancy is listed in ``ACKNOWLEDGED_REDUNDANT``.
    """

    index: IndexUsage
    idx_scan: int
    idx_tup_read: int
    idx_tup_fetch: int
    per_alias: Mapping[str, int]
    last_idx_scan: datetime | None
    last_idx_scan_known: bool
    unused: UnusedVerdict
    redundant_to: str | None = None
    redundancy_acknowledged: bool = False

    def as_dict(self) -> dict[str, Any]:
        ix = self.index
        return {
            "schema": ix.schema,
            "table": ix.table,
            "name": ix.name,
            "columns": [c if c is not None else "<expression>" for c in ix.key_columns],
            "include": list(ix.include_columns),
            "method": ix.method,
            "unique": ix.unique,
            "primary": ix.primary,
            "constraint": ix.constraint,
            "valid": ix.valid,
            "predicate": ix.predicate,
            "expressions": ix.expressions,
            "size_bytes": ix.size_bytes,
            "idx_scan": self.idx_scan,
            "idx_tup_read": self.idx_tup_read,
            "idx_tup_fetch": self.idx_tup_fetch,
            "idx_scan_by_database": dict(self.per_alias),
            "last_idx_scan": (
                self.last_idx_scan.isoformat()
                if self.last_idx_scan is not None
                else (None if self.last_idx_scan_known else "unknown")
            ),
            "unused": self.unused.value,
            "redundant_to": self.redundant_to,
            "redundancy_acknowledged": self.redundancy_acknowledged,
        }


@dataclass(frozen=True)
class TableStats:
    """One tenant-scoped table with its scans summed over every alias."""

    schema: str
    table: str
    tenant_column: str
    seq_scan: int
    idx_scan: int
    n_live_tup: int
    table_bytes: int
    total_bytes: int
    seq_scan_heavy: bool
    estimated_rows: float = 0.0
    plan: TenantQueryPlan | None = None
    plan_uses_tenant_index: bool | None = None

    @property
    def seq_scan_share(self) -> float | None:
        total = self.seq_scan + self.idx_scan
        return self.seq_scan / total if total else None

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "schema": self.schema,
            "table": self.table,
            "tenant_column": self.tenant_column,
            "seq_scan": self.seq_scan,
            "idx_scan": self.idx_scan,
            "seq_scan_share": self.seq_scan_share,
            "n_live_tup": self.n_live_tup,
            "estimated_rows": self.estimated_rows,
            "table_bytes": self.table_bytes,
            "total_bytes": self.total_bytes,
            "seq_scan_heavy": self.seq_scan_heavy,
        }
        if self.plan is not None:
            result["explain"] = {
                "tenant": self.plan.tenant,
                "node_types": list(self.plan.node_types),
                "indexes": list(self.plan.index_names),
                "uses_tenant_index": self.plan_uses_tenant_index,
            }
        return result


@dataclass(frozen=True)
class UsageThresholds:
    """The configurable thresholds, read from ``TENANT_INDEXES`` (see conf.py)."""

    unused_max_scans: int = 0
    stats_min_age: timedelta = timedelta(days=7)
    seq_scan_min_rows: int = 10_000
    seq_scan_min_scans: int = 50
    seq_scan_min_share: float = 0.5
    acknowledged_redundant: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> UsageThresholds:
        """Build the thresholds from :func:`tenant_indexes.conf.get_config`."""
        return cls(
            unused_max_scans=int(config["UNUSED_MAX_SCANS"]),
            stats_min_age=timedelta(days=float(config["STATS_MIN_AGE_DAYS"])),
            seq_scan_min_rows=int(config["SEQ_SCAN_MIN_ROWS"]),
            seq_scan_min_scans=int(config["SEQ_SCAN_MIN_SCANS"]),
            seq_scan_min_share=float(config["SEQ_SCAN_MIN_SHARE"]),
            acknowledged_redundant=frozenset(config["ACKNOWLEDGED_REDUNDANT"]),
        )


# --- Redundancy (W002) --------------------------------------------------------------------


def _backs_constraint(index: IndexUsage) -> bool:
    return index.primary or index.constraint is not None


def _same_shape(a: IndexUsage, b: IndexUsage) -> bool:
    return (
        a.schema == b.schema
        and a.table == b.table
        and a.method == b.method
        and a.predicate == b.predicate
        and a.expressions == b.expressions
    )


def key_definitions(definition: str, method: str) -> tuple[str, ...]:
    """The key columns of a ``pg_get_indexdef()`` text, one fragment per key.

    Each fragment is what PostgreSQL prints for that key: the column or expression plus any
    non-default operator class, collation, ``DESC`` and ``NULLS`` option, so two keys are
    interchangeable exactly when their fragments are equal. ``INCLUDE`` columns come after
    the key list and are not part of it.
    """
    marker = f" USING {method} ("
    start = definition.find(marker)
    if start < 0:
        return ()
    i = start + len(marker)
    depth, quote = 0, ""
    current: list[str] = []
    keys: list[str] = []
    while i < len(definition):
        ch = definition[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                keys.append("".join(current).strip())
                return tuple(keys)
            depth -= 1
        elif ch == "," and depth == 0:
            keys.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    return ()


def covers(other: IndexUsage, index: IndexUsage) -> bool:
    """Whether ``other`` makes ``index`` redundant (ignoring which of a duplicate pair to keep).

    ``other`` must be valid and of the same shape (table, method, predicate, expressions);
    ``index``'s keys (column or expression with operator class, collation and order) must
    be a leading prefix of ``other``'s keys (btree only; any other method needs equal keys),
    and ``index``'s INCLUDE columns must be among ``other``'s columns, or an index-only scan
    that ``index`` serves would lose them. A unique index is only covered by a unique index
    with the same keys: uniqueness over more columns is a weaker constraint.
    """
    if other is index or not other.valid or not _same_shape(index, other):
        return False
    mine = key_definitions(index.definition, index.method)
    theirs = key_definitions(other.definition, other.method)
    if not mine or len(mine) > len(theirs) or theirs[: len(mine)] != mine:
        return False
    if len(mine) < len(theirs) and index.method != "btree":
        return False
    if index.unique and not (
        other.unique
        and len(mine) == len(theirs)
        and ("NULLS NOT DISTINCT" in index.definition) == ("NULLS NOT DISTINCT" in other.definition)
    ):
        return False
    other_columns = set(other.key_columns) | set(other.include_columns)
    return set(index.include_columns) <= other_columns


def _is_exact_duplicate(a: IndexUsage, b: IndexUsage) -> bool:
    return covers(a, b) and covers(b, a)


def find_redundant(indexes: Sequence[IndexUsage]) -> dict[str, str]:
    """``{redundant index name: covering index name}`` among the indexes of one alias.

    Never lists an index that backs a constraint (primary key, unique or exclusion
    constraint) or that is invalid. Of two exact duplicates one is kept: the one that backs
    a constraint, else the one whose name sorts first.
    """
    result: dict[str, str] = {}
    for index in indexes:
        if not index.valid or _backs_constraint(index):
            continue
        for other in indexes:
            if not covers(other, index):
                continue
            if (
                _is_exact_duplicate(index, other)
                and not _backs_constraint(other)
                and other.name > index.name
            ):
                continue  # of a duplicate pair, keep the first name and report the other
            result[index.name] = other.name
            break
    return result


# --- Aggregation over aliases -------------------------------------------------------------


def _index_key(index: IndexUsage) -> tuple[str, str, str]:
    return (index.schema, index.table, index.name)


def analyse_usage(
    snapshots: Sequence[UsageSnapshot],
    tenant_columns: Mapping[tuple[str, str], str],
    thresholds: UsageThresholds,
    plans: Sequence[TenantQueryPlan] = (),
) -> tuple[tuple[IndexStats, ...], tuple[TableStats, ...], tuple[StatsAge, ...]]:
    """Sum usage over aliases and decide W001 / W002 / seq-scan-heavy.

    Args:
        snapshots: one :class:`~tenant_indexes.catalog.UsageSnapshot` per alias; the first
            one (normally the primary) supplies the definitions, sizes and row counts.
        tenant_columns: ``{(schema, table): tenant column}`` of the tenant-scoped tables.
        thresholds: see :class:`UsageThresholds`.
        plans: EXPLAIN results from the first alias (``--explain``), if any.

    Returns:
        The per-index statistics, the per-table statistics and each alias's statistics age.
    """
    if not snapshots:
        return (), (), ()
    ages = tuple(stats_age(s.server) for s in snapshots)
    young = any(age.age < thresholds.stats_min_age for age in ages)
    all_know_last_scan = all(s.server.has_last_idx_scan for s in snapshots)
    first = snapshots[0]

    by_alias: dict[tuple[str, str, str], dict[str, IndexUsage]] = {}
    for snapshot in snapshots:
        for index in snapshot.indexes:
            by_alias.setdefault(_index_key(index), {})[snapshot.server.alias] = index

    redundant = find_redundant(first.indexes)
    index_stats = []
    for index in first.indexes:
        seen = by_alias[_index_key(index)]
        per_alias = {alias: usage.idx_scan for alias, usage in seen.items()}
        last_scans = [u.last_idx_scan for u in seen.values() if u.last_idx_scan is not None]
        if _backs_constraint(index) or index.unique:
            verdict = UnusedVerdict.ENFORCES_CONSTRAINT
        elif not index.valid:
            verdict = UnusedVerdict.INVALID
        elif any(scans > thresholds.unused_max_scans for scans in per_alias.values()):
            verdict = UnusedVerdict.USED
        elif young or len(seen) < len(snapshots):
            # An alias without the index (or with young statistics) cannot vouch for it.
            verdict = UnusedVerdict.TOO_YOUNG
        else:
            verdict = UnusedVerdict.UNUSED
        covering = redundant.get(index.name)
        acknowledged = covering is not None and (
            index.name in thresholds.acknowledged_redundant
            or f"{index.schema}.{index.name}" in thresholds.acknowledged_redundant
        )
        index_stats.append(
            IndexStats(
                index=index,
                idx_scan=sum(per_alias.values()),
                idx_tup_read=sum(u.idx_tup_read for u in seen.values()),
                idx_tup_fetch=sum(u.idx_tup_fetch for u in seen.values()),
                per_alias=per_alias,
                last_idx_scan=max(last_scans) if last_scans else None,
                last_idx_scan_known=all_know_last_scan,
                unused=verdict,
                redundant_to=covering,
                redundancy_acknowledged=acknowledged,
            )
        )

    tables_by_alias: dict[tuple[str, str], list[TableUsage]] = {}
    for snapshot in snapshots:
        for table in snapshot.tables:
            tables_by_alias.setdefault((table.schema, table.table), []).append(table)
    plans_by_table = {(p.schema, p.table): p for p in plans}
    tenant_leading = {
        (ix.schema, ix.table, ix.name)
        for ix in first.indexes
        if ix.valid and ix.key_columns[:1] == (tenant_columns.get((ix.schema, ix.table)),)
    }
    table_stats = []
    for table in first.tables:
        key = (table.schema, table.table)
        seen_tables = tables_by_alias[key]
        seq_scan = sum(t.seq_scan for t in seen_tables)
        idx_scan = sum(t.idx_scan for t in seen_tables)
        heavy = (
            table.n_live_tup >= thresholds.seq_scan_min_rows
            and seq_scan >= thresholds.seq_scan_min_scans
            and seq_scan >= thresholds.seq_scan_min_share * (seq_scan + idx_scan)
        )
        plan = plans_by_table.get(key)
        uses = None
        if plan is not None and plan.tenant is not None:
            uses = any((table.schema, table.table, n) in tenant_leading for n in plan.index_names)
        table_stats.append(
            TableStats(
                schema=table.schema,
                table=table.table,
                tenant_column=tenant_columns.get(key, ""),
                seq_scan=seq_scan,
                idx_scan=idx_scan,
                n_live_tup=table.n_live_tup,
                table_bytes=table.table_bytes,
                total_bytes=table.total_bytes,
                seq_scan_heavy=heavy,
                estimated_rows=table.estimated_rows,
                plan=plan,
                plan_uses_tenant_index=uses,
            )
        )
    return tuple(index_stats), tuple(table_stats), ages


# --- Findings -----------------------------------------------------------------------------


def _columns_text(index: IndexUsage) -> str:
    return ", ".join(c if c is not None else "<expression>" for c in index.key_columns)


def _days(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 86400:.1f} days"


def usage_findings(
    index_stats: Sequence[IndexStats],
    table_stats: Sequence[TableStats],
    ages: Sequence[StatsAge],
    tenant_columns: Mapping[tuple[str, str], str],
    thresholds: UsageThresholds,
) -> list[Finding]:
    """W001, W002, W010 and W011 from the analysed usage (see the README for each id).

    Findings name the first alias (normally the primary); W001's message lists the scans on
    every alias it was judged on.
    """
    findings: list[Finding] = []
    by_name = {(s.index.schema, s.index.name): s.index for s in index_stats}
    alias = ages[0].alias if ages else ""
    for stats in index_stats:
        ix = stats.index
        where = f"{ix.schema}.{ix.table}"
        common: FindingSubject = {
            "level": Level.WARNING,
            "database": alias,
            "schema": ix.schema,
            "table": ix.table,
            "index": ix.name,
        }
        if stats.unused is UnusedVerdict.UNUSED:
            scans = ", ".join(f"{a}={n}" for a, n in stats.per_alias.items())
            youngest = min(ages, key=lambda age: age.age)
            findings.append(
                Finding(
                    id=W_UNUSED,
                    message=f"index {ix.name} ({_columns_text(ix)}) on {where} has not been "
                    f"scanned on any database ({scans}) in {_days(youngest.age)} of statistics "
                    f"(since {youngest.since:%Y-%m-%d %H:%M} UTC, {youngest.source} on "
                    f"{youngest.alias}); it costs {ix.size_bytes} bytes and slows every write",
                    hint="Check every replica first (pass each alias with --database), then "
                    f"drop it without blocking writes: DROP INDEX CONCURRENTLY {ix.schema}."
                    f"{ix.name}; and remove it from the model's Meta.indexes",
                    **common,
                )
            )
        if stats.redundant_to is not None and not stats.redundancy_acknowledged:
            other = by_name[(ix.schema, stats.redundant_to)]
            tenant_column = tenant_columns.get((ix.schema, ix.table))
            hint = (
                f"Drop it without blocking writes (DROP INDEX CONCURRENTLY {ix.schema}.{ix.name}) "
                "and remove it from the model, or keep it on purpose and list it in "
                f"TENANT_INDEXES['ACKNOWLEDGED_REDUNDANT'] = ['{ix.name}']"
            )
            if tenant_column and ix.key_columns == (tenant_column,):
                hint = (
                    f"A narrower ({tenant_column}) index can still win for tenant-only "
                    "queries: it is smaller, so more of it stays cached and the planner may "
                    f"prefer it to {other.name}. Compare the idx_scan of both in "
                    "tenant_index_stats before dropping anything. " + hint
                )
            findings.append(
                Finding(
                    id=W_REDUNDANT,
                    message=f"index {ix.name} ({_columns_text(ix)}) on {where} is redundant: "
                    f"{other.name} ({_columns_text(other)}) has the same leading keys, method"
                    " and predicate",
                    hint=hint,
                    **common,
                )
            )
    for table in table_stats:
        common = {
            "level": Level.WARNING,
            "database": alias,
            "schema": table.schema,
            "table": table.table,
            "index": None,
        }
        if table.seq_scan_heavy:
            share = table.seq_scan_share or 0.0
            findings.append(
                Finding(
                    id=W_SEQ_SCAN_HEAVY,
                    message=f"tenant table {table.schema}.{table.table} ({table.n_live_tup} "
                    f"live rows) is read by sequential scans: {table.seq_scan} sequential "
                    f"against {table.idx_scan} index scans ({share:.0%})",
                    hint="Find the queries that do not filter on the tenant column first "
                    "(pg_stat_statements), and run tenant_index_stats --explain to see "
                    "whether tenant queries on this table use a tenant-leading index",
                    **common,
                )
            )
        # On a small table a sequential scan is the right plan; the planner's own row
        # estimate decides what "small" is, since that is what it planned with.
        if (
            table.plan_uses_tenant_index is False
            and max(table.estimated_rows, table.n_live_tup) >= thresholds.seq_scan_min_rows
        ):
            plan = table.plan
            assert plan is not None
            findings.append(
                Finding(
                    id=W_PLAN_WITHOUT_TENANT_INDEX,
                    message=f"EXPLAIN of a tenant query on {table.schema}.{table.table} "
                    f"(WHERE {plan.tenant_column} = '{plan.tenant}') uses no index that leads "
                    f"with {plan.tenant_column}: {' > '.join(plan.node_types)}",
                    hint="Check that a valid tenant-leading index exists "
                    "(check_tenant_indexes), then ANALYZE the table so the planner has "
                    "current statistics",
                    **common,
                )
            )
    return findings


# --- The report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageReport:
    """What ``tenant_index_stats`` reports: the ``check_tenant_indexes`` JSON plus usage.

    ``indexes`` and ``tables`` are summed over the aliases; ``statistics`` says how old
    each alias's statistics are. ``status`` and :meth:`exit_code` follow DESIGN.md.
    """

    status: str
    databases: tuple[Any, ...] = ()
    indexes: tuple[IndexStats, ...] = ()
    tables: tuple[TableStats, ...] = ()
    statistics: tuple[StatsAge, ...] = ()
    findings: tuple[Any, ...] = ()
    stats_min_age: timedelta = timedelta(days=7)

    @property
    def too_young(self) -> tuple[StatsAge, ...]:
        """The aliases whose statistics are too young to judge W001."""
        return tuple(age for age in self.statistics if age.age < self.stats_min_age)

    def as_dict(self) -> dict[str, Any]:
        """DESIGN.md's JSON document with ``tables`` and ``statistics`` added."""
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
        }

    def exit_code(self, fail_level: Any = "error") -> int:
        """0 healthy, 1 a finding at or above ``fail_level``, 2 a database was not checked."""
        return exit_code_for(self.databases, self.findings, fail_level)


SORT_KEYS = {
    "size": lambda s: (-s.index.size_bytes, s.index.schema, s.index.table, s.index.name),
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
    for alias in aliases:
        started = time.perf_counter()
        connection = connections[alias]
        tables = tenant_tables_for(alias, app_labels)
        if connection.vendor != "postgresql":
            reports.append(
                DatabaseReport(
                    alias=alias,
                    vendor=connection.vendor,
                    server_version=None,
                    error=f"database {alias!r} is {connection.vendor}: usage statistics "
                    "need PostgreSQL",
                )
            )
            continue
        try:
            snapshot = usage_snapshot(alias, [(t.schema, t.table) for t in tables])
        except DatabaseError as e:
            reports.append(
                DatabaseReport(
                    alias=alias,
                    vendor=connection.vendor,
                    server_version=None,
                    error=f"database {alias!r}: {first_error_line(e)}",
                )
            )
            continue
        for live in snapshot.tables:
            for t in tables:
                if t.table == live.table and t.schema in (None, live.schema):
                    tenant_columns[(live.schema, live.table)] = t.tenant_column
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
    index_stats, table_stats, ages = analyse_usage(snapshots, tenant_columns, thresholds, plans)
    findings = usage_findings(index_stats, table_stats, ages, tenant_columns, thresholds)
    return UsageReport(
        status=overall_status(reports, findings),
        databases=tuple(reports),
        indexes=tuple(sorted(index_stats, key=SORT_KEYS[sort])),
        tables=table_stats,
        statistics=ages,
        findings=tuple(findings),
        stats_min_age=thresholds.stats_min_age,
    )


# --- W001/W002 in check_tenant_indexes (opt-in: TENANT_INDEXES["CHECK_INCLUDES_USAGE"]) --------


def index_usage_from_live(live: LiveIndex) -> IndexUsage:
    """check_tenant_indexes' :class:`~tenant_indexes.catalog.LiveIndex` as an IndexUsage.

    The redundancy rule compares keys through ``definition``, so the operator classes,
    orders and collations are compared although the snapshot has no field for them.
    """
    return IndexUsage(
        schema=live.schema,
        table=live.table,
        name=live.name,
        key_columns=live.columns,
        include_columns=live.include,
        expressions=live.expressions,
        predicate=live.predicate,
        method=live.method,
        unique=live.unique,
        primary=live.primary,
        constraint=live.constraint,
        valid=live.valid and not live.building,
        definition=live.definition,
        size_bytes=live.size_bytes,
        idx_scan=live.idx_scan or 0,
        idx_tup_read=live.idx_tup_read or 0,
        idx_tup_fetch=live.idx_tup_fetch or 0,
        last_idx_scan=None,
    )


def _tenant_columns(
    tables: Sequence[TenantTable], snapshot: CatalogSnapshot
) -> dict[tuple[str, str], str]:
    columns = {}
    for table in tables:
        live = snapshot.table(table.schema, table.table)
        if live is not None:
            columns[(live.schema, live.name)] = table.tenant_column
    return columns


def _as_usage_snapshot(snapshot: CatalogSnapshot, server: ServerStats) -> UsageSnapshot:
    return UsageSnapshot(
        server=server,
        indexes=tuple(index_usage_from_live(ix) for ix in snapshot.indexes),
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
    columns = _tenant_columns(tables, snapshot)
    index_stats, _, _ = analyse_usage([usage], columns, thresholds)
    ages = (stats_age(server),)
    return [
        f for f in usage_findings(index_stats, (), ages, columns, thresholds) if f.id == W_REDUNDANT
    ]


def unused_findings(
    checked: Sequence[tuple[Sequence[TenantTable], CatalogSnapshot]],
) -> list[Finding]:
    """W001 for check_tenant_indexes, judged over every checked alias at once.

    Costs two statements per alias (the statistics' age). Returns nothing unless
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
        columns.update(_tenant_columns(tables, snapshot))
    index_stats, _, ages = analyse_usage(usages, columns, thresholds)
    return [
        f for f in usage_findings(index_stats, (), ages, columns, thresholds) if f.id == W_UNUSED
    ]


def register_check_producers() -> None:
    """Wire W002 and W001 into :func:`tenant_indexes.health.check_databases` (idempotent)."""
    register_finding_producer(redundancy_findings)
    register_database_set_producer(unused_findings)
