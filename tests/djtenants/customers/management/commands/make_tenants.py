"""``make_tenants N``: N tenants (``tenant_001`` ...) and their empty schemas, in one go."""

from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection

from tests.djtenants.customers.models import Client


class Command(BaseCommand):
    help = "Create N tenants and their empty schemas (migrate_schemas fills them)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("count", type=int)

    def handle(self, *args: Any, count: int, **options: Any) -> None:
        names = [f"tenant_{n:03d}" for n in range(1, count + 1)]
        Client.objects.bulk_create([Client(schema_name=name) for name in names])
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute(f'CREATE SCHEMA "{name}"')
