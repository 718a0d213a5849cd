"""The findings of the usage verdicts: W001, W002, W010 and W011, worded from what
:func:`tenant_indexes.usageanalysis.analyse_usage` decided (pure; nothing here reads or
prints). The message says what was judged and over which period; the hint, what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

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
from .partitionleaves import drop_sql
from .usageanalysis import IndexStats, StatsAge, TableStats, UnusedVerdict, UsageThresholds


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
                    f"drop it without blocking writes: {drop_sql(ix)}; and remove it from "
                    "the model's Meta.indexes",
                    **common,
                )
            )
        if stats.redundant_to is not None and not stats.redundancy_acknowledged:
            other = by_name[(ix.schema, stats.redundant_to)]
            tenant_column = tenant_columns.get((ix.schema, ix.table))
            hint = (
                f"Drop it without blocking writes ({drop_sql(ix)}) "
                "and remove it from the model, or keep it on purpose and list it in "
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
