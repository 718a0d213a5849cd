"""Benchmark: a tenant index on a hash-partitioned table with a live writer, plain vs ours.

``events`` (``--rows`` rows, default 2,000,000) is partitioned by ``HASH (tenant_id)`` into
``--partitions`` partitions (default 16). The index ``(tenant_id, status)`` is built twice
while a writer thread inserts one row per transaction:

* **plain**: ``CREATE INDEX`` on the parent (what PostgreSQL allows without CONCURRENTLY):
  every partition is locked against writes until the whole build ends;
* **ours**: ``tenant_indexes.build.build_index_concurrently()``, which on a partitioned table
  creates the parent index ``ON ONLY``, builds each partition's concurrently and attaches it
  (``tenant_indexes/partitions.py``).

Prints, for each way, the build's wall time, the writer's longest stall, its median and p99
insert latency and the inserts that completed during the build; then the ratios and the
machine. Not part of the test run: timings depend on the machine.

    .venv-django5.2/bin/python benchmarks/bench_partitioned_build.py            # embedded PG 16
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ti_bench_parts \\
        .venv-django5.2/bin/python benchmarks/bench_partitioned_build.py --rows 2000000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_online_build import machine, nearest_rank

TABLE = "bench_events"
INDEX_NAME = "bench_events_tenant_status"


def configure() -> None:
    from _django import configure as configure_django

    configure_django("tenant_indexes_bench_parts", TENANT_INDEXES={"BUILD_PROGRESS": "off"})


def load_rows(rows: int, partitions: int, tenants: int) -> None:
    """The partitioned table and its rows, made afresh."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cursor.execute(
            f"CREATE TABLE {TABLE} (id bigserial, tenant_id int NOT NULL, status text NOT NULL,"
            " payload text) PARTITION BY HASH (tenant_id)"
        )
        for n in range(partitions):
            cursor.execute(
                f"CREATE TABLE {TABLE}_{n} PARTITION OF {TABLE} "
                f"FOR VALUES WITH (MODULUS {partitions}, REMAINDER {n})"
            )
        cursor.execute(
            f"INSERT INTO {TABLE} (tenant_id, status, payload) "
            "SELECT 1 + (g::bigint * 7919) %% %s, (ARRAY['open','pending','closed'])[1 + g %% 3], "
            "md5(g::text) FROM generate_series(1, %s) g",
            [tenants, rows],
        )
        cursor.execute(f"ANALYZE {TABLE}")


class Writer(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.latencies: list[tuple[float, float]] = []

    def run(self) -> None:
        from django.db import connections

        connection = connections["default"]
        with connection.cursor() as cursor:
            self.ready.set()
            n = 0
            while not self.stop_event.is_set():
                n += 1
                started = time.perf_counter()
                cursor.execute(
                    f"INSERT INTO {TABLE} (tenant_id, status, payload) VALUES (%s, 'open', 'w')",
                    [1 + n % 997],
                )
                finished = time.perf_counter()
                self.latencies.append((finished, finished - started))
                time.sleep(0.002)
        connection.close()


def event_model():
    from django.db import models
    from django.test.utils import isolate_apps

    @isolate_apps("tenant_indexes")
    def make():
        class Event(models.Model):
            tenant_id = models.IntegerField()
            status = models.TextField()

            class Meta:
                app_label = "tenant_indexes"
                db_table = TABLE
                managed = False
                indexes = [models.Index(fields=["tenant_id", "status"], name=INDEX_NAME)]

            def __str__(self) -> str:
                return str(self.pk)

        return Event

    return make()


def build_once(way: str, model) -> dict[str, float]:
    from django.db import connection

    from tenant_indexes.build import build_index_concurrently

    (index,) = model._meta.indexes
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX IF EXISTS "{INDEX_NAME}"')
    writer = Writer()
    writer.start()
    writer.ready.wait(10)
    time.sleep(0.5)
    started = time.perf_counter()
    with connection.schema_editor(atomic=False) as editor:
        if way == "plain":
            editor.add_index(model, index)
        else:
            build_index_concurrently(editor, model, index)
    finished = time.perf_counter()
    time.sleep(0.3)
    writer.stop_event.set()
    writer.join(30)
    during = [lat for at, lat in writer.latencies if started <= at <= finished + 0.05]
    stalls = [lat for at, lat in writer.latencies if at >= started]
    return {
        "build_s": finished - started,
        "max_stall_ms": max(stalls) * 1000 if stalls else float("nan"),
        "median_ms": statistics.median(during) * 1000 if during else float("nan"),
        "p99_ms": nearest_rank(during, 0.99) * 1000 if during else float("nan"),
        "inserts_during": len(during),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    configure()
    from django.db import connection

    load_rows(args.rows, args.partitions, args.tenants)
    model = event_model()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    print(f"Machine: {machine()}; PostgreSQL {version}")
    print(
        f"{TABLE}: {args.rows:,} rows in {args.partitions} hash partitions over "
        f"{args.tenants:,} tenants; index {INDEX_NAME} (tenant_id, status)"
    )
    print(f"median of {args.repeat} build(s) per way, a writer inserting one row per transaction")
    results: dict[str, list[dict[str, float]]] = {"plain": [], "ours": []}
    for _ in range(args.repeat):
        for way in results:
            results[way].append(build_once(way, model))
    print(
        f"{'way':<8}{'build s':>9}{'longest stall ms':>18}{'median ms':>11}{'p99 ms':>9}"
        f"{'inserts during build':>22}"
    )
    summary: dict[str, dict[str, float]] = {}
    for way, runs in results.items():
        summary[way] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        s = summary[way]
        print(
            f"{way:<8}{s['build_s']:>9.2f}{s['max_stall_ms']:>18.1f}{s['median_ms']:>11.2f}"
            f"{s['p99_ms']:>9.2f}{int(s['inserts_during']):>22,}"
        )
    plain, ours = summary["plain"], summary["ours"]
    print(
        f"ours/plain build time: {ours['build_s'] / plain['build_s']:.2f}x (target <= 2x); "
        f"longest writer stall: plain {plain['max_stall_ms']:.0f} ms vs ours "
        f"{ours['max_stall_ms']:.0f} ms ({ours['max_stall_ms'] / plain['max_stall_ms']:.3f} of "
        "plain, target <= 0.05)"
    )


if __name__ == "__main__":
    main()
