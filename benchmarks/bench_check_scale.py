"""Scale benchmark: check_tenant_indexes over many schemas, against one raw catalog query.

Setup (once, reused by later runs): the seed's nine tables are created in each of
``--schemas`` schemas (default 250, i.e. 2,000 tenant-scoped tables and their 2,750 declared
tenant indexes plus primary keys and unique constraints) from the DDL Django's schema editor
writes for them (collected once, then run for many schemas per statement batch), so every
index has its declared name. Then, side by side in one process:

* **check**: ``call_command("check_tenant_indexes", "--format", "json")`` with
  ``TENANT_INDEXES["CHECK_SCHEMAS"]`` naming the schemas: the whole command, declared side,
  one catalog pass, comparison and JSON rendering, written to a stdout that keeps nothing
  (the document is parsed once, untimed, for the summary line);
* **raw query**: one catalog statement that reads every index of those schemas with its
  definition and validity (:data:`RAW_SQL`), fetched: the floor of what any check must read;
* **naive** (up to 250 schemas, ``--naive`` to force it): Django's
  ``connection.introspection.get_constraints()`` for every table (with a ``SET search_path``
  per schema, since it only sees tables on the search_path). It only reads.

Prints the times (best of ``--repeat`` rounds, each round running every side once, so a
busy spell of a shared machine falls on all of them), the ratios, the SQL statements each
issued (the check's at one schema and at all), the peak Python memory (tracemalloc) and the
peak RSS of a process that only runs the check once (a subprocess of this script,
``--rss-only``). "in SQL" is the time spent in ``execute()``: the check reads its rows
through server-side cursors, so its rows arrive with the fetches after it, outside that
figure.

    .venv-django5.2/bin/python benchmarks/bench_check_scale.py            # embedded PG 18
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ti_bench \\
        .venv-django5.2/bin/python benchmarks/bench_check_scale.py        # another server
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
import tracemalloc

import _common


def timed_run(func) -> tuple[float, int, float]:
    """One run of ``func``: wall time, statements issued and the time spent in them.

    Statements are counted with an execute wrapper (cheap, unbounded, unlike the debug
    query log); the time in SQL excludes the rows fetched after the statement returned.
    """
    from django.db import connection

    statements = 0
    in_sql = 0.0

    def count(execute, sql, params, many, context):
        nonlocal statements, in_sql
        statements += 1
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            in_sql += time.perf_counter() - began

    connection.ensure_connection()  # connecting is not what we measure
    with connection.execute_wrapper(count):
        started = time.perf_counter()
        func()
        elapsed = time.perf_counter() - started
    return elapsed, statements, in_sql


def peak_memory(func) -> int:
    """Peak traced Python memory of one more run (tracemalloc slows Python down, so it is
    kept out of the timings)."""
    tracemalloc.start()
    func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def best_of_alternating(funcs: dict, repeat: int) -> dict:
    """The best run of each of ``funcs`` over ``repeat`` rounds, one run of each per round
    (so that a slower or faster spell of a shared machine falls on both sides alike)."""
    best: dict = {}
    for _ in range(repeat):
        for name, func in funcs.items():
            run = timed_run(func)
            if name not in best or run[0] < best[name][0]:
                best[name] = run
    return best


RAW_SQL = """
    SELECT n.nspname, t.relname, i.relname, pg_get_indexdef(x.indexrelid), x.indisvalid
      FROM pg_index x
      JOIN pg_class i ON i.oid = x.indexrelid
      JOIN pg_class t ON t.oid = x.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
     WHERE n.nspname = ANY(%s)
