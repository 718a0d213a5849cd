"""The tenant and its domain, in the public schema (a shared app)."""

from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):
    # The test makes the schemas itself, in bulk (make_tenants), then migrate_schemas.
    auto_create_schema = False


class Domain(DomainMixin):
    pass
