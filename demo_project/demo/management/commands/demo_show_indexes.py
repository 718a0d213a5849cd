"""Print the live indexes of the seed's tables, as the seed's verification query does."""

from django.core.management.base import BaseCommand
from django.db import connection

from demo_project.demo.datagen import TABLES

SEED_TABLES = list(TABLES)


class Command(BaseCommand):
    help = "Print the live indexes of the seed's tables (pg_indexes + pg_index.indisvalid)."

    def handle(self, *args, **options):
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT i.tablename, i.indexname, x.indisvalid, i.indexdef
                  FROM pg_indexes i
                  JOIN pg_index x ON x.indexrelid = to_regclass(
                       quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))
                 WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s)
                 ORDER BY i.tablename, i.indexname
                """,
                [SEED_TABLES],
            )
            rows = cursor.fetchall()
        width = max(len(r[1]) for r in rows)
        for table, name, valid, definition in rows:
            state = self.style.SUCCESS("valid") if valid else self.style.ERROR("INVALID")
            columns = definition[definition.index("(") :]
            self.stdout.write(f"{table:<24} {name:<{width}} {state:<5} {columns}")
