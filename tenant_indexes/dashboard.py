"""The admin dashboard: the check, the usage verdicts and the repair SQL on one admin page.

Registered on ``django.contrib.admin.site`` when the admin is installed, at
``<admin>/tenant-indexes/`` (URL name ``admin:tenant_indexes_dashboard``), behind the admin's
own ``admin_view`` (active staff only; others are sent to the admin login). Read-only: it
shows SQL to copy, it never runs any.

Per database it runs what ``check_tenant_indexes`` runs (one catalog pass) plus one
statement for the statistics' age, one for the recorded usage history (its charts), and,
only while a build is running, one progress read per build. The page is rendered on the
server in the admin's templates and styles: no JavaScript framework, no build step (a few
lines of inline script only for the copy buttons).

Like the health view, the page never blocks on a slow database: the pass runs in a helper
thread on bounded connections (``HEALTH_CONNECT_TIMEOUT``, the check's statement and lock
timeouts) and the request waits at most ``HEALTH_TIMEOUT`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from . import dashboardrows, health
from .buildcontrol import build_progress
from .catalog import CatalogIndex, CatalogSnapshot
from .charts import IndexCharts, with_charts
from .compare import index_reports
from .conf import get_config
from .exceptions import CatalogUnavailable
from .findings import Finding, IndexState, Level
from .repair import action_for
from .reports import IndexReport, overall_status
from .statistics import ServerStats, UsageSnapshot, server_stats
from .targeting import resolve_databases, tenant_tables_for
from .usage import tenant_columns
from .usageanalysis import (
    IndexStats,
    StatsAge,
    UnusedVerdict,
    UsageThresholds,
    analyse_usage,
    stats_age,
)
from .views import bounded_connections, probe_config

URL_NAME = "tenant_indexes_dashboard"
APP_LABEL = "tenant_indexes"
APP_NAME = "Tenant indexes"
TEMPLATE = "tenant_indexes/dashboard.html"


#: Unused verdicts that need no attention on their own.
_QUIET_VERDICTS = frozenset(
    {UnusedVerdict.USED, UnusedVerdict.TOO_YOUNG, UnusedVerdict.ENFORCES_CONSTRAINT}
)


@dataclass(frozen=True)
class DashboardIndex:
    """One declared index as the page shows it."""

    report: IndexReport
    stats: IndexStats | None = None
    phase: str | None = None
    percent: float | None = None
    repair_sql: str = ""
    repair_note: str = ""
    charts: IndexCharts | None = None

    @property
    def needs_attention(self) -> bool:
        """Not ok, being built, unused, or redundant (and not acknowledged as kept): always
        shown, even when collapsed."""
        if self.report.status is not IndexState.OK or self.phase is not None:
            return True
        stats = self.stats
        if stats is None:
            return False
        if stats.redundant_to is not None and not stats.redundancy_acknowledged:
            return True
        return stats.unused not in _QUIET_VERDICTS

    @property
    def state(self) -> str:
        return self.report.status.value

    @property
    def size_bytes(self) -> int | None:
        live = self.report.live
        return None if live is None else live.known_size_bytes

    @property
    def scans(self) -> int | None:
        live = self.report.live
        return None if live is None else live.idx_scan

    @property
    def last_scan(self) -> datetime | None:
        live = self.report.live
        return None if live is None else live.last_idx_scan

    @property
    def unused(self) -> str | None:
        return None if self.stats is None else self.stats.unused.value

    @property
    def redundant_to(self) -> str | None:
        return None if self.stats is None else self.stats.redundant_to


@dataclass(frozen=True)
class DashboardTable:
    """One tenant table's size and scans."""

    schema: str
    table: str
    estimated_rows: float
    live_rows: int | None
    seq_scan: int | None
    idx_scan: int | None

    @property
    def seq_share(self) -> float | None:
        total = (self.seq_scan or 0) + (self.idx_scan or 0)
        return None if not total else 100.0 * (self.seq_scan or 0) / total


@dataclass(frozen=True)
class DashboardDatabase:
    """One alias: its status, server, statistics age, findings, indexes and tables."""

    alias: str
    status: str
    server_version: str | None = None
    stats_age: timedelta | None = None
    stats_reset: datetime | None = None
    error: str | None = None
    findings: tuple[Finding, ...] = ()
    indexes: tuple[DashboardIndex, ...] = ()
    tables: tuple[DashboardTable, ...] = ()
    hidden_indexes: int = 0
    hidden_tables: int = 0

    @property
    def index_rows(self) -> SafeString:
        """The index table's rows as HTML (see :mod:`tenant_indexes.dashboardrows`)."""
        return dashboardrows.index_rows(self.indexes)

    @property
    def table_rows(self) -> SafeString:
        """The tenant-table table's rows as HTML."""
        return dashboardrows.table_rows(self.tables)


