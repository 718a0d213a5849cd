"""``manage.py repair_tenant_indexes``: build missing and rebuild INVALID tenant indexes."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenant_indexes.exceptions import BuildRefusedError, TenantIndexesError
from tenant_indexes.progress import BuildOutput
from tenant_indexes.render import render_action_name, render_not_repaired, render_repair_sql
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
        parser.add_argument(
            "--jobs",
            type=_positive,
            default=1,
            help="Build in this many schemas at once, one index at a time in each (default 1).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options["verbosity"]
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
                results = run_repairs(
                    actions,
                    BuildOutput(self.stdout, options["verbosity"]),
                    jobs=options["jobs"],
                    on_done=self._progress if options["jobs"] > 1 else None,
                )
            except BuildRefusedError as e:
                raise CommandError(str(e), returncode=2) from e
            for result in results:
                if not result.done:
                    self.stderr.write(f"{render_action_name(result.action)}: {result.detail}")
            failed = still_unhealthy(actions, results)
        if options["verbosity"] >= 1 and all(a.kind == RepairKind.NOTHING for a in actions):
            self.stdout.write("Every declared tenant index is present and valid.")
        if failed:
            verb = "need repair" if options["dry_run"] else "still unhealthy"
            raise CommandError(f"{failed} tenant index(es) {verb}", returncode=1)

    def _progress(self, result: Any, done: int, total: int) -> None:
        if self.verbosity >= 1:
            state = result.detail if result.done else "FAILED"
            self.stdout.write(f"[{done}/{total}] {render_action_name(result.action)}: {state}")


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return number
