"""Show tenant-scoped queries failing closed on the demo data, and the plans they get."""

from django.core.management.base import BaseCommand, CommandError

from demo_project.demo.models import ScopedMessage, ScopedTicket
from demo_project.demo.querybench import BenchError, pick_tenant, scan_node
from tenant_indexes import TenantNotSetError, TenantScopeError, tenant_context


class Command(BaseCommand):
    help = "Show fail-closed tenant scoping on the demo data (run seed_demo_data first)."

    def handle(self, *args, **options):
        try:
            tenant_id, _, _ = pick_tenant("median")
        except BenchError as e:
            raise CommandError(str(e), returncode=2) from e
        out = self.stdout.write

        out('ScopedTicket.objects.filter(status="open").count()   # no current tenant')
        try:
            ScopedTicket.objects.filter(status="open").count()
            raise CommandError("the query ran without a tenant", returncode=1)
        except TenantNotSetError as e:
            out(self.style.SUCCESS("  refused: ") + str(e))

        with tenant_context(tenant_id):
            out(f"\nwith tenant_context({tenant_id!r}):")
            open_tickets = ScopedTicket.objects.filter(status="open")
            out(
                f'  ScopedTicket.objects.filter(status="open")  -> {open_tickets.count():,} rows, '
                f"plan: {scan_node(open_tickets, 'tickets')}"
            )
            ticket = ScopedTicket.objects.order_by("id").first()
            messages = ScopedMessage.objects.filter(ticket_id=ticket.pk)
            out(
                f"  ScopedMessage.objects.filter(ticket_id={ticket.pk})  -> {messages.count()} "
                f"rows, plan: {scan_node(messages, 'messages')}"
            )
            other = ScopedTicket.objects.unscoped().exclude(tenant_id=tenant_id).first()
            if other is not None:
                found = ScopedTicket.objects.filter(pk=other.pk).exists()
                out(
                    f"  ScopedTicket.objects.filter(pk={other.pk})  (another tenant's ticket) "
                    f"-> exists() = {found}"
                )
                try:
                    ScopedTicket.objects.for_tenant(other.tenant_id)
                except TenantScopeError as e:
                    out(self.style.SUCCESS("  for_tenant(<another tenant>) refused: ") + str(e))
            total = ScopedTicket.objects.unscoped().count()
            out(f"  ScopedTicket.objects.unscoped().count()  (escape hatch) -> {total:,}")
