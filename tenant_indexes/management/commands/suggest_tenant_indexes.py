"""``manage.py suggest_tenant_indexes``: tenant-leading indexes the workload asks for."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenant_indexes.advisor import AdvisorReport, suggest_tenant_indexes
from tenant_indexes.exceptions import TenantIndexesError
from tenant_indexes.render import human_size

from ._base import ExitCodeArgumentsMixin


def render_text(report: AdvisorReport) -> str:
    lines = [
        f"database {report.database}: {report.statements_read} statement(s) read from "
        f"pg_stat_statements, {report.tenant_statements} on tenant tables filtering on the "
        f"tenant column; {len(report.suggestions)} suggestion(s)"
        + (
            ""
            if report.hypopg or any(s.verification == "built" for s in report.suggestions)
            else " (unverified: no hypopg)"
        )
    ]
    for note in report.notes:
        lines.append(f"note: {note}")
    for number, s in enumerate(report.suggestions, 1):
        lines += [
            "",
            f"{number}. {s.model} ({s.table}): index on ({', '.join(s.columns)})"
            f" [{s.verification}]",
            f"   why: {'; '.join(s.reasons)}",
            f"   estimated size: {human_size(s.estimated_bytes, 'bytes')}",
            "   add to the model's Meta.indexes:",
            f"       {s.tenant_index_line}",
            "   then makemigrations writes (atomic = False):",
            *("       " + line for line in s.migration_operation.splitlines()),
            "   serves:",
        ]
        for st in s.statements:
            query = " ".join(st.query.split())
            lines.append(
                f"     - {st.calls} calls, {st.mean_ms:.3f} ms mean: "
                f"{query[:160]}{'...' if len(query) > 160 else ''}"
            )
        for m in s.measurements:
            timing = (
                f", measured {m.ms_before:.3f} ms -> {m.ms_after:.3f} ms"
                if m.ms_before is not None and m.ms_after is not None
                else ""
            )
            lines.append(
                f"   {m.role} tenant {m.tenant}: cost {m.cost_before:.1f} -> {m.cost_after:.1f}"
                f" ({m.ratio:.1f}x){'' if m.uses_index else ', index not used'}{timing}"
            )
    return "\n".join(lines) + "\n"


class Command(ExitCodeArgumentsMixin, BaseCommand):
    help = (
        "Suggest tenant-leading indexes from pg_stat_statements: the tenant statements whose "
        "plan (for a typical and the largest tenant) scans the table, an index that does not "
        "lead with the tenant column, post-filters or sorts; verified with hypopg when it is "
        "installed. Prints the TenantIndex line and the migration operation. Exit codes: 0 "
        "nothing to suggest, 1 suggestions (with --fail-on-suggestions), 2 could not run."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("app_labels", nargs="*", metavar="app_label", help="Only these apps.")
        parser.add_argument("--database", default="default", help="Database alias to read.")
        parser.add_argument("--format", choices=("text", "json"), default="text", dest="output")
        parser.add_argument(
            "--min-calls", type=int, default=1, help="Ignore statements called fewer times."
        )
        parser.add_argument(
            "--min-time-ms",
            type=float,
            default=0.0,
            help="Ignore statements whose mean time is below this (milliseconds).",
        )
        parser.add_argument(
            "--verify-by-building",
            action="store_true",
            help="Build each suggestion concurrently, measure, drop it (non-production only).",
        )
        parser.add_argument(
            "--fail-on-suggestions",
            action="store_true",
            help="Exit 1 when there is a suggestion (for CI).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from django.db import connections

        if options["database"] not in connections:
            raise CommandError(f"unknown database alias {options['database']!r}", returncode=2)
        try:
            report = suggest_tenant_indexes(
                options["database"],
                options["app_labels"] or None,
                min_calls=options["min_calls"],
                min_time_ms=options["min_time_ms"],
                verify_by_building=options["verify_by_building"],
            )
        except LookupError as e:
            raise CommandError(str(e), returncode=2) from e
        except TenantIndexesError as e:
            raise CommandError(str(e), returncode=2) from e
        if options["output"] == "json":
            self.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n", ending="")
        else:
            self.stdout.write(render_text(report), ending="")
        if options["fail_on_suggestions"] and report.suggestions:
            raise CommandError(f"{len(report.suggestions)} suggestion(s)", returncode=1)
