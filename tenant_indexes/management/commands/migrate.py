"""Django's ``migrate``, with the autodetector of this app's ``makemigrations``.

Django 5.2's system check ``commands.E001`` requires ``migrate`` and ``makemigrations`` to use
the same autodetector (``migrate`` uses it to warn about unmigrated model changes).

With ``--fake-initial``, an initial migration whose tables already exist is recorded without
running, and Django skips its indexes too. For tenant tables this command then builds them
concurrently before the migration is recorded (adopting those that exist and match,
rebuilding INVALID ones, refusing different ones), with their unique constraints
(:func:`tenant_indexes.adoption.build_faked_initial_indexes`).
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import migrate as django_migrate
from django.db import connections

from tenant_indexes.autodetector import TenantIndexAutodetector

from ._base import SignalExitMixin


class Command(SignalExitMixin, django_migrate.Command):
    autodetector = TenantIndexAutodetector
    interruptible = False  # only the builds: a user's migration may COPY (see _base.py)

    def handle(self, *args: Any, **options: Any) -> Any:
        self._fake_initial = bool(options.get("fake_initial"))
        self._database = options.get("database") or "default"
        return super().handle(*args, **options)

    def migration_progress_callback(
        self, action: str, migration: Any = None, fake: bool = False
    ) -> None:
        super().migration_progress_callback(action, migration, fake)
        if (
            action == "apply_start"
            and getattr(self, "_fake_initial", False)
            and getattr(migration, "initial", False)
        ):
            self._build_if_faked(migration)

    def _build_if_faked(self, migration: Any) -> None:
        # Before Django records the migration as applied: a refused index (a different
        # definition) leaves it unapplied, so migrate --fake-initial can run again.
        from django.db.migrations.executor import MigrationExecutor

        from tenant_indexes.adoption import build_faked_initial_indexes
        from tenant_indexes.progress import migrate_output

        connection = connections[self._database]
        soft_applied, _state = MigrationExecutor(connection).detect_soft_applied(None, migration)
        if soft_applied:
            build_faked_initial_indexes(connection, migration, migrate_output(connection.alias))
