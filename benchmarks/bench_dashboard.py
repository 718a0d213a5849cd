"""Dashboard benchmark: the admin page against ``check_tenant_indexes --format json``.

Same setup as ``bench_check_scale.py`` (whose helpers it reuses): the seed's tables in each of
``--schemas`` schemas (default 250: 2,000 tenant-scoped tables), ``CHECK_SCHEMAS`` naming
them all. Then, side by side in one process:

* **dashboard**: a logged-in staff user's ``GET /admin/tenant-indexes/`` through Django's
  test client: the whole request (admin auth, the bounded pass in its helper thread on its
  own connection, usage verdicts, repair plans, template rendering);
* **dashboard, show all**: the same page with ``?all=1``: every index and table row (by
  default a database of more than 100 shows only the rows that need attention);
* **check**: ``call_command("check_tenant_indexes", "--format", "json")``.

The three are run in turn, ``--repeat`` rounds, so a load that comes and goes on a shared
machine hits them alike. Prints each best time, the ratios, the machine and its load
average. Target: the default page takes at most 1.5x the JSON check.

    .venv-django5.2/bin/python benchmarks/bench_dashboard.py            # embedded PG 16
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ti_bench \\
        .venv-django5.2/bin/python benchmarks/bench_dashboard.py        # another server
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

urlpatterns: list = []  # filled in main(): this module is the ROOT_URLCONF


def configure() -> None:
    import django
    from django.conf import settings

    from demo_project.embedded import database_config

    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "django.contrib.messages",
            "tenant_indexes",
            "tenant_indexes.helpdesk",
        ],
        DATABASES={"default": database_config("tenant_indexes_bench")},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
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
        STATIC_URL="/static/",
    )
    django.setup()


def interleaved_best(funcs: list, repeat: int) -> list[tuple[float, object]]:
    """Best time and last result of each of ``funcs``, run one after the other per round."""
    best = [(float("inf"), None) for _ in funcs]
    for _ in range(repeat):
        for i, func in enumerate(funcs):
            started = time.perf_counter()
            result = func()
            best[i] = (min(best[i][0], time.perf_counter() - started), result)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schemas", type=int, default=250, help="schemas x 8 tenant tables")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    configure()
    from bench_check_scale import schema_names, setup_schemas
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.core.management import CommandError, call_command
    from django.db import connection
    from django.test import Client, override_settings
    from django.urls import clear_url_caches, path

    urlpatterns[:] = [path("admin/", admin.site.urls)]
    clear_url_caches()
    schemas = schema_names(args.schemas)
    print(f"setting up {len(schemas)} schemas ...")
    setup_schemas(schemas)
    user_model = get_user_model()
    staff = user_model.objects.filter(username="bench").first()
    if staff is None:
        staff = user_model.objects.create_user("bench", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    config = {"CHECK_SCHEMAS": schemas, "HEALTH_TIMEOUT": 120, "HEALTH_CONNECT_TIMEOUT": 10}

    def dashboard(query: str = "") -> bytes:
        with override_settings(TENANT_INDEXES=config):
            response = client.get(f"/admin/tenant-indexes/{query}")
        assert response.status_code == 200, response.status_code
        return response.content

    def dashboard_all() -> bytes:
        return dashboard("?all=1")

    def check() -> dict:
        out = StringIO()
        with override_settings(TENANT_INDEXES=config):
            try:
                call_command("check_tenant_indexes", "--format", "json", stdout=out)
            except CommandError as e:
                print(f"check exited {e.returncode}: {e}", file=sys.stderr)
        return json.loads(out.getvalue())

    dashboard(), dashboard_all(), check()  # warm-up: imports, templates, connections
    (d_time, page), (a_time, page_all), (c_time, report) = interleaved_best(
        [dashboard, dashboard_all, check], args.repeat
    )
    assert isinstance(page, bytes) and isinstance(page_all, bytes) and isinstance(report, dict)
    rows = page.count(b'<tr class="ti-index"')
    rows_all = page_all.count(b'<tr class="ti-index"')
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    ratio = d_time / c_time
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"PostgreSQL {version}; {len(schemas) * 8} tenant tables in {len(schemas)} schemas")
    print(
        f"check_tenant_indexes: {len(report['indexes'])} declared indexes, "
        f"status {report['status']}"
    )
    print(f"dashboard: {rows} index rows, {len(page) / 2**10:.0f} kB of HTML")
    print(f"dashboard ?all=1: {rows_all} index rows, {len(page_all) / 2**10:.0f} kB of HTML")
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(f"{'dashboard page':28}{d_time * 1000:>8.0f}ms")
    print(f"{'dashboard page, show all':28}{a_time * 1000:>8.0f}ms")
    print(f"{'check_tenant_indexes json':28}{c_time * 1000:>8.0f}ms")
    print(f"ratio: dashboard / check = {ratio:.2f}x (target at most 1.5x)")
    print(f"ratio: show all / check = {a_time / c_time:.2f}x")
    ok = ratio <= 1.5
    print(f"  {'PASS' if ok else 'FAIL'}  at most 1.5x the JSON check")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
