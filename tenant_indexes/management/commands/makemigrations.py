"""``makemigrations`` that builds new tenant indexes on existing tables concurrently.

Django's command with :class:`~tenant_indexes.autodetector.TenantIndexAutodetector` and a
writer that keeps ``atomic = False``. Django 5.2 takes the autodetector as a class attribute;
Django 4.2 has no such hook, so the command swaps the two names Django's module looks up for
the duration of the call (restored afterwards, also on error).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.commands import makemigrations as django_makemigrations

from tenant_indexes.autodetector import AtomicAwareMigrationWriter, TenantIndexAutodetector


@contextmanager
def _module_names(module: Any, **replacements: Any) -> Iterator[None]:
    """Replace names of ``module`` for the duration of the block."""
    saved = {name: getattr(module, name) for name in replacements}
    try:
        for name, value in replacements.items():
            setattr(module, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


class Command(django_makemigrations.Command):
    help = (
        django_makemigrations.Command.help
        + " New tenant indexes on existing tables are built with CREATE INDEX CONCURRENTLY"
        " in migrations of their own (atomic = False)."
    )
    autodetector = TenantIndexAutodetector  # Django 5.2+

    def handle(self, *args: Any, **options: Any) -> Any:
        with _module_names(
            django_makemigrations,
            MigrationAutodetector=TenantIndexAutodetector,  # Django 4.2
            MigrationWriter=AtomicAwareMigrationWriter,
        ):
            return super().handle(*args, **options)
