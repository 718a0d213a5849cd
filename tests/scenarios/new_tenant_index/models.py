"""A user's app after editing models.py: a new field, two new tenant indexes, a new model.

``0001_initial`` has ``Article`` without ``published`` and without indexes, and no ``Tag``.
"""

from django.db import models

from tenant_indexes import TenantForeignKey, TenantIndex


class Article(models.Model):
    tenant = TenantForeignKey()
    title = models.CharField(max_length=100)
    published = models.BooleanField(default=False)

    class Meta:
        db_table = "scenario_articles"
        indexes = [
            TenantIndex(name="scenario_articles_tenant"),
            TenantIndex(fields=["published"], name="scenario_articles_tenant_pub"),
        ]

    def __str__(self) -> str:
        return self.title


class Tag(models.Model):
    tenant = TenantForeignKey()
    label = models.CharField(max_length=50)

    class Meta:
        db_table = "scenario_tags"
        indexes = [TenantIndex(name="scenario_tags_tenant")]

    def __str__(self) -> str:
        return self.label
