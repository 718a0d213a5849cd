"""Usage analysis: which tenant indexes are unused (W001) or redundant (W002), which tenant
tables are read by sequential scans (W010) or planned without a tenant index (W011).

Pure functions over what :func:`tenant_indexes.statistics.usage_snapshot` read (or the
check's snapshot), one snapshot per database alias; :mod:`tenant_indexes.usage` does the
reading. Nothing here prints. The rules avoid the false positives that index-usage tools
are known for:

- a unique or primary index, or one backing a constraint, is never "unused": it enforces
  something even when no query scans it;
- statistics younger than ``STATS_MIN_AGE_DAYS`` are not judged at all;
- with several aliases (a primary and its replicas) an index is unused only if it is unused
  on every one of them, because replicas keep their own counters;
- "redundant" is :func:`tenant_indexes.redundancy.covers`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from .catalog import CatalogIndex
from .compare import columns_text
from .findings import (
    W_PLAN_WITHOUT_TENANT_INDEX,
    W_REDUNDANT,
    W_SEQ_SCAN_HEAVY,
    W_UNUSED,
    Finding,
    FindingSubject,
    Level,
)
from .redundancy import backs_constraint, find_redundant
from .sql import qualified_name
from .statistics import ServerStats, TableUsage, TenantQueryPlan, UsageSnapshot


class UnusedVerdict(enum.StrEnum):
    """What the statistics say about whether an index is used."""

    USED = "used"
    UNUSED = "unused"
    TOO_YOUNG = "statistics too young to judge"
    ENFORCES_CONSTRAINT = "unique or primary: enforces a constraint, never unused"
    INVALID = "invalid: not used by queries, see check_tenant_indexes"
    INVALID_UNIQUE = "invalid unique: enforces nothing, duplicates can be inserted"
    BUILDING = "being built: not used by queries yet"


@dataclass(frozen=True)
class StatsAge:
    """How long one alias's statistics have been counting.

    ``since`` is the latest of the moments the index counters may have started from:
    the database's ``stats_reset`` (any reset, even of one table, moves it on 15+), and, on
    PostgreSQL 15+, when the server's statistics were created or last thrown away by a
    crash (:attr:`ServerStats.stats_start`): they survive a clean restart, so the server
    start would make every restart look like "0 days". Before 15 (or when neither is
    known) the server start is the latest moment counting may have begun.
    """

    alias: str
    since: datetime
    age: timedelta
    source: str  # "stats_reset", "statistics start" or "server start"

    def as_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "since": self.since.isoformat(),
            "age_seconds": int(self.age.total_seconds()),
            "source": self.source,
        }


def stats_age(server: ServerStats) -> StatsAge:
    """The age of one alias's statistics (see :class:`StatsAge` for the rule)."""
    candidates = [
        (moment, source)
        for moment, source in (
            (server.stats_reset, "stats_reset"),
            (server.stats_start, "statistics start"),
        )
        if moment is not None
    ]
    if candidates:
        since, source = max(candidates, key=lambda c: c[0])
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

    index: CatalogIndex
    idx_scan: int
    idx_tup_read: int
    idx_tup_fetch: int
    per_alias: Mapping[str, int]
    last_idx_scan: datetime | None
    last_idx_scan_known: bool
    unused: UnusedVerdict
    redundant_to: str | None = None
    redundancy_acknowledged: bool = False
    redundancy_kept: str | None = None
    unused_history_days: float | None = None

    @property
    def drop_hint(self) -> str | None:
        """How to drop a redundant index that is kept on purpose (``None`` otherwise)."""
        if self.redundancy_kept != SEED_CONTRACT:
            return None
        ix = self.index
        return (
            f"The help desk declares {ix.name} beside {self.redundant_to} as part of its "
            "schema. To drop it, compare both indexes' idx_scan on every replica first, then "
            f"DROP INDEX CONCURRENTLY {qualified_name(ix.schema, ix.name)}; a later "
            "repair_tenant_indexes would recreate it, so only do this if you do not run repair "
            "on this database"
        )

    def as_dict(self) -> dict[str, Any]:
        ix = self.index
        return {
            "schema": ix.schema,
            "table": ix.table,
            "name": ix.name,
            "columns": [c if c is not None else "<expression>" for c in ix.columns],
            "include": list(ix.include),
            "method": ix.method,
            "unique": ix.unique,
            "primary": ix.primary,
            "constraint": ix.constraint,
            "valid": ix.valid,
            "predicate": ix.predicate,
            "expressions": ix.expressions,
            "size_bytes": ix.known_size_bytes,
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
            "redundancy_kept": self.redundancy_kept,
            "unused_judged_over_history_days": self.unused_history_days,
            "drop_hint": self.drop_hint,
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
    largest_plan: TenantQueryPlan | None = None
    largest_plan_uses_tenant_index: bool | None = None

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
                "estimated_rows": self.plan.estimated_rows,
            }
            largest = self.largest_plan
            result["explain_largest"] = (
                None
                if largest is None
                else {
                    "tenant": largest.tenant,
                    "share": largest.tenant_share,
                    "node_types": list(largest.node_types),
                    "indexes": list(largest.index_names),
                    "uses_tenant_index": self.largest_plan_uses_tenant_index,
                    "estimated_rows": largest.estimated_rows,
                }
            )
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
    contract_redundant: frozenset[tuple[str, str, str]] = field(default_factory=frozenset)

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
            contract_redundant=_seed_contract_redundant(),
        )


