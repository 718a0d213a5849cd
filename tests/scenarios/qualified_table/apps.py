from django.apps import AppConfig


class QualifiedTableConfig(AppConfig):
    name = "tests.scenarios.qualified_table"
    label = "qualified_table"
    default_auto_field = "django.db.models.BigAutoField"
