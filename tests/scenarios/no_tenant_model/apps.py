from django.apps import AppConfig


class NoTenantModelConfig(AppConfig):
    name = "tests.scenarios.no_tenant_model"
    label = "no_tenant_model"
    default_auto_field = "django.db.models.BigAutoField"
