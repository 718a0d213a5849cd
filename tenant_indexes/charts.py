"""The dashboard's history charts: small inline SVG sparklines, built on the server.

One chart is one ``<svg>`` element with one ``<polyline>``: no JavaScript, no charting
library, no static file. At 2,000 tables a page can hold thousands of charts, and a few
hundred bytes of markup each is cheaper to send and to draw than a library's canvas per chart;
a sparkline needs no axes, legends or interaction, only a shape (is it growing, is it used),
with the exact first and last values in its tooltip.

The points come from the recorded usage history (``tenant_index_stats --record``), read
through :func:`tenant_indexes.history.usage_series`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import TYPE_CHECKING

from django.db import DatabaseError
from django.utils.safestring import SafeString, mark_safe

from .dashboardrows import size as filesize
from .history import UsagePoint, usage_series

if TYPE_CHECKING:
    from .dashboard import DashboardIndex

#: How far back the dashboard's charts reach.
HISTORY_DAYS = 30
#: At most this many points per chart: the latest ones.
MAX_POINTS = 120

WIDTH = 96
HEIGHT = 24
_PAD = 2


@dataclass(frozen=True)
class IndexCharts:
    """The two charts of one index over its recorded history."""

    size: SafeString
    scans: SafeString
    points: int


def _coordinates(times: Sequence[float], values: Sequence[float], width: int, height: int) -> str:
    t0, t1 = min(times), max(times)
    v0, v1 = min(values), max(values)
    span_t = (t1 - t0) or 1.0
    inner_w, inner_h = width - 2 * _PAD, height - 2 * _PAD
    pairs = []
    for t, v in zip(times, values, strict=True):
        x = _PAD + inner_w * (t - t0) / span_t if t1 > t0 else _PAD + inner_w / 2
        # A flat series is drawn across the middle; otherwise the largest value on top.
        y = _PAD + inner_h / 2 if v1 == v0 else _PAD + inner_h * (1 - (v - v0) / (v1 - v0))
        pairs.append(f"{x:.1f},{y:.1f}")
    return " ".join(pairs)


def sparkline(
    times: Sequence[float],
    values: Sequence[float],
    *,
    label: str,
    css_class: str = "",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> SafeString:
    """An inline ``<svg>`` with one polyline through ``(times[i], values[i])``.

    ``times`` are seconds (any origin) and need not be evenly spaced; the x axis is time.
    ``label`` is the accessible name and the tooltip. ``data-points`` on the element says how
    many points were drawn. Empty input gives an empty string.

    Raises:
        ValueError: ``times`` and ``values`` differ in length.
    """
    if len(times) != len(values):
        raise ValueError(f"{len(times)} times but {len(values)} values")
    if not times:
        return SafeString("")
    # An f-string over escaped values: a page at 2,000 tables draws thousands of these.
    label, css_class = escape(label), escape(css_class)
    return mark_safe(  # every value is escaped or a number
        f'<svg class="ti-spark {css_class}" width="{width:d}" height="{height:d}" '
        f'viewBox="0 0 {width:d} {height:d}" role="img" aria-label="{label}" '
        f'data-points="{len(times)}"><title>{label}</title>'
        '<polyline fill="none" stroke="currentColor" stroke-width="1.5" '
        f'points="{_coordinates(times, values, width, height)}"/></svg>'
    )


def index_charts(points: Sequence[UsagePoint]) -> IndexCharts | None:
    """The size and scans charts of one index; ``None`` under two points (no line)."""
    points = points[-MAX_POINTS:]
    if len(points) < 2:
        return None
    times = [p.recorded_at.timestamp() for p in points]
    first, last = points[0], points[-1]
    since = f"{len(points)} records since {first.recorded_at:%Y-%m-%d %H:%M}"
    size = sparkline(
        times,
        [p.size_bytes for p in points],
        label=f"size {filesize(first.size_bytes)} to {filesize(last.size_bytes)}, {since}",
        css_class="ti-spark-size",
    )
    scans = sparkline(
        times,
        [p.scans for p in points],
        label=f"{last.scans - first.scans} scans, {since}",
        css_class="ti-spark-scans",
    )
    return IndexCharts(size=size, scans=scans, points=len(points))


def charts_for(
    database: str,
    indexes: Iterable[tuple[str, str]] | None,
    *,
    now: datetime,
    days: float = HISTORY_DAYS,
) -> dict[tuple[str, str], IndexCharts]:
    """``{(schema, index): charts}`` of ``database``'s recorded history (only where it exists).

    ``indexes`` limits which indexes are read (``None``: all). A history table that cannot be
    read (the core app's migration not applied) gives no charts, never an error page.
    """
    try:
        series = usage_series(database, since=now - timedelta(days=days), indexes=indexes)
    except DatabaseError:
        return {}
    result = {}
    for key, points in series.items():
        charts = index_charts(points)
        if charts is not None:
            result[key] = charts
    return result


def with_charts(
    database: str, indexes: Sequence[DashboardIndex], *, read_all: bool, now: datetime
) -> list[DashboardIndex]:
    """``indexes`` with their charts, where ``database`` has recorded history for them.

    ``read_all`` reads every index's records in one query, rather than naming these.
    """
    keys = {(ix.report.live.schema, ix.report.live.name) for ix in indexes if ix.report.live}
    charts = charts_for(database, None if read_all else keys, now=now)
    if not charts:
        return list(indexes)
    return [
        dataclasses.replace(ix, charts=charts.get((ix.report.live.schema, ix.report.live.name)))
        if ix.report.live is not None
        else ix
        for ix in indexes
    ]


__all__ = [
    "HISTORY_DAYS",
    "IndexCharts",
    "charts_for",
    "index_charts",
    "sparkline",
    "with_charts",
]
