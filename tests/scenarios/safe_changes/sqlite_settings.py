"""The suite's settings on a SQLite file, with the safe-changes scenario's generated migrations.

``SAFE_CHANGES_SQLITE`` names the database file, ``SAFE_CHANGES_MIGRATIONS`` the package.
"""

import os

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.scenarios.safe_changes"]  # noqa: F405
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["SAFE_CHANGES_SQLITE"]}
}
MIGRATION_MODULES = {"safe_changes": os.environ["SAFE_CHANGES_MIGRATIONS"]}
