# Test models built from the public building blocks.

import django.db.models.deletion
from django.db import migrations, models

import tenant_indexes.fields
import tenant_indexes.indexes


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("tenant_indexes_helpdesk", "0002_tenant_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="Invoice",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("number", models.CharField(max_length=32)),
                ("paid", models.BooleanField(default=False)),
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
                "abstract": False,
                "indexes": [
                    tenant_indexes.indexes.TenantIndex(
                        fields=["paid", "-number"], name="testapp_inv_tenant__3911d9_idx"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="Order",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("number", models.CharField(max_length=32)),
                ("status", models.CharField(default="new", max_length=16)),
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
                "abstract": False,
                "indexes": [
                    tenant_indexes.indexes.TenantIndex(name="testapp_ord_tenant__39ff50_idx")
                ],
            },
        ),
        migrations.CreateModel(
            name="Shipment",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("carrier", models.CharField(max_length=32)),
                (
                    "account",
                    tenant_indexes.fields.TenantForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        to="tenant_indexes_helpdesk.tenant",
                    ),
                ),
            ],
            options={
                "indexes": [
                    tenant_indexes.indexes.TenantIndex(
                        fields=["carrier"], name="shipment_acct", tenant_field="account"
                    )
                ],
            },
        ),
    ]
