"""Dashboard benchmark: the admin page against ``check_tenant_indexes --format json``.

Same setup as ``bench_check_scale.py`` (``benchmarks/_common.py``): the seed's tables in each of
``--schemas`` schemas (default 250: 2,000 tenant-scoped tables), ``CHECK_SCHEMAS`` naming
them all. Then, side by side in one process:

* **dashboard**: a logged-in staff user's ``GET /admin/tenant-indexes/`` through Django's
  test client: the whole request (admin auth, the bounded pass in its helper thread on its
  own connection, usage verdicts, repair plans, template rendering);
* **check**: ``call_command("check_tenant_indexes", "--format", "json")``.

Prints both times (best of ``--repeat``), the ratio and the machine. Target: the page takes
at most 1.5x the JSON check.

    .venv-django5.2/bin/python benchmarks/bench_dashboard.py            # embedded PG 16
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ti_bench \\
        .venv-django5.2/bin/python benchmarks/bench_dashboard.py        # another server
"""

from __future__ import annotations

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


def best_of(func, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - started)
    return best, result


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

    def dashboard() -> bytes:
        with override_settings(TENANT_INDEXES=config):
            response = client.get("/admin/tenant-indexes/")
        assert response.status_code == 200, response.status_code
        return response.content

    def check() -> dict:
        return _common.check_json(config)

    dashboard(), check()  # warm-up: imports, templates, connections
    d_time, page = best_of(dashboard, args.repeat)
    c_time, report = best_of(check, args.repeat)
    assert isinstance(page, bytes) and isinstance(report, dict)
    rows = page.count(b'<tr class="ti-index"')
    ratio = d_time / c_time
    print()
    _common.print_setting(f"{len(schemas) * 8} tenant tables in {len(schemas)} schemas")
    print(
        f"check_tenant_indexes: {len(report['indexes'])} declared indexes, "
        f"status {report['status']}"
    )
    print(f"dashboard: {rows} index rows, {len(page) / 2**10:.0f} kB of HTML")
    print()
    print(f"{'dashboard page':28}{d_time * 1000:>8.0f}ms")
    print(f"{'check_tenant_indexes json':28}{c_time * 1000:>8.0f}ms")
    print(f"ratio: dashboard / check = {ratio:.2f}x (target at most 1.5x)")
    ok = ratio <= 1.5
    print(f"  {'PASS' if ok else 'FAIL'}  at most 1.5x the JSON check")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
