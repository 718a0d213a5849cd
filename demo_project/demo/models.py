"""Fail-closed views of the seed's tables for the demo.

Proxy models of the seed's models whose default manager is
:class:`~tenant_indexes.TenantScopedManager`: same tables, same indexes, but a query without a
current tenant raises instead of reading every tenant's rows. The seed models themselves keep
their plain ``TenantManager`` (see the README's "Fail-closed tenant scoping" for why).

A proxy changes the managers of its own queries only: reverse relations declared on the
concrete models (``ticket.messages``) keep the concrete model's manager. A project that wants
related managers scoped as well makes ``TenantScopedManager`` the default manager of its
concrete models, as ``tests/scopingapp`` does.
"""

from tenant_indexes import TenantScopedManager
from tenant_indexes.helpdesk.models import AuditLog, Customer, Message, Ticket


class ScopedCustomer(Customer):
    objects = TenantScopedManager()

    class Meta:
        proxy = True


class ScopedTicket(Ticket):
    objects = TenantScopedManager()

    class Meta:
        proxy = True


class ScopedMessage(Message):
    objects = TenantScopedManager()

    class Meta:
        proxy = True


class ScopedAuditLog(AuditLog):
    objects = TenantScopedManager()

    class Meta:
        proxy = True
