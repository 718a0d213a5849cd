from django.apps import AppConfig


class HelpdeskConfig(AppConfig):
    """The help-desk schema: ``Tenant`` and its eight tenant-scoped tables."""

    name = "tenant_indexes.helpdesk"
    label = "tenant_indexes_helpdesk"
    verbose_name = "Tenant indexes: help desk"
    default_auto_field = "django.db.models.BigAutoField"
