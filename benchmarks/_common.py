"""What the benchmarks share: the Django set-up, the scale set-up (the help desk's tables in
many schemas), the machine line, a writer thread that stalls when a build blocks it, a build
timed under that writer, and the check run as JSON.

The database is ``DATABASE_URL``, or the embedded PostgreSQL when it is unset
(:mod:`demo_project.embedded`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from io import StringIO
from pathlib import Path
from typing import Any

# The repository root: the benchmarks import tenant_indexes and demo_project from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The admin's needs (the dashboard benchmark): its middleware and a template engine with the
# context processors it asks for.
ADMIN_APPS = (
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
)
ADMIN_SETTINGS: dict[str, Any] = {
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    "TEMPLATES": [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ],
    "STATIC_URL": "/static/",
}


QUIET_BUILDS = {"BUILD_PROGRESS": "off"}  # TENANT_INDEXES of the build benchmarks


def configure(dbname: str, *, apps: tuple[str, ...] = (), **extra: Any) -> None:
    """Configure and set up Django for one benchmark.

    Args:
        dbname: the database on the embedded server (ignored when ``DATABASE_URL`` is set).
        apps: installed apps beyond contenttypes and the core app.
        extra: more settings, e.g. ``TENANT_INDEXES={...}``.
    """
    import django
    from django.conf import settings

    from demo_project.embedded import database_config

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "tenant_indexes", *apps],
        DATABASES={"default": database_config(dbname)},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
        SECRET_KEY="bench",
        **extra,
    )
    django.setup()


SCHEMA_PREFIX = "ti_bench_"


def schema_names(count: int) -> list[str]:
    """The schemas of the scale benchmarks, each holding the help desk's tables."""
    return [f"{SCHEMA_PREFIX}{i:04d}" for i in range(count)]


def setup_schemas(schemas: list[str]) -> None:
    """Create the seed tables in every schema that does not have them yet."""
    from django.apps import apps
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    models = list(apps.get_app_config("tenant_indexes_helpdesk").get_models())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", [SCHEMA_PREFIX + "%"]
        )
        existing = {row[0] for row in cursor.fetchall()}
    todo = [s for s in schemas if s not in existing]
    started = time.perf_counter()
    for n, schema in enumerate(todo, 1):
        with connection.schema_editor() as editor:
            # The schema editor names tables unqualified; search_path puts them in `schema`.
            editor.execute(f"CREATE SCHEMA {editor.quote_name(schema)}")
            editor.execute(f"SET LOCAL search_path TO {editor.quote_name(schema)}")
            for model in models:
                editor.create_model(model)
        if n % 50 == 0:
            print(f"  created {n}/{len(todo)} schemas ({time.perf_counter() - started:.0f}s)")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def scale_arguments(doc: str) -> argparse.Namespace:
    """``--schemas`` (each holds the help desk's eight tenant tables) and ``--repeat``."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--schemas", type=int, default=250, help="schemas x 8 tenant tables")
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


def machine() -> str:
    """The CPU model, the core count and the Python version."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = f"{os.cpu_count()} cores"
    return f"{model} ({platform.machine()}), {cores}, Python {platform.python_version()}"


def print_setting(what: str) -> None:
    """The machine and the server, then ``what`` was set up."""
    print(f"machine: {machine()}")
    print(f"PostgreSQL {server_version()}; {what}")


def server_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return str(cursor.fetchone()[0])


def nearest_rank(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (NaN when there are none)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else float("nan")


class Writer(threading.Thread):
    """Runs ``sql`` with ``params(n)`` once per transaction (autocommit) on its own connection
    until stopped, ``pace`` seconds apart; records when each statement began and finished."""

    def __init__(
        self, sql: str, params: Callable[[int], Sequence[Any]] | None = None, pace: float = 0.002
    ) -> None:
        super().__init__(daemon=True)
        self.sql, self.params, self.pace = sql, params, pace
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.inserts: list[tuple[float, float]] = []  # (began, finished)

    def run(self) -> None:
        from django.db import connections

        connection = connections["default"]  # this thread's own connection
        with connection.cursor() as cursor:
            self.ready.set()
            n = 0
            while not self.stop_event.is_set():
                n += 1
                began = time.perf_counter()
                cursor.execute(self.sql, None if self.params is None else self.params(n))
                self.inserts.append((began, time.perf_counter()))
                if self.pace:
                    time.sleep(self.pace)
        connection.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(60)


def build_under_writer(way: str, model: Any, index: Any, writer: Writer) -> dict[str, float]:
    """Build ``index`` on ``model`` (dropped first) while ``writer`` runs: ``plain`` is Django's
    ``CREATE INDEX``, anything else ``build_index_concurrently()``. The build's wall time, the
    writer's longest stall, its median and p99 latency, and the inserts during the build."""
    from django.db import connection

    from tenant_indexes.build import build_index_concurrently

    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX IF EXISTS "{index.name}"')
    writer.start()
    writer.ready.wait(10)
    time.sleep(0.5)  # steady state before the build
    started = time.perf_counter()
    with connection.schema_editor(atomic=False) as editor:
        if way == "plain":
            editor.add_index(model, index)
        else:
            build_index_concurrently(editor, model, index)
    finished = time.perf_counter()
    time.sleep(0.3)
    writer.stop()
    # Inserts that finished during the build, plus the one that was waiting when it began.
    during = [end - began for began, end in writer.inserts if started <= end <= finished + 0.05]
    stalls = [end - began for began, end in writer.inserts if end >= started]
    return {
        "build_s": finished - started,
        "max_stall_ms": max(stalls) * 1000 if stalls else float("nan"),
        "median_ms": statistics.median(during) * 1000 if during else float("nan"),
        "p99_ms": nearest_rank(during, 0.99) * 1000,
        "inserts_during": len(during),
    }


def print_builds(results: Mapping[str, Sequence[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Print the median of each way's :func:`build_under_writer` runs; return the medians."""
    print(
        f"{'way':<12}{'build s':>9}{'longest stall ms':>18}{'median ms':>11}{'p99 ms':>9}"
        f"{'inserts during build':>22}"
    )
    summary: dict[str, dict[str, float]] = {}
    for way, runs in results.items():
        summary[way] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        s = summary[way]
        print(
            f"{way:<12}{s['build_s']:>9.2f}{s['max_stall_ms']:>18.1f}{s['median_ms']:>11.2f}"
            f"{s['p99_ms']:>9.2f}{int(s['inserts_during']):>22,}"
        )
    return summary


def check_json(config: Mapping[str, Any]) -> dict[str, Any]:
    """``check_tenant_indexes --format json`` with ``TENANT_INDEXES = config``; its document
    (a non-zero exit is printed to stderr, the document is returned all the same)."""
    from django.core.management import CommandError, call_command
    from django.test import override_settings

    out = StringIO()
    with override_settings(TENANT_INDEXES=dict(config)):
        try:
            call_command("check_tenant_indexes", "--format", "json", stdout=out)
        except CommandError as e:
            print(f"check exited {e.returncode}: {e}", file=sys.stderr)
    result: dict[str, Any] = json.loads(out.getvalue())
    return result
