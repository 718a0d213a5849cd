from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "tests.scenarios.own_tenant.accounts"
    label = "own_tenant_accounts"
    default_auto_field = "django.db.models.BigAutoField"
