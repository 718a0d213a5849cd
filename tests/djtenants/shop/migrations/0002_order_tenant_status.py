from django.db import migrations, models

from tenant_indexes.operations import AddIndexConcurrently


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("djt_shop", "0001_initial")]

    operations = [
        AddIndexConcurrently(
            model_name="order",
            index=models.Index(fields=["tenant_id", "status"], name="order_tenant_status"),
        ),
    ]
