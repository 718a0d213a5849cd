"""Index advisor benchmark: what each suggestion buys, and what the advisor costs.

Setup (reused by later runs with the same ``--tickets``): the help desk's tables with
``--tickets`` tickets (and a tenth as many customers, files, audit log rows and usage metrics)
over 2,000 Zipf-skewed tenants, and the planted problems of the advisor's tests: two tables
whose tenant index is dropped (missing ``(tenant_id, action)`` and ``(tenant_id, metric)``),
``files`` indexed on ``(created_at, tenant_id)`` (wrong leading column), a post-filter on
``customers.email`` and a sort on ``tickets.created_at``. Then, in one run:

* the workload (5 planted and 5 well-served statements, ``--calls`` times each) and enough
  other distinct statements to hold ``--statements`` entries in ``pg_stat_statements``;
* **read**: one ``SELECT`` of every ``pg_stat_statements`` row of the database, best of
  ``--repeat``; **advisor**: ``suggest_tenant_indexes()`` (planning every tenant statement
  for a typical and the largest tenant; hypopg when installed), best of ``--repeat``; the ratio
  (target: under 10x);
* per suggestion: its statements' median time for a typical tenant over ``--runs`` runs,
  without and with the suggested index really built, and the ratio.

    .venv-django5.2/bin/python benchmarks/bench_advisor.py                     # embedded PG 18
    .venv-django5.2/bin/python benchmarks/bench_advisor.py --tickets 200000    # quicker
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ti_bench_advisor \\
        .venv-django5.2/bin/python benchmarks/bench_advisor.py                 # another server
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Any

import _common

TENANTS = 2000
PLANTED = [
    ("SELECT id FROM audit_logs WHERE tenant_id = %s AND action = %s", "action7"),
    (
        "SELECT sum(value) FROM tenant_usage_metrics WHERE tenant_id = %s AND metric = %s",
        "api_calls",
    ),
    ("SELECT id FROM files WHERE tenant_id = %s AND created_at >= %s", "2000-01-01"),
    ("SELECT id FROM customers WHERE tenant_id = %s AND email = %s", "c5@x"),
    ("SELECT id, subject FROM tickets WHERE tenant_id = %s ORDER BY created_at DESC LIMIT %s", 20),
]
SERVED = [
    ("SELECT id FROM tickets WHERE tenant_id = %s AND status = %s", "open"),
    ("SELECT count(*) FROM users WHERE tenant_id = %s", None),
    ("SELECT id FROM customers WHERE tenant_id = %s AND status = %s", "active"),
    ("SELECT id FROM integration_credentials WHERE tenant_id = %s", None),
    ("SELECT count(*) FROM messages WHERE tenant_id = %s", None),
]


def tenant(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def helpdesk_tables() -> list[str]:
    """The help desk's tables, in the order of its models."""
    from django.apps import apps

    return [m._meta.db_table for m in apps.get_app_config("tenant_indexes_helpdesk").get_models()]