#: Why a redundant index of the help desk is kept without a W002.
SEED_CONTRACT = "seed contract"

# The help desk's schema declares these single-column indexes beside their composite
# (tenant_id, status) ones; they are truly redundant, and they are the schema it ships, so a
# fresh install reports them as kept rather than as a warning. Keyed by (table, index, the
# index that covers it): covered by any other index, the pair is not the shipped one.
_SEED_CONTRACT_REDUNDANT = frozenset(
    {
        ("tickets", "idx_tickets_tenant_id", "idx_tickets_tenant_status"),
        ("customers", "idx_customers_tenant_id", "idx_customers_tenant_status"),
    }
)


def _seed_contract_redundant() -> frozenset[tuple[str, str, str]]:
    from django.apps import apps

    if apps.is_installed("tenant_indexes.helpdesk"):
        return _SEED_CONTRACT_REDUNDANT
    return frozenset()


def _index_key(index: CatalogIndex) -> tuple[str, str, str]:
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

    by_alias: dict[tuple[str, str, str], dict[str, CatalogIndex]] = {}
    for snapshot in snapshots:
        for index in snapshot.indexes:
            by_alias.setdefault(_index_key(index), {})[snapshot.server.alias] = index

    # Verdicts are keyed by (schema, name): every checked schema may hold an index of the
    # same name, and only an index of its own schema can make one redundant.
    by_schema: dict[str, list[CatalogIndex]] = {}
    for index in first.indexes:
        by_schema.setdefault(index.schema, []).append(index)
    redundant = {
        (schema, name): other
        for schema, group in by_schema.items()
        for name, other in find_redundant(group).items()
    }
    index_stats = []
    for index in first.indexes:
        seen = by_alias[_index_key(index)]
        per_alias = {alias: usage.idx_scan or 0 for alias, usage in seen.items()}
        last_scans = [u.last_idx_scan for u in seen.values() if u.last_idx_scan is not None]
        # INVALID first: an INVALID unique index enforces nothing (duplicates go in).
        if not index.valid:
            verdict = UnusedVerdict.INVALID_UNIQUE if index.unique else UnusedVerdict.INVALID
        elif backs_constraint(index) or index.unique:
            verdict = UnusedVerdict.ENFORCES_CONSTRAINT
        elif not index.usable:
            verdict = UnusedVerdict.BUILDING
        elif any(scans > thresholds.unused_max_scans for scans in per_alias.values()):
            verdict = UnusedVerdict.USED
        elif young or len(seen) < len(snapshots):
            # An alias without the index (or with young statistics) cannot vouch for it.
            verdict = UnusedVerdict.TOO_YOUNG
        else:
            verdict = UnusedVerdict.UNUSED
        covering = redundant.get((index.schema, index.name))
        acknowledged = covering is not None and (
            index.name in thresholds.acknowledged_redundant
            or f"{index.schema}.{index.name}" in thresholds.acknowledged_redundant
        )
        kept = None
        if acknowledged:
            kept = "acknowledged"
        elif (index.table, index.name, covering) in thresholds.contract_redundant:
            kept, acknowledged = SEED_CONTRACT, True
        index_stats.append(
            IndexStats(
                index=index,
                idx_scan=sum(per_alias.values()),
                idx_tup_read=sum(u.idx_tup_read or 0 for u in seen.values()),
                idx_tup_fetch=sum(u.idx_tup_fetch or 0 for u in seen.values()),
                per_alias=per_alias,
                last_idx_scan=max(last_scans) if last_scans else None,
                last_idx_scan_known=all_know_last_scan,
                unused=verdict,
                redundant_to=covering,
                redundancy_acknowledged=acknowledged,
                redundancy_kept=kept,
            )
        )

    tables_by_alias: dict[tuple[str, str], list[TableUsage]] = {}
    for snapshot in snapshots:
        for table in snapshot.tables:
            tables_by_alias.setdefault((table.schema, table.table), []).append(table)
    plans_by_table = {(p.schema, p.table): p for p in plans if p.role == "typical"}
    largest_by_table = {(p.schema, p.table): p for p in plans if p.role == "largest"}
    tenant_leading = {
        (ix.schema, ix.table, ix.name)
        for ix in first.indexes
        if ix.usable and ix.columns[:1] == (tenant_columns.get((ix.schema, ix.table)),)
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
        largest = largest_by_table.get(key)

        def uses_tenant_index(p: TenantQueryPlan | None, key: tuple[str, str] = key) -> bool | None:
            if p is None or p.tenant is None:
                return None
            return any((*key, n) in tenant_leading for n in p.index_names)

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
                plan_uses_tenant_index=uses_tenant_index(plan),
                largest_plan=largest,
                largest_plan_uses_tenant_index=uses_tenant_index(largest),
            )
        )
    return tuple(index_stats), tuple(table_stats), ages


