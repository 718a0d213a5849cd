"""Settings for ``manage.py`` subprocesses that the scenario tests start and kill.

The test passes its own test database (``TENANT_INDEXES_SCENARIO_DB``, JSON of a
``DATABASES`` entry) and the ``TENANT_INDEXES`` setting (``TENANT_INDEXES_SCENARIO_CONFIG``),
so the subprocess migrates exactly the database the test inspects. More scenario apps may be
named in ``TENANT_INDEXES_SCENARIO_APPS`` (a JSON list).
"""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [
    *INSTALLED_APPS,
    "tests.scenarios.killed_build",
    *json.loads(os.environ.get("TENANT_INDEXES_SCENARIO_APPS", "[]")),
]

DATABASES = {"default": json.loads(os.environ["TENANT_INDEXES_SCENARIO_DB"])}
TENANT_INDEXES = json.loads(os.environ.get("TENANT_INDEXES_SCENARIO_CONFIG", "{}"))
