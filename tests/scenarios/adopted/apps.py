from django.apps import AppConfig


class AdoptedConfig(AppConfig):
    name = "tests.scenarios.adopted"
    label = "adopted"
    default_auto_field = "django.db.models.BigAutoField"
