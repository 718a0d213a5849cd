from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="IndexUsageSnapshot",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("recorded_at", models.DateTimeField(db_index=True)),
                ("database", models.CharField(max_length=100)),
                ("schema_name", models.CharField(max_length=63)),
                ("table_name", models.CharField(max_length=63)),
                ("index_name", models.CharField(max_length=63)),
                ("idx_scan", models.BigIntegerField()),
                ("idx_tup_read", models.BigIntegerField()),
                ("idx_tup_fetch", models.BigIntegerField()),
                ("size_bytes", models.BigIntegerField()),
                ("stats_reset", models.DateTimeField(null=True)),
                ("postmaster_start", models.DateTimeField()),
                ("in_recovery", models.BooleanField()),
            ],
            options={
                "db_table": "tenant_indexes_usage_snapshot",
                "indexes": [
                    models.Index(
                        fields=["database", "schema_name", "index_name", "recorded_at"],
                        name="tenant_indexes_usage_idx",
                    )
                ],
            },
        ),
    ]
