from django.apps import AppConfig


class HostileNamesConfig(AppConfig):
    name = "tests.scenarios.hostile_names"
    label = "hostile_names"
    default_auto_field = "django.db.models.BigAutoField"
