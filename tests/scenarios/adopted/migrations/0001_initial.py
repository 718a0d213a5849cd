import django.db.models.deletion
from django.db import migrations, models

import tenant_indexes.fields
import tenant_indexes.indexes


class Migration(migrations.Migration):
    initial = True

    dependencies = [("tenant_indexes_helpdesk", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Ticket",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("status", models.CharField(max_length=20)),
                (
                    "tenant",
                    tenant_indexes.fields.TenantForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        to="tenant_indexes_helpdesk.tenant",
                    ),
                ),
            ],
            options={
                "db_table": "adopted_tickets",
                "indexes": [
                    tenant_indexes.indexes.TenantIndex(
                        fields=["status"], name="adopted_tickets_tenant_status"
                    )
                ],
            },
        ),
    ]