@dataclass(frozen=True)
class Dashboard:
    """Everything the page shows, read in one bounded pass."""

    status: str
    databases: tuple[DashboardDatabase, ...] = ()
    checked_at: float = field(default_factory=time.time)
    duration_seconds: float = 0.0


def _repair(report: IndexReport) -> tuple[str, str]:
    """The SQL that would repair ``report`` (``repair_tenant_indexes --dry-run``'s), or why
    there is none."""
    if report.status is IndexState.OK:
        return "", ""
    # The repair command's planner, so the page and --dry-run can never disagree.
    try:
        action = action_for(report)
    except Exception as e:  # a page must render even when one plan cannot be made
        return "", f"no repair SQL: {e}"
    if action.statements:
        return ";\n".join(action.statements) + ";", ""
    return "", action.reason or ""


def _database(
    alias: str, app_labels: Sequence[str] | None, show_all: bool, history: bool
) -> DashboardDatabase:
    tables = tenant_tables_for(alias, app_labels)
    try:
        snapshot: CatalogSnapshot = health.snapshot_for(alias, tables)
    except CatalogUnavailable as e:
        return DashboardDatabase(alias=alias, status="unknown", error=str(e))
    findings: list[Finding] = []
    for producer in health.FINDING_PRODUCERS:
        findings.extend(producer(tables, snapshot))
    server: ServerStats | None
    try:
        server = server_stats(alias)
    except DatabaseError:
        server = None
    age: StatsAge | None = None if server is None else stats_age(server)
    stats_by_name: dict[tuple[str, str], IndexStats] = {}
    if server is not None:
        columns = tenant_columns(tables, snapshot)
        thresholds = UsageThresholds.from_config(get_config())
        by_table: dict[tuple[str, str], list[CatalogIndex]] = {}
        for ix in snapshot.indexes:
            by_table.setdefault((ix.schema, ix.table), []).append(ix)
        # Table by table: the redundancy verdict compares every pair of indexes of a schema,
        # and only indexes of one table can cover each other; at 2,000 tables one call over
        # everything takes almost twice as long as these calls together.
        for group in by_table.values():
            usage = UsageSnapshot(server=server, indexes=tuple(group), tables=())
            index_stats, _, _ = analyse_usage([usage], columns, thresholds)
            stats_by_name.update({(s.index.schema, s.index.name): s for s in index_stats})
    indexes = []
    for report in index_reports(tables, snapshot):
        live = report.live
        stats = None if live is None else stats_by_name.get((live.schema, live.name))
        phase = percent = None
        if live is not None and live.building_pid is not None:
            sample = build_progress(connections[alias], live.building_pid)
            if sample is not None:
                phase, percent = sample.phase, sample.percent
        sql, note = _repair(report)
        indexes.append(DashboardIndex(report, stats, phase, percent, sql, note))
    indexes, hidden_indexes = dashboardrows.shown_indexes(indexes, show_all)
    if history:
        indexes = with_charts(alias, indexes, read_all=show_all, now=timezone.now())
    live_tables = [
        DashboardTable(
            schema=t.schema,
            table=t.name,
            estimated_rows=t.estimated_rows,
            live_rows=t.n_live_tup,
            seq_scan=t.seq_scan,
            idx_scan=t.idx_scan,
        )
        for t in sorted(snapshot.tables, key=lambda t: (t.schema, t.name))
    ]
    live_tables, hidden_tables = dashboardrows.shown_tables(live_tables, show_all)
    return DashboardDatabase(
        alias=alias,
        status=overall_status([], findings),
        server_version=snapshot.server_version,
        stats_age=None if age is None else age.age,
        stats_reset=None if server is None else server.stats_reset,
        findings=tuple(findings),
        indexes=tuple(indexes),
        tables=tuple(live_tables),
        hidden_indexes=hidden_indexes,
        hidden_tables=hidden_tables,
    )


def collect_dashboard(
    databases: Sequence[str] | None = None,
    app_labels: Sequence[str] | None = None,
    *,
    show_all: bool = True,
    history: bool = True,
) -> Dashboard:
    """Read what the dashboard shows, on the current thread's connections.

    ``show_all=False`` collapses a database of more than
    :data:`~tenant_indexes.dashboardrows.COLLAPSE_ABOVE` indexes or tables to what needs
    attention (the counts of the rest are in ``hidden_indexes`` and
    ``hidden_tables``). ``history`` adds the charts of recorded usage history (one more
    query per database, on the history alias).

    Raises:
        UnknownDatabaseAlias: an alias is not in ``settings.DATABASES``.
        UnknownAppLabel: an app label is not installed.
    """
    started = time.perf_counter()
    reports = [
        _database(alias, app_labels, show_all, history)
        for alias in resolve_databases(databases, app_labels)
    ]
    if any(d.error for d in reports):
        status = "unknown"
    else:
        status = overall_status([], [f for d in reports for f in d.findings])
    return Dashboard(
        status=status, databases=tuple(reports), duration_seconds=time.perf_counter() - started
    )


