from django.urls import include, path

urlpatterns = [
    # 200 healthy / 503 unhealthy; anonymous callers get the status only.
    path("health/tenant-indexes/", include("tenant_indexes.urls")),
]
