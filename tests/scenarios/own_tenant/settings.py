"""Settings of the own-tenant project: the core app alone, the tenant model named once.

The test passes the database (``TENANT_INDEXES_SCENARIO_DB``, JSON of a ``DATABASES``
entry) and the package that holds the app's migrations (``OWN_TENANT_MIGRATIONS``, a copy
that ``makemigrations`` may write to).
"""

import json
import os

SECRET_KEY = "tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "tenant_indexes",
    "tests.scenarios.own_tenant.accounts",
]

DATABASES = {"default": json.loads(os.environ["TENANT_INDEXES_SCENARIO_DB"])}
MIGRATION_MODULES = {
    "own_tenant_accounts": os.environ.get(
        "OWN_TENANT_MIGRATIONS", "tests.scenarios.own_tenant.accounts.migrations"
    )
}

TENANT_INDEXES = {"TENANT_MODEL": "own_tenant_accounts.Organization"}
