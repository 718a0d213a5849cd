"""``manage.py check_tenant_indexes``: declared tenant indexes against the live catalog."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tenant_indexes.health import HealthReport, check_databases
from tenant_indexes.render import json_document_parts, render_prometheus, render_text

from ._base import ReportCommand, targets


class Command(ReportCommand):
    help = (
        "Check that every declared tenant index exists, is valid and matches its declaration, "
        "and that every tenant table has a tenant-leading index. Exit codes: 0 healthy, "
        "1 a finding at or above --fail-level, 2 could not check."
    )
    app_labels_help = "Only check these apps' models."
    database_help = (
        "Database alias to check (repeatable). Default: every PostgreSQL alias "
        "that tenant models migrate to."
    )

    def collect(self, options: dict[str, Any]) -> HealthReport:
        return check_databases(**targets(options))

    def render(self, report: HealthReport, output: str) -> str | Iterable[str]:
        if output == "json":
            return json_document_parts(report)
        if output == "prometheus":
            return render_prometheus(report)
        return render_text(report, self.style)
