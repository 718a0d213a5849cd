"""Django's ``squashmigrations``, keeping ``atomic = False`` where a concurrent operation stays.

Django's command writes the squashed migration as a new class without ``atomic``: a squash
that keeps an ``AddIndexConcurrently`` (or any concurrent operation of this app) would then
fail on a fresh database with ``NotSupportedError``. This command writes it through
:class:`~tenant_indexes.autodetector.AtomicAwareMigrationWriter`, which adds
``atomic = False`` to such a squash.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import squashmigrations as django_squashmigrations

from tenant_indexes.autodetector import AtomicAwareMigrationWriter
from tenant_indexes.management.commands.makemigrations import _module_names


class Command(django_squashmigrations.Command):
    help = (
        django_squashmigrations.Command.help
        + " A squash that keeps a concurrent index operation is written with atomic = False."
    )

    def handle(self, *args: Any, **options: Any) -> Any:
        with _module_names(django_squashmigrations, MigrationWriter=AtomicAwareMigrationWriter):
            return super().handle(*args, **options)