def bounded_dashboard(*, show_all: bool = True) -> Dashboard:
    """:func:`collect_dashboard` on bounded connections, waited for at most ``HEALTH_TIMEOUT``."""
    config = probe_config()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            with bounded_connections(config):
                outcome["dashboard"] = collect_dashboard(
                    config["HEALTH_DATABASES"], config["HEALTH_APP_LABELS"], show_all=show_all
                )
        except Exception as e:  # shown on the page, never a 500
            outcome["error"] = f"{type(e).__name__}: {e}"

    worker = threading.Thread(target=run, name="tenant-indexes-dashboard", daemon=True)
    worker.start()
    worker.join(config["HEALTH_TIMEOUT"])
    if worker.is_alive():
        message = f"the check did not finish within {config['HEALTH_TIMEOUT']}s"
        return Dashboard(
            status="unknown", databases=(DashboardDatabase("-", "unknown", error=message),)
        )
    if "error" in outcome:
        return Dashboard(
            status="unknown",
            databases=(DashboardDatabase("-", "unknown", error=outcome["error"]),),
        )
    dashboard: Dashboard = outcome["dashboard"]
    return dashboard


def dashboard_view(request: HttpRequest, site: Any) -> HttpResponse:
    """The page (wrapped in ``site.admin_view`` by :func:`register`)."""
    show_all = request.GET.get("all") == "1"
    dashboard = bounded_dashboard(show_all=show_all)
    context = {
        **site.each_context(request),
        "title": "Tenant indexes",
        "dashboard": dashboard,
        "levels": Level,
        "show_all": show_all,
    }
    return TemplateResponse(request, TEMPLATE, context)


def _dashboard_entry(site: Any) -> dict[str, Any]:
    url = reverse(f"{site.name}:{URL_NAME}", current_app=site.name)
    return {
        "name": "Dashboard",
        "object_name": "TenantIndexesDashboard",
        "admin_url": url,
        "add_url": None,
        "view_only": True,
        "perms": {"add": False, "change": False, "delete": False, "view": True},
    }


def add_to_app_list(app_list: list[dict[str, Any]], site: Any) -> list[dict[str, Any]]:
    """Add a "Dashboard" entry to the app "Tenant indexes" of ``app_list`` (the admin index's
    and the navigation sidebar's list), adding the app if none of its models is registered."""
    entry = _dashboard_entry(site)
    for app in app_list:
        if app["app_label"] == APP_LABEL:
            others = [m for m in app["models"] if m.get("object_name") != entry["object_name"]]
            app["models"] = [entry, *others]
            return app_list
    app_list.append(
        {
            "name": APP_NAME,
            "app_label": APP_LABEL,
            "app_url": entry["admin_url"],
            "has_module_perms": True,
            "models": [entry],
        }
    )
    app_list.sort(key=lambda app: str(app["name"]).lower())
    return app_list


def register(site: Any = None) -> None:
    """Add the page to an admin site's URLs and its app list (the admin index and the
    navigation sidebar link to it), on the default site unless given; idempotent."""
    if site is None:
        from django.contrib import admin

        site = admin.site
    if getattr(site, "_tenant_indexes_dashboard", False):
        return
    original_get_urls = site.get_urls

    def get_urls() -> list[Any]:
        def view(request: HttpRequest) -> HttpResponse:
            return dashboard_view(request, site)

        return [
            path("tenant-indexes/", site.admin_view(view), name=URL_NAME),
            *original_get_urls(),
        ]

    original_get_app_list = site.get_app_list

    def get_app_list(request: HttpRequest, app_label: str | None = None) -> list[Any]:
        app_list = original_get_app_list(request, app_label)
        if app_label in (None, APP_LABEL):
            add_to_app_list(app_list, site)
        return app_list

    site.get_urls = get_urls
    site.get_app_list = get_app_list
    site._tenant_indexes_dashboard = True


__all__ = [
    "Dashboard",
    "DashboardDatabase",
    "DashboardIndex",
    "DashboardTable",
    "add_to_app_list",
    "bounded_dashboard",
    "collect_dashboard",
    "register",
]
