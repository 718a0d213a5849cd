import django.db.models.deletion
from django.db import migrations, models

import tenant_indexes.fields


class Migration(migrations.Migration):
    initial = True

    dependencies = [("tenant_indexes_helpdesk", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="BillingInvoice",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("number", models.CharField(max_length=20)),
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
            options={"db_table": '"billing"."invoice"'},
        ),
    ]
