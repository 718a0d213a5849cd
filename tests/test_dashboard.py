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
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from selenium import webdriver
from selenium.webdriver.common.by import By

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
