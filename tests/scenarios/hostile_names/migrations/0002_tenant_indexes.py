# Both indexes concurrently: atomic = False.

from django.db import migrations

import tenant_indexes.indexes
from tenant_indexes.operations import AddIndexConcurrently
from tests.scenarios.hostile_names.names import INJECTION, SPACED


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("hostile_names", "0001_initial")]

    operations = [
        AddIndexConcurrently(
            model_name="hostilerow",
            index=tenant_indexes.indexes.TenantIndex(
                fields=["n"],
                tenant_field="tenant_id",
                name=INJECTION,
            ),
        ),
        AddIndexConcurrently(
            model_name="hostilerow",
            index=tenant_indexes.indexes.TenantIndex(
                fields=["id"], tenant_field="tenant_id", name=SPACED
            ),
        ),
    ]
