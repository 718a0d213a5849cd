"""One verdict everywhere: the view, django-health-check (HTML and JSON, over HTTP), the
command and the system check agree on ok, warning below the fail level, error and a
database that is down, for both HEALTH_FAIL_LEVEL values."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.db import DatabaseError, connection

from tenant_indexes.helpdesk.models import Tenant, User
from tenant_indexes.views import clear_health_cache
from tests.test_views import extra_alias, index_dropped

pytest.importorskip("health_check")

STATES = ("ok", "warning", "error")


@contextmanager
def _state(name: str) -> Iterator[str]:
    """Put the database in ``name`` and yield the alias the surfaces are asked about."""
    if name == "ok":
        yield "default"
    elif name == "warning":
        # A real warning of the check: an INVALID index nobody declares (W050), left by a
        # concurrent unique build over duplicate rows.
        tenant = Tenant.objects.create(name="Acme", slug="acme")
        User.objects.bulk_create(
            [User(tenant=tenant, email=f"u{i}@example.com", name="same") for i in range(2)]
        )
        with connection.cursor() as cursor, pytest.raises(DatabaseError):
            cursor.execute("CREATE UNIQUE INDEX CONCURRENTLY users_dup ON users (tenant_id, name)")
        try:
            yield "default"
        finally:
            with connection.cursor() as cursor:
                cursor.execute("DROP INDEX IF EXISTS users_dup")
    elif name == "error":
        with index_dropped():
            yield "default"
    else:
        with extra_alias("down", HOST="127.0.0.1", PORT="1"):
            yield "down"


def _verdicts(client: Any, alias: str) -> dict[str, bool]:
    """``{surface: healthy}`` for the current state, each surface asked afresh."""
    verdicts = {}
    clear_health_cache()
    verdicts["view"] = client.get("/health/tenant-indexes/").status_code == 200
    clear_health_cache()
    json_page = client.get("/ht/", HTTP_ACCEPT="application/json")
    verdicts["health_check_json"] = json_page.status_code == 200
    clear_health_cache()
    html_page = client.get("/ht/", HTTP_ACCEPT="text/html")
    assert html_page["Content-Type"].startswith("text/html"), html_page.content[:200]
    assert b"TenantIndexes" in html_page.content or b"tenant" in html_page.content.lower()
    verdicts["health_check_html"] = html_page.status_code == 200
    try:
        call_command(
            "check_tenant_indexes", "--database", alias, "tenant_indexes_helpdesk",
            stdout=StringIO(),
        )  # fmt: skip
        verdicts["command"] = True
    except CommandError as e:
        assert e.returncode in (1, 2)
        verdicts["command"] = False
    try:
        call_command("check", "tenant_indexes_helpdesk", databases=[alias], stdout=StringIO(),
                     stderr=StringIO())  # fmt: skip
        verdicts["system_check"] = True
    except SystemCheckError:
        verdicts["system_check"] = False
    return verdicts


@pytest.mark.django_db(transaction=True, databases=["default"])
@pytest.mark.parametrize("fail_level", ["error", "warning"])
@pytest.mark.parametrize("state", STATES)
def test_surfaces__agree_on_the_state(
    client: Any, settings: Any, django_db_blocker: Any, state: str, fail_level: str
) -> None:
    expected = state == "ok" or (state == "warning" and fail_level == "error")
    with _state(state) as alias:
        settings.TENANT_INDEXES = {
            "HEALTH_DATABASES": [alias],
            "HEALTH_APP_LABELS": ["tenant_indexes_helpdesk"],
            "HEALTH_FAIL_LEVEL": fail_level,
        }
        verdicts = _verdicts(client, alias)
    assert verdicts == dict.fromkeys(verdicts, expected), (state, fail_level)
    assert len(verdicts) == 5


@pytest.mark.parametrize("fail_level", ["error", "warning"])
def test_surfaces__agree_that_a_database_down_is_unhealthy(
    client: Any, settings: Any, django_db_blocker: Any, fail_level: str
) -> None:
    # No django_db mark: the test case would refuse connections to an alias it does not
    # know; the blocker is lifted instead, as for any probe against a real server.
    with django_db_blocker.unblock(), _state("down") as alias:
        settings.TENANT_INDEXES = {
            "HEALTH_DATABASES": [alias],
            "HEALTH_APP_LABELS": ["tenant_indexes_helpdesk"],
            "HEALTH_FAIL_LEVEL": fail_level,
        }
        verdicts = _verdicts(client, alias)
    assert verdicts == dict.fromkeys(verdicts, False)
    assert len(verdicts) == 5
