"""``TenantScopedAdmin``: the Django admin for fail-closed models.

Mix it into a ``ModelAdmin`` of a model whose default manager is a
:class:`~tenant_indexes.TenantScopedManager`::

    @admin.register(Project)
    class ProjectAdmin(TenantScopedAdmin, admin.ModelAdmin):
        list_display = ["name"]

- A request with a current tenant (``TenantScopeMiddleware``) sees and edits that tenant's
  rows only; the tenant field is left out of the form and filled in on save.
- A superuser with no tenant works across tenants, explicitly: the admin's views run inside
  :func:`~tenant_indexes.all_tenants`. The tenant field is on the form, and
  :class:`~tenant_indexes.forms.TenantModelForm` refuses related rows of another tenant.
- Staff with no tenant get ``403 Forbidden`` rather than every tenant's rows.
- The admin site's autocomplete view (``autocomplete_fields`` pointing at this model) runs
  outside these views: it reads through :meth:`TenantScopedAdmin.get_queryset`, which gives a
  tenant's staff their tenant's rows, a superuser with no tenant an explicitly unscoped
  queryset (``unscoped()``), and staff with no tenant ``403``.

The views render their response inside the scope (Django renders a ``TemplateResponse`` after
the view returns, when no scope would be set any more).
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.core.exceptions import PermissionDenied

from . import querybinding
from .forms import TenantModelForm
from .scoping import _current_scope, all_tenants
from .tenancy import tenant_field_of

__all__ = ["TenantScopedAdmin"]


class TenantScopedAdmin:
    """A ``ModelAdmin`` mixin that scopes every admin view of a fail-closed model."""

    form = TenantModelForm

    def admin_scope(self, request: Any) -> contextlib.AbstractContextManager[None]:
        """The scope an admin view of this request runs in.

        Raises:
            PermissionDenied: a staff user who is not a superuser and has no tenant.
        """
        if _current_scope.get() is not None:
            return contextlib.nullcontext()
        if getattr(request.user, "is_superuser", False):
            return all_tenants()
        raise PermissionDenied("This admin page needs a tenant.")

    def get_queryset(self, request: Any) -> Any:
        """The admin's queryset; outside the wrapped views (the autocomplete view) it is
        bound here: a superuser with no tenant gets every tenant explicitly, staff with no
        tenant get ``PermissionDenied``, a request with a tenant is filtered when it runs."""
        qs = super().get_queryset(request)  # type: ignore[misc]
        if _current_scope.get() is None:
            self.admin_scope(request)  # PermissionDenied for staff without a tenant
            qs = qs.all()
            setattr(qs.query, querybinding.BINDING_ATTR, querybinding.UNSCOPED)
        return qs

    def _scoped(self, view: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        with self.admin_scope(request):
            response = view(request, *args, **kwargs)
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            return response

    def changelist_view(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._scoped(super().changelist_view, request, *args, **kwargs)  # type: ignore[misc]

    def changeform_view(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._scoped(super().changeform_view, request, *args, **kwargs)  # type: ignore[misc]

    def delete_view(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._scoped(super().delete_view, request, *args, **kwargs)  # type: ignore[misc]

    def history_view(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._scoped(super().history_view, request, *args, **kwargs)  # type: ignore[misc]

    def get_exclude(self, request: Any, obj: Any = None) -> Any:
        exclude = list(super().get_exclude(request, obj) or [])  # type: ignore[misc]
        scope = _current_scope.get()
        field = tenant_field_of(self.model)  # type: ignore[attr-defined]
        if field is not None and scope is not None and not scope.all_tenants:
            exclude.append(field.name)  # the current tenant's: filled in on save
        return exclude or None
