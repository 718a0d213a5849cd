"""``manage.py tenant_index_stats``: how the tenant tables' indexes are used."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenant_indexes.exceptions import TenantIndexesError
from tenant_indexes.health import Level
from tenant_indexes.render import render_usage_prometheus, render_usage_text
from tenant_indexes.usage import SORT_KEYS, collect_usage


class Command(BaseCommand):
    help = (
        "Usage of the tenant tables' indexes: scans, tuples, sizes, last scan, statistics "
        "age; unused (W001), redundant (W002), seq-scan-heavy tables (W010) and, with "
        "--explain, tenant queries whose plan uses no tenant index (W011). Pass a primary and "
        "its replicas with --database to sum their usage. Exit codes: 0 healthy, 1 a finding "
        "at or above --fail-level, 2 could not check."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "app_labels", nargs="*", metavar="app_label", help="Only these apps' models."
        )
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="Database alias to read (repeatable: a primary and its replicas are summed). "
            "Default: every PostgreSQL alias that tenant models migrate to.",
        )
        parser.add_argument(
            "--format", choices=["text", "json", "prometheus"], default="text", dest="output"
        )
        parser.add_argument(
            "--fail-level",
            choices=[level.value for level in Level],
            default=Level.ERROR.value,
            help="Lowest finding level that makes the command exit 1 (default: error).",
        )
        parser.add_argument(
            "--sort", choices=sorted(SORT_KEYS), default="size", help="Order of the indexes."
        )
        parser.add_argument(
            "--explain",
            action="store_true",
            help="EXPLAIN (without ANALYZE) a query on a real tenant of each table.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = collect_usage(
                databases=options["databases"] or None,
                app_labels=options["app_labels"] or None,
                explain=options["explain"],
                sort=options["sort"],
            )
        except TenantIndexesError as e:
            raise CommandError(str(e), returncode=2) from e
        output = options["output"]
        if output == "json":
            self.stdout.write(json.dumps(report.as_dict(), indent=2, default=str))
        elif output == "prometheus":
            self.stdout.write(render_usage_prometheus(report), ending="")
        else:
            self.stdout.write(render_usage_text(report, self.style), ending="")
        code = report.exit_code(options["fail_level"])
        if code == 2:
            failed = "; ".join(d.error for d in report.databases if d.error)
            raise CommandError(f"could not check: {failed}", returncode=2)
        if code == 1:
            raise CommandError(
                f"unhealthy: {len(report.findings)} finding(s), status {report.status}",
                returncode=1,
            )
