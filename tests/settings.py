"""Settings for the test suite.

``DATABASE_URL`` selects the server. Without it, the session fixture in ``conftest.py``
starts the embedded PostgreSQL (18, or 16 with ``TENANT_INDEXES_EMBEDDED=pg16``) and points
the ``"embedded"`` placeholder below at it; pytest-django then creates a fresh
``test_tenant_indexes`` database for the run.
"""

import os

import dj_database_url

SECRET_KEY = "tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    # The admin: the tenant index dashboard (tests/test_dashboard.py).
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "tenant_indexes",
    "tenant_indexes.helpdesk",
    "tests.testapp",
    # The fail-closed scoping scenario, tenant models with int and UUID keys, the demo.
    "tests.scopingapp",
    "tests.scenarios.tenant_pk_types",
    "demo_project.demo",
]

# django-health-check renders its HTML page from its own app's templates: the documented
# setup lists "health_check" in INSTALLED_APPS, and so do the tests that follow it.
try:
    import health_check  # noqa: F401
except ImportError:  # pragma: no cover - django-health-check is in the test extra
    pass
else:
    INSTALLED_APPS.append("health_check")

TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]

EMBEDDED_HOST = "embedded-pgserver"  # replaced by the session fixture

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "tenant_indexes",
            "USER": "postgres",
            "HOST": EMBEDDED_HOST,
        }
    }

# A second, non-PostgreSQL alias: check_tenant_indexes --database sqlite must say that a live
# check needs PostgreSQL (exit 2). Nothing connects to it unless a test asks for it.
DATABASES["sqlite"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}

# The health-check surfaces (tests/test_views.py, tests/test_health_check_backend.py).
ROOT_URLCONF = "tests.urls"
# pytest-django allows "testserver" only inside the test run; the manage.py subprocesses of
# the integration tests use the test client too.
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

# The admin (TenantScopedAdmin in tests/test_admin.py, the dashboard) needs sessions, auth and
# messages; the scoping middleware sets the tenant of a tenant's staff.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "tests.scopingapp.middleware.tenant_of_staff",
    "tenant_indexes.scoping.TenantScopeMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"
