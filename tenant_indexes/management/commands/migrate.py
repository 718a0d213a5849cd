"""Django's ``migrate``, with the autodetector of this app's ``makemigrations``.

Django 5.2's system check ``commands.E001`` requires ``migrate`` and ``makemigrations`` to use
the same autodetector (``migrate`` uses it to warn about unmigrated model changes). Nothing
else changes.
"""

from __future__ import annotations

from django.core.management.commands import migrate as django_migrate

from tenant_indexes.autodetector import TenantIndexAutodetector

from ._base import SignalExitMixin


class Command(SignalExitMixin, django_migrate.Command):
    autodetector = TenantIndexAutodetector
