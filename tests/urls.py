"""URLs of the test suite: the admin (dashboard, TenantScopedAdmin), the health endpoint as a
user mounts it, and django-health-check."""

from django.contrib import admin
from django.urls import include, path

from tenant_indexes.views import tenant_index_health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/tenant-indexes/", tenant_index_health, name="tenant-index-health"),
    path("included/", include("tenant_indexes.urls")),
]

try:
    from health_check.views import HealthCheckView
except ImportError:  # pragma: no cover - django-health-check is in the test extra
    pass
else:
    urlpatterns.append(
        path(
            "ht/",
            HealthCheckView.as_view(checks=["tenant_indexes.contrib.health_check.TenantIndexes"]),
            name="health-check",
        )
    )
