"""Usage analysis: unused (W001), redundant (W002) and seq-scan-heavy tenant tables.

Pure functions over what :func:`tenant_indexes.catalog.usage_snapshot` read, one snapshot per
database alias; nothing here queries a database or prints. The rules are written to avoid the
false positives the reference tools are known for:

- a unique or primary index, or one backing a constraint, is never "unused": it enforces
  something even when no query scans it;
- statistics younger than ``STATS_MIN_AGE_DAYS`` are not judged at all;
- with several aliases (a primary and its replicas) an index is unused only if it is unused
  on every one of them, because replicas keep their own counters;
- "redundant" needs the same table, method, predicate, expressions, operator classes, sort
  options and collations, and this index's key columns as a leading prefix of the other's
  key columns (btree) or exactly equal (any method); INCLUDE columns are not key columns.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .catalog import IndexUsage, ServerStats, TableUsage, TenantQueryPlan, UsageSnapshot


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
    depth, quote, current, keys = 0, "", [], []
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
        and ("NULLS NOT DISTINCT" in index.definition)
        == ("NULLS NOT DISTINCT" in other.definition)
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
                plan=plan,
                plan_uses_tenant_index=uses,
            )
        )
    return tuple(index_stats), tuple(table_stats), ages
