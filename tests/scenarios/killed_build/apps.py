from django.apps import AppConfig


class KilledBuildConfig(AppConfig):
    name = "tests.scenarios.killed_build"
    label = "killed_build"
    default_auto_field = "django.db.models.BigAutoField"
