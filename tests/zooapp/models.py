"""The index zoo's one model (tests/test_index_zoo.py): a tenant table with no declared
index, so every index on it is the zoo case's own. Installed only inside that test
(``override_settings(INSTALLED_APPS=...)``); each case creates the table itself, one copy
per schema, so the app has no migrations."""

from __future__ import annotations

from django.db import models


class Zoo(models.Model):
    tenant_id = models.BigIntegerField()
    status = models.TextField()

    class Meta:
        app_label = "zooapp"
        db_table = "zoo"

    def __str__(self) -> str:
        return f"zoo {self.pk}"
