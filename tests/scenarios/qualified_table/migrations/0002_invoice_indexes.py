from django.db import migrations, models

import tenant_indexes.indexes
import tenant_indexes.operations
import tenant_indexes.safe_changes


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("qualified_table", "0001_initial")]

    operations = [
        tenant_indexes.operations.AddIndexConcurrently(
            model_name="billinginvoice",
            index=tenant_indexes.indexes.TenantIndex(
                fields=["status"], name="invoice_tenant_status"
            ),
        ),
        tenant_indexes.safe_changes.AddUniqueConstraintConcurrently(
            model_name="billinginvoice",
            constraint=models.UniqueConstraint(
                fields=("tenant", "number"), name="invoice_tenant_number"
            ),
        ),
    ]
