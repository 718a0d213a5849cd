"""The admin dashboard in a real browser: Debian's chromium, headless, against a live server.

pytest-django's ``live_server`` serves the test project (whose ``INSTALLED_APPS`` include the
admin, so :mod:`tenant_indexes.dashboard` registers itself). Selenium drives
``/usr/bin/chromium`` through Debian's ``/usr/bin/chromedriver``: no browser is downloaded.
A staff user logs in through the admin's login form; the page is read in three states
(healthy, a dropped index, an INVALID index left by a failed concurrent unique build), with
what a person would see asserted (rows, states, hints, repair SQL) and no console error; a
screenshot of each state is saved in ``artifacts/dashboard/`` (git-ignored). Anonymous and
non-staff users are refused.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tenant_indexes.helpdesk.models import Tenant, User

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
PASSWORD = "dashboard-password"
INDEX = "idx_users_tenant_id"


def _run(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail(
            f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1600,1200",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _login(browser: Any, base: str, username: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{base}/admin/login/?next=/admin/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # click() returns before the login's POST and redirect are done; a get() sent meanwhile
    # can be overtaken by the redirect. Wait for the page after it: the admin, or the login
    # form again with its error for a user the admin refuses.
    WebDriverWait(browser, 60).until(
        lambda b: (
            b.execute_script("return document.readyState") == "complete"
            and (
                "/admin/login/" not in b.current_url
                or bool(b.find_elements(By.CSS_SELECTOR, ".errornote"))
            )
        )
    )


def _console_errors(browser: Any) -> list[dict[str, Any]]:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def _open_dashboard(browser: Any, base: str, state: str) -> dict[str, Any]:
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(f"{base}/admin/tenant-indexes/")
    # The page title: on Django 4.2 the first h1 is the site header, so look inside #content.
    assert browser.find_element(By.CSS_SELECTOR, "#content h1").text == "Tenant indexes"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{state}.png"))
    assert _console_errors(browser) == []
    could_not_check = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".ti-error")]
    assert could_not_check == []
    rows = {
        row.get_attribute("data-name"): row
        for row in browser.find_elements(By.CSS_SELECTOR, "tr.ti-index")
    }
    return {
        "overall": browser.find_element(By.ID, "ti-overall").text,
        "rows": rows,
        "findings": browser.find_elements(By.CSS_SELECTOR, "tr.ti-finding"),
        "tables": {
            row.get_attribute("data-name"): row
            for row in browser.find_elements(By.CSS_SELECTOR, "tr.ti-table")
        },
    }


def _repair_row(browser: Any, name: str) -> Any:
    return browser.find_element(By.CSS_SELECTOR, f"tr.ti-repair[data-name='{name}']")


@pytest.fixture(autouse=True)
def _patient_pass(settings: Any) -> None:
    """The page's bounded pass may wait longer than the 5 s default: the suite shares two
    cores with other work, and a pass cut short would show "Could not check" instead of the
    state under test (the bound itself is tested in tests/test_views.py)."""
    settings.TENANT_INDEXES = {**getattr(settings, "TENANT_INDEXES", {}), "HEALTH_TIMEOUT": 60}


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(
        "staff", password=PASSWORD, is_staff=True, is_superuser=False
    )


@pytest.mark.django_db(transaction=True)
def test_dashboard__healthy_then_dropped_then_invalid(
    browser: Any, live_server: Any, staff: Any
) -> None:
    base = live_server.url
    _login(browser, base, "staff")
    page = _open_dashboard(browser, base, "healthy")
    assert page["overall"].lower() == "ok"
    assert browser.find_elements(By.CSS_SELECTOR, ".ti-no-findings")
    # The help desk's eleven indexes, each with its state and usage columns.
    for name in ("idx_users_tenant_id", "idx_tickets_tenant_status", "idx_messages_ticket_tenant"):
        assert page["rows"][name].get_attribute("data-state") == "ok"
    cells = page["rows"][INDEX].find_elements(By.TAG_NAME, "td")
    assert cells[1].text == "public.users" and cells[2].text == "tenant_id"
    assert cells[3].text.lower() == "ok"
    assert cells[4].text.endswith("KB") or cells[4].text.endswith("bytes")
    assert cells[9].text == ""  # nothing to repair
    assert not browser.find_elements(By.CSS_SELECTOR, "tr.ti-repair")
    assert "users" in page["tables"] and "tickets" in page["tables"]

    tenant = Tenant.objects.create(name="Acme", slug="acme")
    User.objects.create(tenant=tenant, email="a@example.com")
    User.objects.create(tenant=tenant, email="b@example.com")
    try:
        _run(f"DROP INDEX CONCURRENTLY {INDEX}")
        page = _open_dashboard(browser, base, "dropped")
        assert page["overall"].lower() == "error"
        row = page["rows"][INDEX]
        assert row.get_attribute("data-state") == "missing"
        repair = _repair_row(browser, INDEX)
        sql = repair.find_element(By.CSS_SELECTOR, "pre.ti-sql").text
        assert f'CREATE INDEX CONCURRENTLY "{INDEX}" ON "users"' in sql.replace(
            "IF NOT EXISTS ", ""
        )
        assert repair.find_element(By.CSS_SELECTOR, "button.ti-copy").is_displayed()
        e001 = [f for f in page["findings"] if f.get_attribute("data-id") == "tenant_indexes.E001"]
        assert len(e001) == 1
        assert "repair_tenant_indexes" in e001[0].find_element(By.CSS_SELECTOR, ".ti-hint").text

        # An INVALID index, the honest way: a concurrent unique build over duplicate rows.
        with pytest.raises(Exception, match="could not create unique index"):
            _run(f"CREATE UNIQUE INDEX CONCURRENTLY {INDEX} ON users (tenant_id)")
        page = _open_dashboard(browser, base, "invalid")
        row = page["rows"][INDEX]
        assert row.get_attribute("data-state") == "invalid"
        sql = _repair_row(browser, INDEX).find_element(By.CSS_SELECTOR, "pre.ti-sql").text
        assert "DROP INDEX CONCURRENTLY" in sql and "CREATE INDEX CONCURRENTLY" in sql
        e002 = [f for f in page["findings"] if f.get_attribute("data-id") == "tenant_indexes.E002"]
        assert len(e002) == 1 and "INVALID" in e002[0].text
        assert "DROP INDEX CONCURRENTLY" in e002[0].find_element(By.CSS_SELECTOR, ".ti-hint").text
    finally:
        _run(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
        _run(f"CREATE INDEX {INDEX} ON users (tenant_id)")


@pytest.mark.django_db(transaction=True)
def test_dashboard__anonymous_and_non_staff_are_sent_to_the_login(
    browser: Any, live_server: Any, django_user_model: Any
) -> None:
    base = live_server.url
    browser.delete_all_cookies()
    browser.get(f"{base}/admin/tenant-indexes/")
    assert "/admin/login/" in browser.current_url
    assert not browser.find_elements(By.CSS_SELECTOR, ".ti-dashboard")
    django_user_model.objects.create_user("plain", password=PASSWORD, is_staff=False)
    _login(browser, base, "plain")
    browser.get(f"{base}/admin/tenant-indexes/")
    assert "/admin/login/" in browser.current_url
    assert not browser.find_elements(By.CSS_SELECTOR, ".ti-dashboard")
    assert not browser.find_elements(By.CSS_SELECTOR, "tr.ti-index")


@pytest.mark.django_db
def test_dashboard__page_refuses_anonymous_without_a_browser(client: Any) -> None:
    response = client.get("/admin/tenant-indexes/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def _record_history(index: str = INDEX) -> Any:
    """One real ``tenant_index_stats --record``, then two earlier records of ``index`` made
    from it (a day apart, smaller and less scanned): three points for ``index``, one for
    every other index."""
    from django.core.management import call_command

    from tenant_indexes.models import IndexUsageSnapshot

    call_command("tenant_index_stats", "--database", "default", "--record", stdout=StringIO())
    real = IndexUsageSnapshot.objects.get(database="default", index_name=index)
    for days, scans, size in ((2, 0, 8192), (1, 3, 16384)):
        IndexUsageSnapshot.objects.create(
            recorded_at=real.recorded_at - timedelta(days=days),
            database="default",
            schema_name=real.schema_name,
            table_name=real.table_name,
            index_name=index,
            idx_scan=min(scans, real.idx_scan),
            idx_tup_read=0,
            idx_tup_fetch=0,
            size_bytes=size,
            stats_reset=real.stats_reset,
            postmaster_start=real.postmaster_start,
            in_recovery=real.in_recovery,
        )
    return real


@pytest.mark.django_db(transaction=True)
def test_dashboard__history_charts_and_the_link_from_the_admin_index(
    browser: Any, live_server: Any, staff: Any
) -> None:
    _record_history()
    base = live_server.url
    _login(browser, base, "staff")
    # The admin index lists the dashboard under "Tenant indexes"; follow the link.
    browser.get(f"{base}/admin/")
    link = browser.find_element(
        By.CSS_SELECTOR, ".app-tenant_indexes th[scope=row] a[href$='/tenant-indexes/']"
    )
    assert link.text == "Dashboard"
    link.click()
    page = _open_dashboard(browser, base, "history")
    assert browser.current_url.endswith("/admin/tenant-indexes/")
    charts = page["rows"][INDEX].find_elements(By.CSS_SELECTOR, "td.ti-history svg.ti-spark")
    assert [c.get_attribute("class") for c in charts] == [
        "ti-spark ti-spark-size",
        "ti-spark ti-spark-scans",
    ]
    for chart in charts:
        assert chart.get_attribute("data-points") == "3"
        points = chart.find_element(By.TAG_NAME, "polyline").get_attribute("points")
        assert len(points.split()) == 3
        assert chart.size["width"] > 0 and chart.size["height"] > 0
    assert "3 records since" in charts[0].find_element(By.TAG_NAME, "title").get_attribute(
        "textContent"
    )
    # One record is no line: the other indexes have no chart.
    others = [name for name in page["rows"] if name != INDEX]
    assert others
    for name in others:
        assert not page["rows"][name].find_elements(By.CSS_SELECTOR, "svg")


@pytest.mark.django_db
def test_admin_index__links_to_the_dashboard_for_staff(client: Any, staff: Any) -> None:
    client.force_login(staff)
    response = client.get("/admin/")
    assert response.status_code == 200
    app = [a for a in response.context["app_list"] if a["app_label"] == "tenant_indexes"]
    assert len(app) == 1 and app[0]["name"] == "Tenant indexes"
    assert [m["name"] for m in app[0]["models"]] == ["Dashboard"]
    assert b'href="/admin/tenant-indexes/"' in response.content
    # The navigation sidebar of any admin page lists it too.
    page = client.get("/admin/tenant-indexes/")
    assert any(a["app_label"] == "tenant_indexes" for a in page.context["available_apps"])


@pytest.mark.django_db
def test_dashboard__collapses_healthy_rows_above_the_limit_and_shows_all_on_request(
    client: Any, staff: Any, monkeypatch: Any
) -> None:
    from tenant_indexes import dashboardrows

    client.force_login(staff)
    everything = client.get("/admin/tenant-indexes/").content.decode()
    total = everything.count('<tr class="ti-index"')
    assert total > 3 and "not shown" not in everything
    monkeypatch.setattr(dashboardrows, "COLLAPSE_ABOVE", 3)
    collapsed = client.get("/admin/tenant-indexes/").content.decode()
    # Every index is healthy: none is shown, one line says so and links to all of them.
    assert collapsed.count('<tr class="ti-index"') == 0
    assert f"{total} healthy indexes not shown" in collapsed
    assert 'href="?all=1"' in collapsed
    shown_all = client.get("/admin/tenant-indexes/?all=1").content.decode()
    assert shown_all.count('<tr class="ti-index"') == total
    assert "not shown" not in shown_all


@pytest.mark.django_db
def test_collect_dashboard__collapsed_keeps_every_index_that_needs_attention(
    monkeypatch: Any,
) -> None:
    from tenant_indexes import dashboardrows
    from tenant_indexes.dashboard import collect_dashboard

    monkeypatch.setattr(dashboardrows, "COLLAPSE_ABOVE", 3)
    _run(f"DROP INDEX {INDEX}")
    (full,) = collect_dashboard(["default"]).databases
    assert len(full.indexes) > 3 and full.hidden_indexes == 0
    (db,) = collect_dashboard(["default"], show_all=False).databases
    assert [ix.report.name for ix in db.indexes] == [INDEX]
    assert db.indexes[0].state == "missing"
    assert db.hidden_indexes == len(full.indexes) - 1


def test_sparkline__one_point_per_value_on_a_time_axis() -> None:
    from tenant_indexes.charts import HEIGHT, WIDTH, sparkline

    svg = sparkline([0, 10, 40], [5, 15, 10], label="size <b>", css_class="ti-spark-size")
    assert svg.startswith('<svg class="ti-spark ti-spark-size"')
    assert 'data-points="3"' in svg and f'viewBox="0 0 {WIDTH} {HEIGHT}"' in svg
    assert "<title>size &lt;b&gt;</title>" in svg  # the label is escaped
    points = svg.split(' points="')[1].split('"')[0].split()
    xs = [float(p.split(",")[0]) for p in points]
    ys = [float(p.split(",")[1]) for p in points]
    assert len(points) == 3
    assert xs[0] < xs[1] < xs[2] and (xs[1] - xs[0]) * 3 == pytest.approx(xs[2] - xs[1])
    assert ys[1] < ys[2] < ys[0]  # the largest value on top (SVG's y grows downwards)
    assert min(ys) >= 0 and max(ys) <= HEIGHT and min(xs) >= 0 and max(xs) <= WIDTH


def test_sparkline__flat_empty_and_mismatched() -> None:
    from tenant_indexes.charts import HEIGHT, sparkline

    flat = sparkline([0, 1], [7, 7], label="flat")
    ys = {p.split(",")[1] for p in flat.split(' points="')[1].split('"')[0].split()}
    assert ys == {f"{HEIGHT / 2:.1f}"}
    assert sparkline([], [], label="none") == ""
    with pytest.raises(ValueError, match="2 times but 1 values"):
        sparkline([0, 1], [1], label="bad")


def test_index_charts__needs_two_points_and_keeps_the_latest() -> None:
    from tenant_indexes.charts import MAX_POINTS, index_charts
    from tenant_indexes.history import UsagePoint

    start = datetime(2026, 1, 1, tzinfo=UTC)
    one = [UsagePoint(start, 8192, 0)]
    assert index_charts(one) is None
    many = [UsagePoint(start + timedelta(hours=i), 8192 + i, i) for i in range(MAX_POINTS + 5)]
    charts = index_charts(many)
    assert charts is not None and charts.points == MAX_POINTS
    assert f'data-points="{MAX_POINTS}"' in charts.size and "ti-spark-scans" in charts.scans
    assert f"{MAX_POINTS - 1} scans" in charts.scans


@pytest.mark.django_db
def test_usage_series__scans_count_from_the_first_record_over_a_reset() -> None:
    from tenant_indexes.history import usage_series
    from tenant_indexes.models import IndexUsageSnapshot

    start = datetime(2026, 1, 1, tzinfo=UTC)
    reset = start + timedelta(hours=2)
    for hours, scans, stats_reset in ((0, 10, None), (1, 14, None), (3, 5, reset)):
        IndexUsageSnapshot.objects.create(
            recorded_at=start + timedelta(hours=hours), database="default",
            schema_name="public", table_name="users", index_name=INDEX, idx_scan=scans,
            idx_tup_read=0, idx_tup_fetch=0, size_bytes=8192 * (hours + 1),
            stats_reset=stats_reset, postmaster_start=start, in_recovery=False,
        )  # fmt: skip
    series = usage_series("default", since=start, indexes=[("public", INDEX)])
    points = series[("public", INDEX)]
    assert [p.scans for p in points] == [0, 4, 9]  # the reset counts 5 from zero
    assert [p.size_bytes for p in points] == [8192, 16384, 32768]
    assert usage_series("default", since=start, indexes=[("other", INDEX)]) == {}
    assert usage_series("default", since=start + timedelta(days=1)) == {}


def test_add_to_app_list__joins_the_apps_own_models_once() -> None:
    from django.contrib import admin

    from tenant_indexes.dashboard import add_to_app_list

    snapshot_model = {"name": "Usage snapshots", "object_name": "IndexUsageSnapshot"}
    app_list = [
        {"name": "Auth", "app_label": "auth", "models": []},
        {"name": "Tenant indexes", "app_label": "tenant_indexes", "models": [snapshot_model]},
    ]
    add_to_app_list(app_list, admin.site)
    add_to_app_list(app_list, admin.site)
    models = app_list[1]["models"]
    assert [m["name"] for m in models] == ["Dashboard", "Usage snapshots"]
    assert models[0]["admin_url"] == "/admin/tenant-indexes/" and models[0]["add_url"] is None
    alone = add_to_app_list([{"name": "Zoo", "app_label": "zoo", "models": []}], admin.site)
    assert [a["app_label"] for a in alone] == ["tenant_indexes", "zoo"]
