"""Dashboard benchmark: the admin page against ``check_tenant_indexes --format json``.

Same setup as ``bench_check_scale.py`` (``benchmarks/_common.py``): the seed's tables in each of
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

import os
import sys
import time

import _common

urlpatterns: list = []  # filled in main(): this module is the ROOT_URLCONF


def configure() -> None:
    _common.configure(
        "tenant_indexes_bench",
        apps=(*_common.ADMIN_APPS, "tenant_indexes.helpdesk"),
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        **_common.ADMIN_SETTINGS,
    )


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
    args = _common.scale_arguments(__doc__)
    configure()
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.test import Client, override_settings
    from django.urls import clear_url_caches, path

    urlpatterns[:] = [path("admin/", admin.site.urls)]
    clear_url_caches()
    schemas = _common.schema_names(args.schemas)
    print(f"setting up {len(schemas)} schemas ...")
    _common.setup_schemas(schemas)
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
        return _common.check_json(config)

    dashboard(), dashboard_all(), check()  # warm-up: imports, templates, connections
    (d_time, page), (a_time, page_all), (c_time, report) = interleaved_best(
        [dashboard, dashboard_all, check], args.repeat
    )
    assert isinstance(page, bytes) and isinstance(page_all, bytes) and isinstance(report, dict)
    rows = page.count(b'<tr class="ti-index"')
    rows_all = page_all.count(b'<tr class="ti-index"')
    ratio = d_time / c_time
    print()
    _common.print_setting(f"{len(schemas) * 8} tenant tables in {len(schemas)} schemas")
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
