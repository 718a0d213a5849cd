"""``manage.py repair_tenant_indexes``: build missing and rebuild INVALID tenant indexes."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenant_indexes.exceptions import TenantIndexesError
from tenant_indexes.progress import BuildOutput
from tenant_indexes.repair import RepairKind, plan_repairs, run_repairs

from ._base import ExitCodeArgumentsMixin, add_target_arguments, targets


class Command(ExitCodeArgumentsMixin, BaseCommand):
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
        work = [a for a in actions if a.kind in (RepairKind.CREATE, RepairKind.REBUILD)]
        blocked = [a for a in actions if a.kind == RepairKind.CANNOT]
        for action in blocked:
            self.stderr.write(
                f"{action.database}: {action.index} on {action.table} is {action.state}, "
                f"not repaired: {action.reason}"
            )
        if options["dry_run"]:
            for action in work:
                self.stdout.write(f"-- {action.database}: {action.kind} {action.index}")
                for statement in action.statements:
                    self.stdout.write(f"{statement};")
            failed = len(work) + len(blocked)
        else:
            output = BuildOutput(self.stdout, options["verbosity"])
            results = run_repairs(work, output)
            for result in results:
                if not result.done:
                    self.stderr.write(f"{result.action.index}: {result.detail}")
            failed = len(blocked) + sum(not r.done for r in results)
        if options["verbosity"] >= 1 and not work and not blocked:
            self.stdout.write("Every declared tenant index is present and valid.")
        if failed:
            verb = "need repair" if options["dry_run"] else "still unhealthy"
            raise CommandError(f"{failed} tenant index(es) {verb}", returncode=1)
