"""``manage.py check_tenant_indexes``: declared tenant indexes against the live catalog."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenant_indexes.exceptions import TenantIndexesError
from tenant_indexes.health import Level, check_databases
from tenant_indexes.render import render_json, render_prometheus, render_text


class Command(BaseCommand):
    help = (
        "Check that every declared tenant index exists, is valid and matches its declaration, "
        "and that every tenant table has a tenant-leading index. Exit codes: 0 healthy, "
        "1 a finding at or above --fail-level, 2 could not check."
    )
    # The command is the check; Django's own system checks would only delay a probe.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "app_labels", nargs="*", metavar="app_label", help="Only check these apps' models."
        )
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="Database alias to check (repeatable). Default: every PostgreSQL alias "
            "that tenant models migrate to.",
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

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = check_databases(
                databases=options["databases"] or None,
                app_labels=options["app_labels"] or None,
            )
        except TenantIndexesError as e:
            raise CommandError(str(e), returncode=2) from e
        output = options["output"]
        if output == "json":
            self.stdout.write(render_json(report), ending="")
        elif output == "prometheus":
            self.stdout.write(render_prometheus(report), ending="")
        else:
            self.stdout.write(render_text(report, self.style), ending="")
        code = report.exit_code(options["fail_level"])
        if code == 2:
            failed = "; ".join(d.error for d in report.databases if d.error)
            raise CommandError(f"could not check: {failed}", returncode=2)
        if code == 1:
            raise CommandError(
                f"unhealthy: {len(report.findings)} finding(s), status {report.status}",
                returncode=1,
            )
