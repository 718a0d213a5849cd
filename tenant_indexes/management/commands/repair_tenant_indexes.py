"""``manage.py repair_tenant_indexes``: build missing and rebuild INVALID tenant indexes."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenant_indexes.exceptions import BuildRefusedError, TenantIndexesError
from tenant_indexes.progress import BuildOutput
from tenant_indexes.render import render_not_repaired, render_repair_sql
from tenant_indexes.repair import RepairKind, plan_repairs, run_repairs, still_unhealthy

from ._base import ExitCodeArgumentsMixin, SignalExitMixin, add_target_arguments, targets


class Command(SignalExitMixin, ExitCodeArgumentsMixin, BaseCommand):
    # Like the other two commands: a bad setting or argument is exit 2 with one line, not a
    # system-check report; the tenant declarations are validated by the repair plan itself.
    requires_system_checks: list[str] = []
    help = (
        "Create missing and rebuild INVALID declared tenant indexes with CREATE INDEX "
        "CONCURRENTLY. Exit codes: 0 healthy afterwards, 1 something is still unhealthy "
        "(or, with --dry-run, needs repair), 2 could not check."
    )

    def add_arguments(self, parser: Any) -> None:
        add_target_arguments(
            parser,
            app_labels_help="Only repair these apps' models.",
            database_help="Database alias to repair (repeatable). Default: every PostgreSQL "
            "alias that tenant models migrate to.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print the SQL a repair would run; run none."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            actions = plan_repairs(**targets(options))
        except TenantIndexesError as e:
            raise CommandError(f"could not check: {e}", returncode=2) from e
        for line in render_not_repaired(actions):
            self.stderr.write(line)
        if options["dry_run"]:
            self.stdout.write(render_repair_sql(actions), ending="")
            failed = still_unhealthy(actions)
        else:
            try:
                results = run_repairs(actions, BuildOutput(self.stdout, options["verbosity"]))
            except BuildRefusedError as e:
                raise CommandError(str(e), returncode=2) from e
            for result in results:
                if not result.done:
                    self.stderr.write(f"{result.action.index}: {result.detail}")
            failed = still_unhealthy(actions, results)
        if options["verbosity"] >= 1 and all(a.kind == RepairKind.NOTHING for a in actions):
            self.stdout.write("Every declared tenant index is present and valid.")
        if failed:
            verb = "need repair" if options["dry_run"] else "still unhealthy"
            raise CommandError(f"{failed} tenant index(es) {verb}", returncode=1)
