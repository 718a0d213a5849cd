"""Settings of the django-tenants project: django-tenants' backend and router.

The test passes the database as ``TENANT_INDEXES_SCENARIO_DB`` (JSON of a ``DATABASES``
entry); its engine is replaced by ``django_tenants.postgresql_backend``. No
``CHECK_SCHEMAS``: the tenant schemas come from the tenant model.
"""

import json
import os

SECRET_KEY = "tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SHARED_APPS = [
    "django_tenants",
    "tests.djtenants.customers",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "tenant_indexes",
]
TENANT_APPS = ["tests.djtenants.shop"]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "djt_customers.Client"
TENANT_DOMAIN_MODEL = "djt_customers.Domain"
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]

DATABASES = {
    "default": {
        **json.loads(os.environ["TENANT_INDEXES_SCENARIO_DB"]),
        "ENGINE": "django_tenants.postgresql_backend",
    }
}
