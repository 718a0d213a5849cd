"""Django's ``sqlmigrate``, with one clear line for an atomic migration that runs concurrently.

The concurrent operations refuse to run inside a transaction, under ``sqlmigrate`` too (its
``BEGIN; CREATE INDEX CONCURRENTLY ...; COMMIT;`` would fail in psql), as Django's own
``AddIndexConcurrently`` does. Django lets that ``NotSupportedError`` end in a traceback;
this command turns it into a ``CommandError`` (exit 2) that names the migration.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands import sqlmigrate as django_sqlmigrate
from django.db import NotSupportedError


class Command(django_sqlmigrate.Command):
    def handle(self, *args: Any, **options: Any) -> Any:
        try:
            return super().handle(*args, **options)
        except NotSupportedError as error:
            raise CommandError(
                f"{options['app_label']}.{options['migration_name']}: {error} "
                "(system check tenant_indexes.E020)",
                returncode=2,
            ) from error
