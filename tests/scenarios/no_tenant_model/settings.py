"""Only the core app and one model with a bare ``TenantForeignKey()``: no tenant model.

``manage.py check`` must load the models and report ``tenant_indexes.E010``.
"""

SECRET_KEY = "tests-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "tenant_indexes",
    "tests.scenarios.no_tenant_model",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
