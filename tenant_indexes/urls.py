"""Optional URLconf: ``path("health/tenant-indexes/", include("tenant_indexes.urls"))``."""

from django.urls import path

from .views import tenant_index_health

app_name = "tenant_indexes"

urlpatterns = [
    path("", tenant_index_health, name="health"),
]
