from django.apps import AppConfig


class TenantIndexesConfig(AppConfig):
    name = "tenant_indexes"
    verbose_name = "Tenant indexes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connect the setting_changed receiver.
        from . import conf  # noqa: F401

        # --- check_tenant_indexes (issue #3): system checks ---
        from .checks import register as register_checks

        register_checks()
        # --- end check_tenant_indexes ---
