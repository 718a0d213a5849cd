"""Usage history: record usage snapshots, and the deltas over recorded history.

``tenant_index_stats --record`` stores, per alias and index, the counters that
:func:`tenant_indexes.statistics.usage_snapshot` read, with the server's ``stats_reset``,
its start and whether it is a standby (:class:`tenant_indexes.models.IndexUsageSnapshot`,
on the ``TENANT_INDEXES["HISTORY_DATABASE"]`` alias, default ``default``, whichever aliases
were read). ``--since DAYS`` turns the
records into what happened over those days: scans per index summed over every alias (a
primary and its replicas count their own scans), and size growth per day.

Counters only go up within one counting segment. A counter that went down between two
records (``pg_stat_reset()``, a crash, a failover to a standby with its own counters), or a
changed ``stats_reset``, starts a new segment: the later value counts from zero, never as a
negative delta.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from .statistics import UsageSnapshot


@dataclass(frozen=True)
class IndexHistory:
    """One index's usage over the recorded period, summed over its aliases.

    Attributes:
        schema, table, name: the index.
        idx_scan, idx_tup_read, idx_tup_fetch: what the counters grew by over the period.
        per_alias: ``{alias: scans over the period}``.
        segments: counting segments seen (1 without a reset or crash in the period).
        first, last: the first and the last record used (over every alias).
        size_first, size_last: the index size at those records (first alias that has it).
        size_growth_per_day: ``(size_last - size_first) / days``; ``None`` under a minute.
        covered_by_alias: ``{alias: time between its first and last record}``.
    """

    schema: str
    table: str
    name: str
    idx_scan: int
    idx_tup_read: int
    idx_tup_fetch: int
    per_alias: dict[str, int]
    segments: int
    first: datetime
    last: datetime
    size_first: int
    size_last: int
    size_growth_per_day: float | None
    covered_by_alias: dict[str, timedelta] = field(default_factory=dict)

    @property
    def covered(self) -> timedelta:
        """How long the records span."""
        return self.last - self.first

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "table": self.table,
            "name": self.name,
            "idx_scan": self.idx_scan,
            "idx_tup_read": self.idx_tup_read,
            "idx_tup_fetch": self.idx_tup_fetch,
            "idx_scan_by_database": dict(self.per_alias),
            "segments": self.segments,
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "covered_seconds": int(self.covered.total_seconds()),
            "size_bytes_first": self.size_first,
            "size_bytes_last": self.size_last,
            "size_growth_bytes_per_day": self.size_growth_per_day,
        }


#: The default of ``TENANT_INDEXES["HISTORY_DATABASE"]``: the alias the snapshots are
#: stored on, where the core app's migration ran.
HISTORY_DATABASE = "default"


def history_database() -> str:
    """The alias the snapshots are stored on and read from (``HISTORY_DATABASE``)."""
    from .conf import get_config

    return str(get_config()["HISTORY_DATABASE"])


def record_usage(snapshots: Sequence[UsageSnapshot], *, using: str | None = None) -> int:
    """Store one row per alias and index of ``snapshots``; return how many were stored.

    The time of each row is the server's clock when its alias was read, so records of
    several aliases of one run line up.
    """
    from .models import IndexUsageSnapshot

    rows = [
        IndexUsageSnapshot(
            recorded_at=snapshot.server.now,
            database=snapshot.server.alias,
            schema_name=ix.schema,
            table_name=ix.table,
            index_name=ix.name,
            idx_scan=ix.idx_scan or 0,
            idx_tup_read=ix.idx_tup_read or 0,
            idx_tup_fetch=ix.idx_tup_fetch or 0,
            size_bytes=ix.known_size_bytes,
            stats_reset=snapshot.server.stats_reset,
            postmaster_start=snapshot.server.postmaster_start,
            in_recovery=snapshot.server.in_recovery,
        )
        for snapshot in snapshots
        for ix in snapshot.indexes
    ]
    IndexUsageSnapshot.objects.using(using or history_database()).bulk_create(rows)
    return len(rows)


def _new_segment(previous: Any, current: Any) -> bool:
    return (
        current.idx_scan < previous.idx_scan
        or current.idx_tup_read < previous.idx_tup_read
        or current.idx_tup_fetch < previous.idx_tup_fetch
        or current.stats_reset != previous.stats_reset
    )


def deltas(records: Iterable[Any]) -> list[IndexHistory]:
    """Per index, what the counters grew by over ``records`` (pure; any order).

    ``records`` are :class:`~tenant_indexes.models.IndexUsageSnapshot`-like objects. Within
    an alias, consecutive records add ``current - previous``; when a new segment starts
    (see the module docstring) they add ``current``: counted from zero since the reset.
    """
    grouped: dict[tuple[str, str, str], dict[str, list[Any]]] = {}
    for record in records:
        key = (record.schema_name, record.table_name, record.index_name)
        grouped.setdefault(key, {}).setdefault(record.database, []).append(record)
    result = []
    for (schema, table, name), by_alias in sorted(grouped.items()):
        totals = [0, 0, 0]
        per_alias: dict[str, int] = {}
        covered: dict[str, timedelta] = {}
        segments = 0
        everything = []
        for alias, rows in by_alias.items():
            rows.sort(key=lambda r: r.recorded_at)
            everything.extend(rows)
            segments = max(segments, 1)
            alias_segments = 1
            scans = 0
            for previous, current in itertools.pairwise(rows):
                fresh = _new_segment(previous, current)
                alias_segments += fresh
                for i, counter in enumerate(("idx_scan", "idx_tup_read", "idx_tup_fetch")):
                    now = getattr(current, counter)
                    step = now if fresh else now - getattr(previous, counter)
                    totals[i] += step
                    if i == 0:
                        scans += step
            per_alias[alias] = scans
            covered[alias] = rows[-1].recorded_at - rows[0].recorded_at
            segments = max(segments, alias_segments)
        everything.sort(key=lambda r: r.recorded_at)
        first, last = everything[0], everything[-1]
        primary_rows = sorted(next(iter(by_alias.values())), key=lambda r: r.recorded_at)
        days = (primary_rows[-1].recorded_at - primary_rows[0].recorded_at).total_seconds()
        days /= 86400
        growth = (
            (primary_rows[-1].size_bytes - primary_rows[0].size_bytes) / days
            if days * 86400 >= 60
            else None
        )
        result.append(
            IndexHistory(
                schema=schema,
                table=table,
                name=name,
                idx_scan=totals[0],
                idx_tup_read=totals[1],
                idx_tup_fetch=totals[2],
                per_alias=per_alias,
                segments=segments,
                first=first.recorded_at,
                last=last.recorded_at,
                size_first=primary_rows[0].size_bytes,
                size_last=primary_rows[-1].size_bytes,
                size_growth_per_day=growth,
                covered_by_alias=covered,
            )
        )
    return result


def usage_since(
    days: float,
    *,
    now: datetime,
    databases: Sequence[str] | None = None,
    using: str | None = None,
) -> list[IndexHistory]:
    """:func:`deltas` over the records of the last ``days`` days (before ``now``).

    The last record before the window is the baseline of each alias's first step, so a
    window that starts between two records still counts what happened inside it. Costs
    two queries on the history alias.
    """
    from django.db.models import Max

    from .models import IndexUsageSnapshot

    store = IndexUsageSnapshot.objects.using(using or history_database())
    if databases:
        store = store.filter(database__in=list(databases))
    start = now - timedelta(days=days)
    inside = list(store.filter(recorded_at__gte=start, recorded_at__lte=now))
    latest_before = (
        store.filter(recorded_at__lt=start).values("database").annotate(at=Max("recorded_at"))
    )
    before: list[Any] = []
    for row in latest_before:
        before.extend(store.filter(database=row["database"], recorded_at=row["at"]))
    return deltas(before + inside)


class _SeriesRow(NamedTuple):
    recorded_at: datetime
    schema_name: str
    index_name: str
    idx_scan: int
    idx_tup_read: int
    idx_tup_fetch: int
    size_bytes: int
    stats_reset: datetime | None


@dataclass(frozen=True)
class UsagePoint:
    """One record of one index, as a chart plots it.

    Attributes:
        recorded_at: when the alias was read.
        size_bytes: the index size then.
        scans: scans counted since the first record of the series, over resets and crashes
            (a new segment counts from zero), so the line never goes down.
    """

    recorded_at: datetime
    size_bytes: int
    scans: int


def usage_series(
    database: str,
    *,
    since: datetime,
    indexes: Iterable[tuple[str, str]] | None = None,
    using: str | None = None,
) -> dict[tuple[str, str], list[UsagePoint]]:
    """``{(schema, index): points oldest first}`` of the records of ``database`` since ``since``.

    ``indexes`` (``(schema, name)`` pairs) limits what is read; ``None`` reads every index.
    Costs one query on the history alias.
    """
    from .models import IndexUsageSnapshot

    store = IndexUsageSnapshot.objects.using(using or history_database()).filter(
        database=database, recorded_at__gte=since
    )
    wanted = None if indexes is None else set(indexes)
    if wanted is not None:
        if not wanted:
            return {}
        store = store.filter(index_name__in=sorted({name for _, name in wanted}))
    rows = store.order_by("recorded_at", "id").values_list(*_SeriesRow._fields)
    result: dict[tuple[str, str], list[UsagePoint]] = {}
    previous: dict[tuple[str, str], _SeriesRow] = {}
    for values in rows:
        row = _SeriesRow(*values)
        key = (row.schema_name, row.index_name)
        if wanted is not None and key not in wanted:
            continue
        points = result.setdefault(key, [])
        before = previous.get(key)
        if before is None:
            scans = 0
        else:
            step = row.idx_scan if _new_segment(before, row) else row.idx_scan - before.idx_scan
            scans = points[-1].scans + step
        points.append(UsagePoint(row.recorded_at, row.size_bytes, scans))
        previous[key] = row
    return result
