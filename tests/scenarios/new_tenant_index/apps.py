from django.apps import AppConfig


class NewTenantIndexConfig(AppConfig):
    name = "tests.scenarios.new_tenant_index"
    label = "new_tenant_index"
    default_auto_field = "django.db.models.BigAutoField"