"""

NAIVE_UP_TO = 250  # schemas; beyond, per-table introspection takes minutes a run


def fast_setup_schemas(schemas: list[str], batch: int = 20) -> None:
    """Like ``_common.setup_schemas``, faster: the help desk's DDL collected once from the
    schema editor (names unqualified), then ``CREATE SCHEMA``, ``SET LOCAL search_path`` and
    that DDL for ``batch`` schemas per statement, one transaction each."""
    from django.apps import apps
    from django.core.management import call_command
    from django.db import connection, transaction

    call_command("migrate", verbosity=0)
    models = list(apps.get_app_config("tenant_indexes_helpdesk").get_models())
    with connection.schema_editor(collect_sql=True, atomic=False) as editor:
        for model in models:
            editor.create_model(model)
    ddl = "\n".join(editor.collected_sql)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
            [_common.SCHEMA_PREFIX + "%"],
        )
        existing = {row[0] for row in cursor.fetchall()}
    todo = [s for s in schemas if s not in existing]
    started = time.perf_counter()
    for n in range(0, len(todo), batch):
        sql = "".join(
            f'CREATE SCHEMA "{s}"; SET LOCAL search_path TO "{s}";\n{ddl}\n'
            for s in todo[n : n + batch]
        )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
        if (n + batch) % 1000 < batch:
            done = min(n + batch, len(todo))
            print(f"  created {done}/{len(todo)} schemas ({time.perf_counter() - started:.0f}s)")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    if todo:
        print(f"  created {len(todo)} schemas in {time.perf_counter() - started:.0f}s")


def peak_rss_kb() -> int:
    """This process's peak RSS (``VmHWM``, kB). Not ``getrusage``: on Linux its
    ``ru_maxrss`` survives ``exec``, so a subprocess would start with its parent's peak."""
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class _Discard:
    """A stdout that keeps nothing: the RSS measured is the command's, not a harness's copy
    of its JSON document."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def check_to_nowhere(config: dict) -> None:
    """``check_tenant_indexes --format json`` with ``TENANT_INDEXES = config``, its output
    thrown away (a non-zero exit is printed to stderr)."""
    from django.core.management import CommandError, call_command
    from django.test import override_settings

    with override_settings(TENANT_INDEXES=config):
        try:
            call_command("check_tenant_indexes", "--format", "json", stdout=_Discard())
        except CommandError as e:
            print(f"check exited {e.returncode}: {e}", file=sys.stderr)


def check_rss(count: int) -> tuple[int, int]:
    """Peak RSS (kB) of a fresh process after set-up and after one check of ``count``
    schemas: this script with ``--rss-only``."""
    result = subprocess.run(
        [sys.executable, __file__, "--schemas", str(count), "--rss-only"],
        capture_output=True,
        text=True,
        check=True,
    )
    before, after = result.stdout.split()[-2:]
    return int(before), int(after)


def main() -> int:
    rss_only = "--rss-only" in sys.argv
    naive_forced = "--naive" in sys.argv
    sys.argv = [a for a in sys.argv if a not in ("--rss-only", "--naive")]
    args = _common.scale_arguments(__doc__)
    # The check runs with the default settings: CHECK_STATEMENT_TIMEOUT_MS (5 s) bounds each
    # of its statements and each fetch of its server-side cursors.
    config: dict = {}
    _common.configure("tenant_indexes_bench", apps=("tenant_indexes.helpdesk",))

    from django.db import connection

    from tenant_indexes.declared import declared_tenant_tables

    schemas = _common.schema_names(args.schemas)
    if rss_only:
        connection.ensure_connection()
        before = peak_rss_kb()
        check_to_nowhere({**config, "CHECK_SCHEMAS": schemas})
        print(before, peak_rss_kb())
        return 0
    print(f"setting up {len(schemas)} schemas ...")
    fast_setup_schemas(schemas)
    seed = declared_tenant_tables("default")
    tables = [(schema, t.table) for schema in schemas for t in seed]

    def check() -> None:
        check_to_nowhere({**config, "CHECK_SCHEMAS": schemas})

    def naive() -> int:
        constraints = 0
        with connection.cursor() as cursor:
            for schema in schemas:
                cursor.execute(f"SET search_path TO {connection.ops.quote_name(schema)}")
                for t in seed:
                    constraints += len(connection.introspection.get_constraints(cursor, t.table))
            cursor.execute("RESET search_path")
        return constraints

    def small_check() -> None:
        check_to_nowhere({**config, "CHECK_SCHEMAS": schemas[:1]})

    def raw() -> int:
        with connection.cursor() as cursor:
            cursor.execute(RAW_SQL, [schemas])
            return len(cursor.fetchall())

    # Warm-up (imports, connection, plan caches), and the document for the summary line.
    report = _common.check_json({**config, "CHECK_SCHEMAS": schemas})
    r_indexes = raw()
    run_naive = naive_forced or len(schemas) <= NAIVE_UP_TO
    sides = {"check": check, "raw": raw, **({"naive": naive} if run_naive else {})}
    best = best_of_alternating(sides, args.repeat)
    _, small_statements, _ = timed_run(small_check)
    c_time, c_statements, c_sql = best["check"]
    r_time, r_statements, r_sql = best["raw"]
    c_peak, r_peak = peak_memory(check), peak_memory(raw)
    if run_naive:
        n_time, n_statements, n_sql = best["naive"]
        n_peak = peak_memory(naive)
        n_constraints = naive()
    rss_before, rss_after = check_rss(len(schemas))

    raw_ratio = c_time / r_time
    print()
    _common.print_setting(f"{len(tables)} tenant tables in {len(schemas)} schemas")
    print(
        f"check_tenant_indexes: status {report['status']}, {len(report['indexes'])} declared "
        f"indexes, {len(report['findings'])} findings"
    )
    print(f"raw catalog query: {r_indexes} indexes read")
    if run_naive:
        print(f"naive get_constraints: {n_constraints} constraints/indexes read")
    print()
    print(f"{'':24}{'time':>10}{'in SQL':>10}{'statements':>12}{'peak memory':>14}")
    rows = [("check_tenant_indexes", c_time, c_sql, c_statements, c_peak)]
    rows.append(("raw catalog query", r_time, r_sql, r_statements, r_peak))
    if run_naive:
        rows.append(("per-table introspection", n_time, n_sql, n_statements, n_peak))
    for what, took, in_sql, statements, peak in rows:
        print(
            f"{what:24}{took * 1000:>8.0f}ms{in_sql * 1000:>8.0f}ms{statements:>12}"
            f"{peak / 2**10:>12.0f}kB"
        )
    print(
        f"check / raw query: {raw_ratio:.2f}x; statements with 8 tables: {small_statements}, "
        f"with {len(tables)}: {c_statements}"
    )
    if run_naive:
        print(f"per-table introspection / check: {n_time / c_time:.0f}x")
    print(
        f"peak RSS of a process running the check once: {rss_after / 1024:.0f} MB "
        f"({rss_before / 1024:.0f} MB before the check)"
    )
    targets = {
        "the check completed": report["status"] == "ok",
        "within 2.5x of the raw catalog query": raw_ratio <= 2.5,
        "constant statement count": small_statements == c_statements,
        "peak RSS at most 400 MB": rss_after <= 400 * 1024,
    }
    if run_naive:
        targets["at least 50x faster than per-table introspection"] = n_time / c_time >= 50
    for name, ok in targets.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
