"""Run a small tenant workload for ``suggest_tenant_indexes`` to read from pg_stat_statements."""

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection

from tenant_indexes.advisor import ENABLE_PRELOAD_LINE
from tenant_indexes.helpdesk.models import Customer, Ticket

RUNS = 200


class Command(BaseCommand):
    help = (
        "Reset pg_stat_statements and run the help desk's usual tenant queries a few hundred "
        "times: the latest tickets of a tenant, a customer by e-mail, open tickets. Exit 2 "
        "when pg_stat_statements is not loaded (the message has the line that enables it)."
    )

    def handle(self, *args, **options):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW shared_preload_libraries")
                if "pg_stat_statements" not in cursor.fetchone()[0]:
                    raise CommandError(
                        f"pg_stat_statements is not loaded: add {ENABLE_PRELOAD_LINE} to "
                        "postgresql.conf and restart",
                        returncode=2,
                    )
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                cursor.execute(
                    "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
                    " WHERE datname = current_database()), 0)"
                )
        except DatabaseError as e:
            raise CommandError(f"cannot prepare pg_stat_statements: {e}", returncode=2) from e
        tenants = list(
            Ticket.objects.values_list("tenant_id", flat=True)
            .distinct()
            .order_by("tenant_id")[:RUNS]
        )
        if not tenants:
            raise CommandError("no tickets: run seed_demo_data first", returncode=2)
        emails = dict(
            Customer.objects.order_by("tenant_id", "id").values_list("tenant_id", "email")
        )
        for run in range(RUNS):
            tenant = tenants[run % len(tenants)]
            list(Ticket.objects.filter(tenant_id=tenant).order_by("-created_at")[:20])
            list(Customer.objects.filter(tenant_id=tenant, email=emails.get(tenant, "x@y")))
            Ticket.objects.filter(tenant_id=tenant, status="open").count()
        self.stdout.write(
            f"ran 3 tenant statements {RUNS} times each over {len(tenants)} tenants: the latest "
            "tickets (ORDER BY created_at DESC), a customer by e-mail, open tickets"
        )
