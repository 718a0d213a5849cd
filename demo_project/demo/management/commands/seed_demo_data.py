"""Fill the seed's tables with deterministic, skewed multi-tenant help-desk data."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, transaction

from demo_project.demo.datagen import (
    DemoDataError,
    DemoSize,
    analyze_seed_tables,
    generate_demo_data,
    table_checksums,
    truncate_seed_tables,
)


class Command(BaseCommand):
    help = (
        "Load deterministic demo data (COPY) into the seed's tables: --scale 1 (default) is "
        "20 tenants / 20,000 tickets, --scale 100 is 2,000 tenants / 2,000,000 tickets. "
        "Tenant sizes are Zipf-skewed. The same --seed gives the same rows."
    )

    def add_arguments(self, parser):
        parser.add_argument("--scale", type=float, default=1.0, help="Size multiplier (1).")
        parser.add_argument("--tenants", type=int, help="Number of tenants (overrides --scale).")
        parser.add_argument("--tickets", type=int, help="Number of tickets (overrides --scale).")
        parser.add_argument("--seed", type=int, default=0, help="Random seed (0).")
        parser.add_argument(
            "--replace", action="store_true", help="Empty the seed tables first (TRUNCATE)."
        )
        parser.add_argument(
            "--no-analyze", action="store_true", help="Skip VACUUM ANALYZE after loading."
        )
        parser.add_argument(
            "--checksums", action="store_true", help="Print rows and md5 of every table."
        )

    def handle(self, *args, **options):
        if options["scale"] <= 0:
            raise CommandError("--scale must be positive.", returncode=2)
        size = DemoSize.from_scale(options["scale"])
        size = DemoSize(
            tenants=options["tenants"] if options["tenants"] is not None else size.tenants,
            tickets=options["tickets"] if options["tickets"] is not None else size.tickets,
        )
        if size.tenants < 1 or size.tickets < 0:
            raise CommandError("--tenants must be >= 1 and --tickets >= 0.", returncode=2)
        self.stdout.write(
            f"Generating {size.tenants:,} tenants and {size.tickets:,} tickets "
            f"(seed {options['seed']})"
        )
        self._last_report = 0.0
        wall_started = time.perf_counter()
        self._verbosity = options["verbosity"]
        self._finished: set[str] = set()
        try:
            with transaction.atomic():
                if options["replace"]:
                    truncate_seed_tables()
                load = generate_demo_data(size, seed=options["seed"], progress=self._progress)
                self.stdout.write(f"  foreign keys validated in {load.foreign_key_seconds:.1f} s")
            if not options["no_analyze"]:
                started = time.perf_counter()
                analyze_seed_tables()
                self.stdout.write(f"  VACUUM ANALYZE in {time.perf_counter() - started:.1f} s")
        except DemoDataError as e:
            raise CommandError(str(e), returncode=2) from e
        except DatabaseError as e:
            raise CommandError(f"Could not load the demo data: {e}", returncode=2) from e
        sizes = load.tickets_per_tenant
        self.stdout.write(
            self.style.SUCCESS(
                f"Loaded {load.total_rows:,} rows in {time.perf_counter() - wall_started:.1f} s "
                f"({load.seconds:.1f} s of COPY and validation). Tickets per tenant: "
                f"largest {sizes[0]:,}, median {sizes[len(sizes) // 2]:,}, smallest {sizes[-1]:,}"
            )
        )
        if options["checksums"]:
            for table, (rows, digest) in table_checksums().items():
                self.stdout.write(f"  {table:<24} {rows:>10,} {digest}")

    def _progress(self, table: str, written: int, expected: int) -> None:
        # Progress lines at most every two seconds, plus one per finished table.
        now = time.perf_counter()
        done = written >= expected
        if not done and now - self._last_report < 2.0:
            return
        self._last_report = now
        if done:
            if table in self._finished:
                return
            self._finished.add(table)
            self.stdout.write(f"  {table:<24} {written:>10,} rows")
        elif self._verbosity >= 1:
            self.stderr.write(f"  {table:<24} {written:>10,} / ~{expected:,}")
