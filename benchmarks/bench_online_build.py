"""Benchmark: building a tenant index while the application writes, plain vs concurrent.

The seed's ``idx_tickets_tenant_status (tenant_id, status)`` is built twice on the same
``tickets`` table (``--rows`` rows, default 1,000,000) while a writer thread inserts tickets
one per transaction, as an application would:

* **plain**: ``CREATE INDEX`` (what a migration without ``AddIndexConcurrently`` runs): it
  holds a SHARE lock, so every insert waits until the build ends;
* **concurrent**: ``tenant_indexes.build.build_index_concurrently()``, the retry-safe
  ``CREATE INDEX CONCURRENTLY`` that ``migrate`` runs for the seed indexes.

Prints, for each way, the build's wall time, the writer's longest stall, its median and p99
insert latency and how many inserts completed during the build; then the ratios and the
machine. Not part of the test run: timings depend on the machine.

    .venv-django5.2/bin/python benchmarks/bench_online_build.py                  # embedded PG 18
    createdb -h 127.0.0.1 -U postgres ti_bench_build   # DATABASE_URL must name an existing database
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ti_bench_build \\
        .venv-django5.2/bin/python benchmarks/bench_online_build.py --rows 2000000
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

INDEX_NAME = "idx_tickets_tenant_status"


def configure() -> None:
    from _django import configure as configure_django

    configure_django(
        "tenant_indexes_bench_build",
        apps=("tenant_indexes.helpdesk",),
        TENANT_INDEXES={"BUILD_PROGRESS": "off"},
    )


def load_rows(rows: int, tenants: int) -> None:
    """Tenants, one customer per tenant, ``rows`` tickets; reused when already there."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tickets")
        if cursor.fetchone()[0] == rows:
            return
        cursor.execute("TRUNCATE tickets, customers, tenants CASCADE")
        cursor.execute(
            "INSERT INTO tenants (id, name, slug, created_at)"
            " SELECT md5(i::text)::uuid, 'Tenant ' || i, 't' || i, now()"
            " FROM generate_series(1, %s) AS i",
            [tenants],
        )
        cursor.execute(
            "INSERT INTO customers (tenant_id, name, email, status, created_at)"
            " SELECT id, 'Customer', 'c@example.com', 'active', now() FROM tenants"
        )
        cursor.execute(
            "INSERT INTO tickets (tenant_id, customer_id, subject, status, priority,"
            " created_at, updated_at)"
            " SELECT c.tenant_id, c.id, 'Ticket ' || i,"
            " (ARRAY['open','pending','resolved','closed'])[1 + i %% 4], 'normal', now(), now()"
            " FROM generate_series(1, %s) AS i"
            " JOIN customers c ON c.id = (SELECT min(id) FROM customers) + i %% %s",
            [rows, tenants],
        )
        cursor.execute("VACUUM ANALYZE tickets")


class Writer(threading.Thread):
    """Inserts one ticket per transaction until stopped; records each insert's latency."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.latencies: list[tuple[float, float]] = []  # (finished at, seconds)

    def run(self) -> None:
        from django.db import connections

        connection = connections["default"]
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, tenant_id FROM customers ORDER BY id LIMIT 1")
            customer_id, tenant_id = cursor.fetchone()
            self.ready.set()
            while not self.stop_event.is_set():
                started = time.perf_counter()
                cursor.execute(
                    "INSERT INTO tickets (tenant_id, customer_id, subject, status, priority,"
                    " created_at, updated_at)"
                    " VALUES (%s, %s, 'written during the build', 'open', 'high', now(), now())",
                    [tenant_id, customer_id],
                )
                finished = time.perf_counter()
                self.latencies.append((finished, finished - started))
                time.sleep(0.002)  # an application's pace, not a flood
        connection.close()


def build_once(way: str) -> dict[str, float]:
    from django.db import connection

    from tenant_indexes.build import build_index_concurrently
    from tenant_indexes.helpdesk.models import Ticket

    (index,) = [ix for ix in Ticket._meta.indexes if ix.name == INDEX_NAME]
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX IF EXISTS "{INDEX_NAME}"')
    writer = Writer()
    writer.start()
    writer.ready.wait(10)
    time.sleep(0.5)  # steady state before the build
    started = time.perf_counter()
    with connection.schema_editor(atomic=False) as editor:
        if way == "plain":
            editor.add_index(Ticket, index)
        else:
            build_index_concurrently(editor, Ticket, index)
    finished = time.perf_counter()
    time.sleep(0.3)
    writer.stop_event.set()
    writer.join(30)
    # Inserts that finished during the build, plus the one that was waiting when it began.
    during = [lat for at, lat in writer.latencies if started <= at <= finished + 0.05]
    stalls = [lat for at, lat in writer.latencies if at >= started]
    return {
        "build_s": finished - started,
        "max_stall_ms": max(stalls) * 1000 if stalls else float("nan"),
        "median_ms": statistics.median(during) * 1000 if during else float("nan"),
        "p99_ms": nearest_rank(during, 0.99) * 1000 if during else float("nan"),
        "inserts_during": len(during),
    }


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    configure()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", "tenant_indexes_helpdesk", verbosity=0)
    load_rows(args.rows, args.tenants)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    print(f"Machine: {machine()}; PostgreSQL {version}")
    print(f"tickets: {args.rows:,} rows over {args.tenants:,} tenants; index {INDEX_NAME}")
    print(f"median of {args.repeat} builds per way, a writer inserting one ticket per transaction")
    results: dict[str, list[dict[str, float]]] = {"plain": [], "concurrent": []}
    for _ in range(args.repeat):
        for way in results:
            results[way].append(build_once(way))
    header = f"{'way':<12}{'build s':>9}{'longest stall ms':>18}{'median ms':>11}"
    print(header + f"{'p99 ms':>9}{'inserts during build':>22}")
    summary: dict[str, dict[str, float]] = {}
    for way, runs in results.items():
        summary[way] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        s = summary[way]
        print(
            f"{way:<12}{s['build_s']:>9.2f}{s['max_stall_ms']:>18.1f}{s['median_ms']:>11.2f}"
            f"{s['p99_ms']:>9.2f}{int(s['inserts_during']):>22,}"
        )
    plain, conc = summary["plain"], summary["concurrent"]
    stall_ratio = plain["max_stall_ms"] / conc["max_stall_ms"]
    print(
        f"concurrent/plain build time: {conc['build_s'] / plain['build_s']:.2f}x; "
        f"longest writer stall: plain {plain['max_stall_ms']:.0f} ms vs concurrent "
        f"{conc['max_stall_ms']:.0f} ms ({stall_ratio:.0f}x shorter)"
    )


if __name__ == "__main__":
    main()
