"""The dashboard's index and table rows: which ones a page shows, and their HTML.

A database of more than :data:`COLLAPSE_ABOVE` declared indexes (or tenant tables) shows,
unless the page is asked for all of them (``?all=1``), every index that needs attention
(:attr:`~tenant_indexes.dashboard.DashboardIndex.needs_attention`) and the
:data:`TABLES_WHEN_COLLAPSED` tables with the most sequential scans; a line says how many
rows are not shown, with a "Show all" link. At 2,000 tables a person looks for what is wrong,
not through 2,750 rows that say "ok".

The rows are built in Python. With thousands of rows of ten cells each, the Django template
engine resolves every variable and filter of every row on its own (some 150,000 variable
lookups for 2,750 indexes): rendering took longer than the catalog pass. Here each row is one
f-string over values escaped once. The page's frame (headers, findings, notes) stays in the template
``tenant_indexes/dashboard.html``, which can still be overridden; the rows' markup (classes
``ti-index``, ``ti-repair``, ``ti-table`` and their ``data-*`` attributes) is kept stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING

from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

if TYPE_CHECKING:
    from .dashboard import DashboardIndex, DashboardTable

#: Above this many declared indexes (or tenant tables) in a database, rows are collapsed.
COLLAPSE_ABOVE = 100
#: Tenant tables shown when the table list is collapsed: the most sequential scans first.
TABLES_WHEN_COLLAPSED = 25

_DASH = "&ndash;"
_UNITS = ("KB", "MB", "GB", "TB", "PB")


def shown_indexes(
    indexes: Sequence[DashboardIndex], show_all: bool
) -> tuple[list[DashboardIndex], int]:
    """The indexes a page shows, and how many it leaves out."""
    if show_all or len(indexes) <= COLLAPSE_ABOVE:
        return list(indexes), 0
    shown = [ix for ix in indexes if ix.needs_attention]
    return shown, len(indexes) - len(shown)


def shown_tables(
    tables: Sequence[DashboardTable], show_all: bool
) -> tuple[list[DashboardTable], int]:
    """The tenant tables a page shows (collapsed: the most sequentially scanned, never one
    without sequential scans), and how many it leaves out."""
    if show_all or len(tables) <= COLLAPSE_ABOVE:
        return list(tables), 0
    busiest = sorted(tables, key=lambda t: -(t.seq_scan or 0))[:TABLES_WHEN_COLLAPSED]
    shown = [t for t in busiest if t.seq_scan]
    return shown, len(tables) - len(shown)


def size(value: int | None) -> str:
    """``filesizeformat``'s English output (``"8.0\xa0KB"``), without its per-call cost."""
    if value is None:
        return _DASH
    if value < 1024:
        return f"{value}\xa0byte{'' if value == 1 else 's'}"
    amount = float(value)
    for unit in _UNITS:
        amount /= 1024
        if amount < 1024 or unit == _UNITS[-1]:
            return f"{amount:.1f}\xa0{unit}"
    raise AssertionError("unreachable")


def ago(moment: datetime | None, now: datetime) -> str:
    """``"3 days ago"``: the largest whole unit only; the exact time is in the cell's title."""
    if moment is None:
        return _DASH
    seconds = max(int((now - moment).total_seconds()), 0)
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            count = seconds // length
            text = f"{count}\xa0{unit}{'' if count == 1 else 's'} ago"
            break
    else:
        text = "just now"
    return f'<span title="{escape(moment.isoformat())}">{text}</span>'


def _or_dash(value: object) -> str:
    return _DASH if value is None else escape(str(value))


def _where(schema: str | None, table: str) -> str:
    return escape(f"{schema}.{table}" if schema else table)


def index_rows(indexes: Iterable[DashboardIndex]) -> SafeString:
    """The ``<tr>`` elements of the declared-index table (a repair row after each index that
    has repair SQL)."""
    now = timezone.now()
    parts = []
    for ix in indexes:
        report = ix.report
        name = escape(report.name)
        state = escape(ix.state)
        phase = ""
        if ix.phase:
            percent = "" if ix.percent is None else f" {ix.percent:.0f}%"
            phase = f'<br><small class="ti-phase">{escape(ix.phase)}{percent}</small>'
        repair = "SQL below" if ix.repair_sql else f"<small>{escape(ix.repair_note)}</small>"
        charts = "" if ix.charts is None else ix.charts.size + ix.charts.scans
        parts.append(
            f'<tr class="ti-index" data-name="{name}" data-state="{state}">'
            f"<td>{name}</td>"
            f"<td>{_where(report.schema, report.table)}</td>"
            f"<td>{escape(', '.join(c or '(expression)' for c in report.columns))}</td>"
            f'<td><span class="ti-state ti-state-{state}">{state}</span>{phase}</td>'
            f'<td class="ti-num">{size(ix.size_bytes)}</td>'
            f'<td class="ti-num">{_or_dash(ix.scans)}</td>'
            f"<td>{ago(ix.last_scan, now)}</td>"
            f'<td class="ti-unused">{_or_dash(ix.unused)}</td>'
            f'<td class="ti-redundant">{escape(ix.redundant_to or "")}</td>'
            f"<td>{repair}</td>"
            f'<td class="ti-history">{charts}</td>'
            "</tr>\n"
        )
        if ix.repair_sql:
            parts.append(
                f'<tr class="ti-repair" data-name="{name}"><td colspan="11">'
                f'<pre class="ti-sql">{escape(ix.repair_sql)}</pre>'
                '<button type="button" class="button ti-copy">Copy</button></td></tr>\n'
            )
    return mark_safe("".join(parts))  # every value above is escaped


def table_rows(tables: Iterable[DashboardTable]) -> SafeString:
    """The ``<tr>`` elements of the tenant-table table."""
    parts = []
    for t in tables:
        estimate = f"{t.estimated_rows:.0f}" if t.estimated_rows >= 0 else "never analysed"
        share = _DASH if t.seq_share is None else f"{t.seq_share:.0f}%"
        parts.append(
            f'<tr class="ti-table" data-name="{escape(t.table)}">'
            f"<td>{escape(t.schema)}.{escape(t.table)}</td>"
            f'<td class="ti-num">{estimate}</td>'
            f'<td class="ti-num">{_or_dash(t.live_rows)}</td>'
            f'<td class="ti-num">{_or_dash(t.seq_scan)}</td>'
            f'<td class="ti-num">{_or_dash(t.idx_scan)}</td>'
            f'<td class="ti-num">{share}</td>'
            "</tr>\n"
        )
    return mark_safe("".join(parts))  # every value above is escaped


__all__ = [
    "COLLAPSE_ABOVE",
    "TABLES_WHEN_COLLAPSED",
    "ago",
    "index_rows",
    "shown_indexes",
    "shown_tables",
    "size",
    "table_rows",
]
