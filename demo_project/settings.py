"""Settings of the demo project: the tenant_indexes app against a real PostgreSQL.

The database comes from ``DATABASE_URL``; without it an embedded PostgreSQL is started
(see :mod:`demo_project.embedded`).
"""

from pathlib import Path

from demo_project.embedded import database_config

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "demo-only-not-secret"  # the demo never serves real traffic
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "tenant_indexes",
    "tenant_indexes.helpdesk",
    "demo_project.demo",
    "django_extensions",
]

MIDDLEWARE: list[str] = []
ROOT_URLCONF = "demo_project.urls"
# django-extensions' graph_models renders the help-desk diagram from an app template.
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]

DATABASES = {"default": database_config("tenant_indexes_demo")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"tenant_indexes": {"handlers": ["console"], "level": "WARNING"}},
}
