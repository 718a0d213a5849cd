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

import _common

TABLE = "bench_events"
INDEX_NAME = "bench_events_tenant_status"


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
    (index,) = model._meta.indexes
    writer = _common.Writer(
        f"INSERT INTO {TABLE} (tenant_id, status, payload) VALUES (%s, 'open', 'w')",
        lambda n: [1 + n % 997],
    )
    return _common.build_under_writer(way, model, index, writer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    _common.configure("tenant_indexes_bench_parts", TENANT_INDEXES=_common.QUIET_BUILDS)
    load_rows(args.rows, args.partitions, args.tenants)
    model = event_model()
    print(f"Machine: {_common.machine()}; PostgreSQL {_common.server_version()}")
    print(
        f"{TABLE}: {args.rows:,} rows in {args.partitions} hash partitions over "
        f"{args.tenants:,} tenants; index {INDEX_NAME} (tenant_id, status)"
    )
    print(f"median of {args.repeat} build(s) per way, a writer inserting one row per transaction")
    results: dict[str, list[dict[str, float]]] = {"plain": [], "ours": []}
    for _ in range(args.repeat):
        for way in results:
            results[way].append(build_once(way, model))
    summary = _common.print_builds(results)
    plain, ours = summary["plain"], summary["ours"]
    print(
        f"ours/plain build time: {ours['build_s'] / plain['build_s']:.2f}x (target <= 2x); "
        f"longest writer stall: plain {plain['max_stall_ms']:.0f} ms vs ours "
        f"{ours['max_stall_ms']:.0f} ms ({ours['max_stall_ms'] / plain['max_stall_ms']:.3f} of "
        "plain, target <= 0.05)"
    )


if __name__ == "__main__":
    main()