def seed(cursor: Any, tickets: int) -> None:
    small = max(tickets // 10, 1000)
    # Zipf-like tenant sizes: tenant k gets a share proportional to 1/k.
    spread = (
        "CREATE TEMP TABLE spread AS SELECT g, ('00000000-0000-0000-0000-' || lpad("
        f"(1 + floor(exp(random() * ln({TENANTS}))))::int::text, 12, '0'))::uuid AS tenant"
        " FROM generate_series(1, {n}) g"
    )
    statements = [
        "TRUNCATE " + ", ".join(helpdesk_tables()) + " CASCADE",
        "INSERT INTO tenants (id, name, slug, created_at) SELECT ('00000000-0000-0000-0000-' ||"
        f" lpad(g::text, 12, '0'))::uuid, 't' || g, 't' || g, now()"
        f" FROM generate_series(1, {TENANTS + 1}) g",
        spread.format(n=tickets),
        "INSERT INTO customers (tenant_id, name, email, status, created_at) SELECT tenant, 'c',"
        " 'c' || g || '@x', CASE WHEN g % 10 = 0 THEN 'inactive' ELSE 'active' END, now()"
        f" FROM spread WHERE g <= {small}",
        "INSERT INTO tickets (tenant_id, customer_id, subject, status, priority, created_at,"
        " updated_at) SELECT s.tenant, (SELECT min(id) FROM customers), 's',"
        " (ARRAY['open','pending','resolved','closed'])[1 + s.g % 4], 'normal',"
        " now() - s.g * interval '1 second', now() FROM spread s",
        "INSERT INTO users (tenant_id, email, name, role, is_active, created_at)"
        f" SELECT tenant, g || '@x', '', 'agent', true, now() FROM spread WHERE g <= {small}",
        "INSERT INTO files (tenant_id, name, size, content_type, storage_key, created_at)"
        " SELECT tenant, 'f', 1, 'text/plain', 'k' || g, now() - g * interval '1 minute'"
        f" FROM spread WHERE g <= {small}",
        "INSERT INTO integration_credentials (tenant_id, provider, label, secret_ref,"
        " created_at) SELECT tenant, 'slack', '', 'r' || g, now() FROM spread WHERE g <= 5000",
        "INSERT INTO audit_logs (tenant_id, action, actor, target_type, target_id, metadata,"
        " created_at) SELECT tenant, 'action' || (g % 50), 'a', 't', g::text, '{}', now()"
        f" FROM spread WHERE g <= {small}",
        "INSERT INTO tenant_usage_metrics (tenant_id, metric, value, period_start, period_end)"
        " SELECT tenant, (ARRAY['tickets','messages','storage_bytes','api_calls'])[1 + g % 4],"
        f" g, current_date, current_date FROM spread WHERE g <= {small}",
        "DROP INDEX IF EXISTS idx_audit_logs_tenant_id",
        "DROP INDEX IF EXISTS idx_usage_metrics_tenant_id",
        "DROP INDEX IF EXISTS idx_files_tenant_id",
        "CREATE INDEX IF NOT EXISTS files_created_tenant ON files (created_at, tenant_id)",
        "DROP TABLE spread",
        "ANALYZE",
    ]
    for sql in statements:
        cursor.execute(sql)


def fillers(count: int) -> list[str]:
    """Distinct statements (distinct query ids): tables x target-list lengths x depth."""
    out = []
    for table in helpdesk_tables():
        for width in range(1, 61):
            for depth in range(10):
                # A different expression per depth, so every statement has its own query id.
                expression = (
                    "id" + " + 0" * depth if table != "tenants" else "name" + " || ''" * depth
                )
                targets = ", ".join([expression] * width)
                out.append(f"SELECT {targets} FROM {table} WHERE id IS NULL")
    return out[:count]


def workload(cursor: Any, calls: int, filler_count: int) -> None:
    cursor.execute(
        "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
        " WHERE datname = current_database()), 0)"
    )
    for run in range(calls):
        who = tenant(50 + run % 500)
        for sql, value in PLANTED + SERVED:
            cursor.execute(sql, [who] if value is None else [who, value])
            cursor.fetchall()
    for sql in fillers(filler_count):
        cursor.execute(sql)
        cursor.fetchall()


def median_ms(cursor: Any, sql: str, args: list[Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        cursor.execute(sql, args)
        cursor.fetchall()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=2_000_000)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--statements", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    _common.configure("tenant_indexes_bench_advisor", apps=("tenant_indexes.helpdesk",))
    from django.core.management import call_command
    from django.db import connection

    from tenant_indexes.advisor import suggest_tenant_indexes
    from tenant_indexes.verification import index_sql

    call_command("migrate", "tenant_indexes_helpdesk", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        cursor.execute("SELECT count(*) FROM tickets")
        if cursor.fetchone()[0] != options.tickets:
            started = time.perf_counter()
            seed(cursor, options.tickets)
            print(f"seeded {options.tickets:,} tickets in {time.perf_counter() - started:.1f} s")
        cursor.execute("SELECT current_setting('pg_stat_statements.max')::int")
        capacity = cursor.fetchone()[0]
        fill = max(0, min(options.statements, capacity) - len(PLANTED) - len(SERVED) - 20)
        workload(cursor, options.calls, fill)
        cursor.execute(
            "SELECT count(*) FROM pg_stat_statements WHERE dbid ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        held = cursor.fetchone()[0]

    print(f"machine: {_common.machine()}, {platform.platform()}")
    version = _common.server_version()
    print(f"PostgreSQL {version}; {options.tickets:,} tickets; {held:,} statements held")

    read_times, advisor_times = [], []
    report = None
    for _ in range(options.repeat):
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(
                "SELECT queryid, query, calls, mean_exec_time FROM pg_stat_statements"
                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            cursor.fetchall()
            read_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        report = suggest_tenant_indexes("default", ["tenant_indexes_helpdesk"])
        advisor_times.append(time.perf_counter() - started)
    assert report is not None
    read, advisor = min(read_times), min(advisor_times)
    print(
        f"read pg_stat_statements once: {read * 1000:.1f} ms; advisor: {advisor * 1000:.1f} ms"
        f" ({report.tenant_statements} tenant statements, {len(report.suggestions)}"
        f" suggestions, hypopg: {report.hypopg}); ratio {advisor / read:.1f}x (target < 10x)"
    )
    print()
    print(f"{'suggestion':58} {'before ms':>10} {'after ms':>10} {'ratio':>7}")
    by_text = {normalised(sql): (sql, value) for sql, value in PLANTED + SERVED}
    who = tenant(300)
    with connection.cursor() as cursor:
        for s in report.suggestions:
            for st in s.statements:
                if st.query not in by_text:
                    continue
                sql, value = by_text[st.query]
                args = [who] if value is None else [who, value]
                before = median_ms(cursor, sql, args, options.runs)
                cursor.execute(index_sql(s, s.name))
                try:
                    after = median_ms(cursor, sql, args, options.runs)
                finally:
                    cursor.execute(f"DROP INDEX {s.name}")
                label = f"{s.table} ({', '.join(s.columns)})"
                print(f"{label:58} {before:10.3f} {after:10.3f} {before / after:6.1f}x")


def normalised(sql: str) -> str:
    """The text pg_stat_statements keeps: parameters as $1, $2, ..."""
    parts = sql.split("%s")
    return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, 1))


if __name__ == "__main__":
    main()
