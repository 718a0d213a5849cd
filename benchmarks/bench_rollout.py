"""Benchmark: one new tenant index rolled out to every tenant schema of a django-tenants project.

The project is the tests' django-tenants project (``tests/djtenants``: django-tenants'
backend and router, the shop as a tenant app), in a database of its own made afresh:
``migrate_schemas --shared``, ``make_tenants N`` (``--schemas``, default 1,000), the shop's
table in every schema (``migrate_schemas djt_shop 0001``, multiprocessing executor), then per
schema ``--tables`` - 1 more tenant tables (default 8 tables a schema, each with a tenant
index) and ``--rows`` rows in each table (small data). Then the shop's migration 0002 adds
one index, ``AddIndexConcurrently`` of ``(tenant_id, status)`` on ``shop_order``, two ways:

* **migrate_schemas**: ``manage.py migrate_schemas --noinput``, django-tenants' standard
  executor: the migration in one schema after the other, each build concurrent;
* **repair --jobs 4**: the index dropped again in every schema (the migration stays
  applied), then ``manage.py repair_tenant_indexes --jobs 4``: one catalog pass over every
  schema, then the missing builds four schemas at a time;
* **migrate_schemas, multiprocessing**: the migration unapplied again (untimed), then
  ``manage.py migrate_schemas --executor=multiprocessing --noinput`` (django-tenants' pool,
  one process per core by default).

Both run as subprocesses (Django's start-up included in both). Prints both wall times, the
ratio and the machine, and checks that every schema ends with a valid index. Not part of the
test run: timings depend on the machine.

    .venv-django5.2/bin/python benchmarks/bench_rollout.py --schemas 1000     # embedded PG 18
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ti_bench \\
        .venv-django5.2/bin/python benchmarks/bench_rollout.py                # another server
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "ti_bench_rollout"
INDEX = "order_tenant_status"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schemas", type=int, default=1000, help="tenant schemas")
    parser.add_argument("--tables", type=int, default=8, help="tenant tables a schema")
    parser.add_argument("--rows", type=int, default=50, help="rows a table")
    parser.add_argument("--jobs", type=int, default=4, help="repair_tenant_indexes --jobs")
    return parser.parse_args()


class Project:
    """The django-tenants project, run by ``manage.py`` against the benchmark's database."""

    def __init__(self, settings: dict) -> None:
        keys = ("USER", "HOST", "PASSWORD", "PORT", "OPTIONS")  # OPTIONS: the embedded socket
        entry = {k: settings[k] for k in keys if settings.get(k)}
        entry.update(ENGINE="django.db.backends.postgresql", NAME=DATABASE)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.djtenants.settings",
            "TENANT_INDEXES_SCENARIO_DB": json.dumps(entry),
            "PYTHONPATH": str(ROOT),
        }

    def run(self, *args: str) -> float:
        """Run ``manage.py args``; its wall time. A non-zero exit stops the benchmark."""
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return elapsed


def recreate_database() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{DATABASE}"')


def rollout_connection():
    from django.db import connection
    from django.db.backends.postgresql.base import DatabaseWrapper

    return DatabaseWrapper({**connection.settings_dict, "NAME": DATABASE}, alias="rollout")


def fill_schemas(db, schemas: list[str], tables: int, rows: int) -> None:
    """Per schema, one batch: the extra tenant tables with their tenant index, and rows."""
    with db.cursor() as cursor:
        for n, schema in enumerate(schemas, 1):
            statements = [f'SET search_path TO "{schema}"']
            for t in range(1, tables):
                statements.append(
                    f"CREATE TABLE shop_extra_{t} (id bigserial PRIMARY KEY, tenant_id bigint "
                    f"NOT NULL, status varchar(16) NOT NULL DEFAULT 'new');"
                    f"CREATE INDEX shop_extra_{t}_tenant ON shop_extra_{t} (tenant_id);"
                    f"INSERT INTO shop_extra_{t} (tenant_id) "
                    f"SELECT g FROM generate_series(1, {rows}) g"
                )
            statements.append(
                "INSERT INTO shop_order (tenant_id, status) SELECT g, "
                f"(ARRAY['new','paid','sent'])[1 + g % 3] FROM generate_series(1, {rows}) g"
            )
            cursor.execute(";".join(statements))
            if n % 200 == 0:
                print(f"  filled {n}/{len(schemas)} schemas")
        cursor.execute("RESET search_path")
        cursor.execute("ANALYZE")


def valid_copies(db) -> int:
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE i.relname = %s AND x.indisvalid",
            [INDEX],
        )
        return int(cursor.fetchone()[0])


def main() -> int:
    args = arguments()
    _common.configure("ti_bench_rollout_admin")
    from django.db import connection

    schemas = [f"tenant_{n:03d}" for n in range(1, args.schemas + 1)]
    project = Project(connection.settings_dict)
    print(f"setting up {len(schemas)} schemas x {args.tables} tables ...")
    started = time.perf_counter()
    recreate_database()
    project.run("migrate_schemas", "--shared", "--noinput")
    project.run("make_tenants", str(len(schemas)))
    project.run("migrate_schemas", "djt_shop", "0001", "--executor=multiprocessing", "--noinput")
    db = rollout_connection()
    fill_schemas(db, schemas, args.tables, args.rows)
    print(f"  set up in {time.perf_counter() - started:.0f}s")

    migrate_s = project.run("migrate_schemas", "--noinput")
    after_migrate = valid_copies(db)
    with db.cursor() as cursor:
        cursor.execute(";".join(f'DROP INDEX "{s}"."{INDEX}"' for s in schemas))
    assert valid_copies(db) == 0
    repair_s = project.run("repair_tenant_indexes", "--jobs", str(args.jobs))
    after_repair = valid_copies(db)
    project.run("migrate_schemas", "djt_shop", "0001", "--executor=multiprocessing", "--noinput")
    assert valid_copies(db) == 0
    pool_s = project.run("migrate_schemas", "--executor=multiprocessing", "--noinput")
    after_pool = valid_copies(db)

    print()
    _common.print_setting(
        f"django-tenants, {len(schemas)} tenant schemas x {args.tables} tables, "
        f"{args.rows} rows a table; one new index ({INDEX}) in every schema"
    )
    print(f"{'way':<44}{'wall s':>9}{'valid copies':>14}")
    print(f"{'migrate_schemas (standard executor)':<44}{migrate_s:>9.1f}{after_migrate:>14}")
    print(f"{f'repair_tenant_indexes --jobs {args.jobs}':<44}{repair_s:>9.1f}{after_repair:>14}")
    print(f"{'migrate_schemas --executor=multiprocessing':<44}{pool_s:>9.1f}{after_pool:>14}")
    print(f"ratio migrate_schemas / repair: {migrate_s / repair_s:.1f}x")
    print(f"ratio migrate_schemas multiprocessing / repair: {pool_s / repair_s:.1f}x")
    db.close()
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    ok = after_migrate == after_repair == after_pool == len(schemas)
    print(f"  {'PASS' if ok else 'FAIL'}  every schema has a valid copy after each way")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
