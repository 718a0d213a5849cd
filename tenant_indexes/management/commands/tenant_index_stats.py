"""``manage.py tenant_index_stats``: how the tenant tables' indexes are used."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError

from tenant_indexes.history import history_database, record_usage
from tenant_indexes.reads import first_error_line
from tenant_indexes.render import render_usage_json, render_usage_prometheus, render_usage_text
from tenant_indexes.usage import SORT_KEYS, UsageReport, collect_usage, with_history

from ._base import ReportCommand, targets


class Command(ReportCommand):
    help = (
        "Usage of the tenant tables' indexes: scans, tuples, sizes, last scan, statistics "
        "age; unused (W001), redundant (W002), seq-scan-heavy tables (W010) and, with "
        "--explain, tenant queries whose plan uses no tenant index (W011). Pass a primary and "
        "its replicas with --database to sum their usage. Exit codes: 0 healthy, 1 a finding "
        "at or above --fail-level, 2 could not check."
    )
    app_labels_help = "Only these apps' models."
    database_help = (
        "Database alias to read (repeatable: a primary and its replicas are summed). "
        "Default: every PostgreSQL alias that tenant models migrate to."
    )

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--sort", choices=sorted(SORT_KEYS), default="size", help="Order of the indexes."
        )
        parser.add_argument(
            "--explain",
            action="store_true",
            help="EXPLAIN (without ANALYZE) a query on a real tenant of each table.",
        )

        parser.add_argument(
            "--record",
            action="store_true",
            help="Store a usage snapshot per alias read and index, on the HISTORY_DATABASE "
            "alias (run it from cron or Celery beat).",
        )
        parser.add_argument(
            "--since",
            type=float,
            metavar="DAYS",
            help="Report what changed over the last DAYS days of recorded snapshots.",
        )

    def collect(self, options: dict[str, Any]) -> UsageReport:
        if options["since"] is not None and not options["since"] > 0:
            raise CommandError("--since DAYS must be a positive number of days", returncode=2)
        report = collect_usage(**targets(options), explain=options["explain"], sort=options["sort"])
        try:
            if options["record"]:
                record_usage(report.snapshots)
            if options["since"] is not None:
                report = with_history(report, options["since"])
        except DatabaseError as e:
            store = history_database()
            raise CommandError(
                f"usage history on {store!r} (TENANT_INDEXES['HISTORY_DATABASE']): "
                f"{first_error_line(e)} (run manage.py migrate tenant_indexes --database {store}, "
                "on a primary)",
                returncode=2,
            ) from e
        return report

    def render(self, report: UsageReport, output: str) -> str:
        if output == "json":
            return render_usage_json(report)
        if output == "prometheus":
            return render_usage_prometheus(report)
        return render_usage_text(report, self.style)
