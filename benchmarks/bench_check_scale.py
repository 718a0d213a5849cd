"""Scale benchmark: check_tenant_indexes against per-table introspection at 2,000 tables.

Setup (once, reused by later runs): the seed's nine tables are created in each of
``--schemas`` schemas (default 250, i.e. 2,000 tenant-scoped tables and their 2,750 declared
tenant indexes plus primary keys and unique constraints) by Django's own schema editor, so
every index has its declared name. Then, side by side in one process:

* **check**: ``call_command("check_tenant_indexes", "--format", "json")`` with
  ``TENANT_INDEXES["CHECK_SCHEMAS"]`` naming the schemas: the whole command, declared side,
  one catalog pass, comparison and JSON rendering;
* **naive**: Django's ``connection.introspection.get_constraints()`` for every table (with a
  ``SET search_path`` per schema, since it only sees tables on the search_path). It only
  reads; it does not even compare.

Prints both times (best of ``--repeat``), the ratio, the SQL statements each issued and the
peak Python memory (tracemalloc) of each.

    .venv-django5.2/bin/python benchmarks/bench_check_scale.py            # embedded PG 18
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ti_bench \\
        .venv-django5.2/bin/python benchmarks/bench_check_scale.py        # another server
"""

from __future__ import annotations

import sys
import time
import tracemalloc

import _common


def measure(func, repeat: int):
    """Best wall time, statements issued and peak traced memory of ``func``.

    Timed runs count statements with an execute wrapper (cheap, unbounded, unlike the debug
    query log); peak memory comes from one more run under tracemalloc, which slows Python
    down and so is kept out of the timings.
    """
    from django.db import connection

    statements: list[str] = []

    def count(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    best = float("inf")
    per_run = 0
    result = None
    connection.ensure_connection()  # connecting is not what we measure
    for _ in range(repeat):
        statements.clear()
        with connection.execute_wrapper(count):
            started = time.perf_counter()
            result = func()
            elapsed = time.perf_counter() - started
        best = min(best, elapsed)
        per_run = len(statements)
    tracemalloc.start()
    func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, per_run, peak, result


def main() -> int:
    args = _common.scale_arguments(__doc__)
    _common.configure("tenant_indexes_bench", apps=("tenant_indexes.helpdesk",))

    from django.db import connection

    from tenant_indexes.declared import declared_tenant_tables

    schemas = _common.schema_names(args.schemas)
    print(f"setting up {len(schemas)} schemas ...")
    _common.setup_schemas(schemas)
    seed = declared_tenant_tables("default")
    tables = [(schema, t.table) for schema in schemas for t in seed]

    def check() -> dict:
        return _common.check_json({"CHECK_SCHEMAS": schemas})

    def naive() -> int:
        constraints = 0
        with connection.cursor() as cursor:
            for schema in schemas:
                cursor.execute(f"SET search_path TO {connection.ops.quote_name(schema)}")
                for t in seed:
                    constraints += len(connection.introspection.get_constraints(cursor, t.table))
            cursor.execute("RESET search_path")
        return constraints

    def small_check() -> dict:
        return _common.check_json({"CHECK_SCHEMAS": schemas[:1]})

    check()  # warm-up: imports, connection, plan caches
    c_time, c_statements, c_peak, report = measure(check, args.repeat)
    _, small_statements, _, _ = measure(small_check, 1)
    n_time, n_statements, n_peak, n_constraints = measure(naive, args.repeat)

    ratio = n_time / c_time
    print()
    _common.print_setting(f"{len(tables)} tenant tables in {len(schemas)} schemas")
    print(
        f"check_tenant_indexes: status {report['status']}, {len(report['indexes'])} declared "
        f"indexes, {len(report['findings'])} findings"
    )
    print(f"naive get_constraints: {n_constraints} constraints/indexes read")
    print()
    print(f"{'':24}{'time':>10}{'statements':>12}{'peak memory':>14}")
    print(
        f"{'check_tenant_indexes':24}{c_time * 1000:>8.0f}ms{c_statements:>12}"
        f"{c_peak / 2**10:>12.0f}kB"
    )
    print(
        f"{'per-table introspection':24}{n_time * 1000:>8.0f}ms{n_statements:>12}"
        f"{n_peak / 2**10:>12.0f}kB"
    )
    print(
        f"ratio: {ratio:.0f}x faster; statements with 8 tables: {small_statements}, "
        f"with {len(tables)}: {c_statements}"
    )
    targets = {
        "at least 50x faster": ratio >= 50,
        "constant statement count": small_statements == c_statements,
        "under 1 s at 2,000 tables": c_time < 1.0 or len(tables) < 2000,
    }
    for name, ok in targets.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
