"""The project's own tenant middleware, as a user writes it: staff belong to a tenant."""

from collections.abc import Callable
from typing import Any


def tenant_of_staff(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Set ``request.tenant`` from the user's ``last_name`` (a tenant slug, tests only)."""

    def middleware(request: Any) -> Any:
        from tenant_indexes.helpdesk.models import Tenant

        user = getattr(request, "user", None)
        slug = getattr(user, "last_name", "") if user is not None else ""
        request.tenant = Tenant.objects.filter(slug=slug).first() if slug else None
        return get_response(request)

    return middleware
