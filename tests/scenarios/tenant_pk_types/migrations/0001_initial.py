# Tenant models with integer and UUID keys and the tables that point at them.

import uuid

import django.db.models.deletion
from django.db import migrations, models

import tenant_indexes.fields
import tenant_indexes.indexes


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Team",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("name", models.CharField(max_length=50)),
            ],
        ),
        migrations.CreateModel(
            name="Workspace",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=50)),
            ],
        ),
        migrations.CreateModel(
            name="Player",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("nickname", models.CharField(max_length=50)),
                (
                    "team",
                    tenant_indexes.fields.TenantForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        to="tenant_pk_types.team",
                    ),
                ),
            ],
            options={
                "indexes": [
                    tenant_indexes.indexes.TenantIndex(
                        fields=["nickname"], name="pk_player_team_nick"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="Board",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("title", models.CharField(max_length=50)),
                ("archived", models.BooleanField(default=False)),
                (
                    "workspace",
                    tenant_indexes.fields.TenantForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        to="tenant_pk_types.workspace",
                    ),
                ),
            ],
            options={
                "indexes": [
                    tenant_indexes.indexes.TenantIndex(
                        fields=["archived"], name="pk_board_ws_archived"
                    )
                ],
            },
        ),
    ]
