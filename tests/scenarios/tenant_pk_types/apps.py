from django.apps import AppConfig


class TenantPkTypesConfig(AppConfig):
    name = "tests.scenarios.tenant_pk_types"
    label = "tenant_pk_types"
    default_auto_field = "django.db.models.BigAutoField"