def judge_over_history(
    index_stats: Sequence[IndexStats],
    history: Sequence[Any],
    aliases: Sequence[str],
    days: float,
    thresholds: UsageThresholds,
) -> tuple[IndexStats, ...]:
    """W001's verdicts over recorded history where it covers ``days`` on every alias.

    An index whose records span at least ``days`` on every alias in ``aliases`` is unused
    when it was scanned at most ``UNUSED_MAX_SCANS`` times on each over that span, and used
    otherwise, whatever the statistics' age. Other indexes keep their verdict.
    """
    span = timedelta(days=days)
    by_name = {(h.schema, h.table, h.name): h for h in history}
    judged = []
    for stats in index_stats:
        h = by_name.get(_index_key(stats.index))
        open_verdict = stats.unused in (
            UnusedVerdict.USED,
            UnusedVerdict.UNUSED,
            UnusedVerdict.TOO_YOUNG,
        )
        if (
            h is None
            or not open_verdict
            or not all(h.covered_by_alias.get(alias, timedelta(0)) >= span for alias in aliases)
        ):
            judged.append(stats)
            continue
        unused = all(h.per_alias.get(a, 0) <= thresholds.unused_max_scans for a in aliases)
        verdict = UnusedVerdict.UNUSED if unused else UnusedVerdict.USED
        judged.append(replace(stats, unused=verdict, unused_history_days=days))
    return tuple(judged)


def _days(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 86400:.1f} days"


def usage_findings(
    index_stats: Sequence[IndexStats],
    table_stats: Sequence[TableStats],
    ages: Sequence[StatsAge],
    tenant_columns: Mapping[tuple[str, str], str],
    thresholds: UsageThresholds,
) -> list[Finding]:
    """W001, W002, W010 and W011 from the analysed usage (docs/findings.md describes each id).

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
            period = (
                f"in the last {stats.unused_history_days:g} days of recorded history"
                if stats.unused_history_days is not None
                else f"in {_days(youngest.age)} of statistics (since "
                f"{youngest.since:%Y-%m-%d %H:%M} UTC, {youngest.source} on {youngest.alias})"
            )
            findings.append(
                Finding(
                    id=W_UNUSED,
                    message=f"index {ix.name} ({columns_text(ix.columns)}) on {where} has not "
                    f"been scanned on any database ({scans}) {period}; it costs "
                    f"{ix.known_size_bytes} bytes and slows every write",
                    hint="Check every replica first (pass each alias with --database), then "
                    "drop it without blocking writes: DROP INDEX CONCURRENTLY "
                    f"{qualified_name(ix.schema, ix.name)}; and remove it from the model's "
                    "Meta.indexes",
                    **common,
                )
            )
        if stats.redundant_to is not None and not stats.redundancy_acknowledged:
            other = by_name[(ix.schema, stats.redundant_to)]
            tenant_column = tenant_columns.get((ix.schema, ix.table))
            hint = (
                "Drop it without blocking writes (DROP INDEX CONCURRENTLY "
                f"{qualified_name(ix.schema, ix.name)}) and remove it from the model, or keep it "
                "on purpose and list it in "
                f"TENANT_INDEXES['ACKNOWLEDGED_REDUNDANT'] = ['{ix.name}']"
            )
            if tenant_column and ix.columns == (tenant_column,):
                hint = (
                    f"A narrower ({tenant_column}) index can still win for tenant-only "
                    "queries: it is smaller, so more of it stays cached and the planner may "
                    f"prefer it to {other.name}. Compare the idx_scan of both in "
                    "tenant_index_stats before dropping anything. " + hint
                )
            findings.append(
                Finding(
                    id=W_REDUNDANT,
                    message=f"index {ix.name} ({columns_text(ix.columns)}) on {where} is "
                    f"redundant: {other.name} ({columns_text(other.columns)}) has the same "
                    "leading keys, method and predicate",
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
        # estimate decides what "small" is, since that is what it planned with. Only the
        # typical tenant is judged: for the largest tenant (a big share of the rows) a
        # sequential scan can be the right plan, and it is reported, never flagged.
        if (
            table.plan_uses_tenant_index is False
            and max(table.estimated_rows, table.n_live_tup) >= thresholds.seq_scan_min_rows
        ):
            plan = table.plan
            assert plan is not None
            findings.append(
                Finding(
                    id=W_PLAN_WITHOUT_TENANT_INDEX,
                    message=f"EXPLAIN of a typical tenant's query on {table.schema}.{table.table} "
                    f"(WHERE {plan.tenant_column} = '{plan.tenant}', a tenant outside the "
                    "planner's most common values) uses no index that leads "
                    f"with {plan.tenant_column}: {' > '.join(plan.node_types)}",
                    hint="Check that a valid tenant-leading index exists "
                    "(check_tenant_indexes), then ANALYZE the table so the planner has "
                    "current statistics",
                    **common,
                )
            )
    return findings
