#!/usr/bin/env python
"""Time the seed's typical tenant queries with the tenant indexes dropped and present.

Usage (from the project root; DATABASE_URL or the embedded PostgreSQL, like manage.py)::

    python manage.py seed_demo_data --replace --scale 100      # 2,000 tenants, 2M tickets
    python benchmarks/bench_tenant_queries.py --repeat 7 --parallel-workers 0

It prints the machine, the planner settings used, and per query the plan node that reads the
table (Seq Scan against Index / Bitmap scan), the median time of each side and the ratio.
Both sides use the same data: the indexes are dropped inside a transaction that is rolled back.
Not part of the test suite (no timing assertions there).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from demo_project.demo.querybench import BenchResult

PROJECT_DIR = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="Timed runs per query (7).")
    parser.add_argument("--tenant", choices=["median", "largest"], default="median")
    parser.add_argument(
        "--parallel-workers",
        type=int,
        default=None,
        help="SET max_parallel_workers_per_gather for the session (default: server's).",
    )
    parser.add_argument(
        "--jit", choices=["on", "off"], default=None, help="SET jit (default: server's)."
    )
    parser.add_argument(
        "--markdown", action="store_true", help="Print the table as Markdown (README)."
    )
    return parser.parse_args(argv)


def render(result: BenchResult, markdown: bool) -> str:
    m = result.machine
    lines = [
        f"Machine: {m.cpu_model}, {m.cores} cores; PostgreSQL {m.server_version}",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in m.settings.items()),
        "Rows (planner estimates): "
        + ", ".join(f"{t} {m.table_rows[t]:,} ({m.table_sizes[t]})" for t in sorted(m.table_rows)),
        f"Tenant: the {result.tenant_rank} of {result.tenants:,} tenants by tickets "
        f"({result.tenant_tickets:,} tickets); median of {result.repeat} runs after a warm-up",
        "ms: client round trip (execute + fetch all rows); server ms: EXPLAIN ANALYZE "
        "Execution Time",
        "",
    ]
    header = (
        "query",
        "rows",
        "plan without tenant indexes",
        "ms",
        "server ms",
        "plan with tenant indexes",
        "ms",
        "server ms",
        "faster",
        "faster (server)",
    )
    rows = [
        (
            r.label,
            f"{r.with_indexes.rows:,}",
            str(r.without_indexes.scan),
            f"{r.without_indexes.median_ms:.2f}",
            f"{r.without_indexes.server_median_ms:.2f}",
            str(r.with_indexes.scan),
            f"{r.with_indexes.median_ms:.3f}",
            f"{r.with_indexes.server_median_ms:.3f}",
            f"{r.ratio:,.0f}x",
            f"{r.server_ratio:,.0f}x",
        )
        for r in result.results
    ]
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("| " + " | ".join("---" for _ in header) + " |")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
        for row in (header, *rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(PROJECT_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
    import django

    django.setup()
    from demo_project.demo.querybench import BenchError, run_benchmark

    try:
        result = run_benchmark(
            repeat=args.repeat,
            tenant=args.tenant,
            parallel_workers=args.parallel_workers,
            jit=args.jit,
        )
    except BenchError as e:
        print(f"Cannot run the benchmark: {e}", file=sys.stderr)
        return 2
    print(render(result, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
