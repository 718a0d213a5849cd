from django.apps import AppConfig


class SafeChangesConfig(AppConfig):
    name = "tests.scenarios.safe_changes"
    label = "safe_changes"
    default_auto_field = "django.db.models.BigAutoField"
