from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "tests.djtenants.shop"
    label = "djt_shop"
    default_auto_field = "django.db.models.BigAutoField"
