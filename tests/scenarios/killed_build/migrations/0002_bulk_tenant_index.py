# The build the tests kill: CONCURRENTLY needs atomic = False.

from django.db import migrations

import tenant_indexes.indexes
from tenant_indexes.operations import AddIndexConcurrently


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("killed_build", "0001_initial")]

    operations = [
        AddIndexConcurrently(
            model_name="bulkrow",
            index=tenant_indexes.indexes.TenantIndex(
                fields=["n"], tenant_field="tenant_id", name="scenario_bulk_tenant_n"
            ),
        ),
    ]
