"""The django-health-check backend, with django-health-check installed (the test extra)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

health_check = pytest.importorskip("health_check")

from health_check.exceptions import ServiceUnavailable  # noqa: E402

from tenant_indexes.contrib.health_check import TenantIndexes  # noqa: E402
from tenant_indexes.views import clear_health_cache  # noqa: E402
from tests.test_views import (  # noqa: E402
    DROPPED,
    SEED_APP_ON_DEFAULT,
    add_warning_finding,
    closed_port,
    extra_alias,
    index_dropped,
    install_pass_counter,
)

HT_URL = "/ht/"


@pytest.fixture(autouse=True)
def _fresh_health_cache() -> Iterator[None]:
    clear_health_cache()
    yield
    clear_health_cache()


@pytest.fixture
def default_only(settings: Any) -> Any:
    settings.TENANT_INDEXES = {**SEED_APP_ON_DEFAULT}
    return settings


def test_backend__is_a_health_check_of_the_installed_api() -> None:
    if health_check.VERSION[0] >= 4:
        from health_check.base import HealthCheck
    else:  # 3.24 on Django 4.2
        from health_check.backends import HealthCheck
    assert issubclass(TenantIndexes, HealthCheck)


@pytest.mark.django_db
def test_backend__healthy_database_passes(default_only: Any) -> None:
    TenantIndexes().run()


@pytest.mark.django_db(transaction=True)
def test_backend__dropped_index_is_unavailable_without_naming_it(default_only: Any) -> None:
    with index_dropped():
        with pytest.raises(ServiceUnavailable) as raised:
            TenantIndexes().run()
    message = str(raised.value)
    assert "tenant_indexes.E001 x1" in message
    assert DROPPED not in message and "tickets" not in message
    clear_health_cache()
    TenantIndexes().run()


@pytest.mark.django_db
def test_backend__warning_below_the_fail_level_is_healthy(
    default_only: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_warning_finding(monkeypatch)
    TenantIndexes().run()  # no ServiceWarning: django-health-check would answer 500 for it


@pytest.mark.django_db
def test_backend__fail_level_warning_makes_a_warning_unavailable(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_warning_finding(monkeypatch)
    settings.TENANT_INDEXES = {**SEED_APP_ON_DEFAULT, "HEALTH_FAIL_LEVEL": "warning"}
    with pytest.raises(ServiceUnavailable, match=r"tenant_indexes\.W001 x1"):
        TenantIndexes().run()


def test_backend__database_down_is_unavailable(settings: Any, django_db_blocker: Any) -> None:
    with (
        django_db_blocker.unblock(),
        extra_alias("down", HOST="127.0.0.1", PORT=str(closed_port())),
    ):
        settings.TENANT_INDEXES = {"HEALTH_DATABASES": ["down"]}
        with pytest.raises(ServiceUnavailable, match="could not be checked"):
            TenantIndexes().run()


@pytest.mark.django_db
def test_backend__shares_the_views_cached_pass(
    client: Any, default_only: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    count_passes = install_pass_counter(monkeypatch)
    client.get("/health/tenant-indexes/")
    TenantIndexes().run()
    client.get(HT_URL, HTTP_ACCEPT="application/json")
    assert len(count_passes) == 1


@pytest.mark.django_db(transaction=True)
def test_backend__health_check_view_answers_200_then_500_when_an_index_is_dropped(
    client: Any, default_only: Any
) -> None:
    healthy = client.get(HT_URL, HTTP_ACCEPT="application/json")
    assert healthy.status_code == 200, healthy.content
    assert list(healthy.json().values()) == ["OK"]
    with index_dropped():
        clear_health_cache()
        broken = client.get(HT_URL, HTTP_ACCEPT="application/json")
    assert broken.status_code == 500
    (message,) = broken.json().values()
    assert "tenant_indexes.E001" in message
    assert DROPPED not in message
