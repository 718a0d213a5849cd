"""The health endpoint against the real database of the run: status codes, access, cache, bounds."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.db import connection, connections
from django.test import RequestFactory

from tenant_indexes import health, views
from tenant_indexes.findings import E_PROBE_FAILED, Finding, Level
from tenant_indexes.views import clear_health_cache, probe_health, tenant_index_health

URL = "/health/tenant-indexes/"
TOKEN = "probe-token-0123456789"
# The index the drop/rebuild scenarios take away, and how the seed migration builds it.
DROPPED = "idx_tickets_tenant_status"
REBUILD_SQL = f"CREATE INDEX IF NOT EXISTS {DROPPED} ON tickets (tenant_id, status)"
# The seed app on the test database only: other tests migrate apps back and forth, and the
# endpoint's behaviour, not the state they leave, is under test here.
SEED_APP_ON_DEFAULT = {
    "HEALTH_DATABASES": ["default"],
    "HEALTH_APP_LABELS": ["tenant_indexes_helpdesk"],
}


@pytest.fixture(autouse=True)
def _fresh_health_cache() -> Iterator[None]:
    clear_health_cache()
    yield
    clear_health_cache()
    # A pass abandoned at HEALTH_TIMEOUT ends when its test closes the hung server; wait
    # for that (bounded), or the next test's pass would be refused as "still running".
    for abandoned in list(views._abandoned_passes):
        abandoned.join(10)
        assert not abandoned.is_alive(), "an abandoned health pass did not end"


@pytest.fixture
def health_settings(settings: Any) -> Any:
    """Only the test database, with a token configured."""
    settings.TENANT_INDEXES = {"HEALTH_TOKEN": TOKEN, **SEED_APP_ON_DEFAULT}
    return settings


@pytest.fixture
def count_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return install_pass_counter(monkeypatch)


def install_pass_counter(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count catalog passes: every call of the core check, which still does the real work."""
    calls: list[int] = []
    real_check = health.check_databases

    def counting_check(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real_check(*args, **kwargs)

    monkeypatch.setattr(health, "check_databases", counting_check)
    return calls


@contextmanager
def index_dropped(name: str = DROPPED, rebuild_sql: str = REBUILD_SQL) -> Iterator[None]:
    """Drop a seed index for the block and build it again afterwards, whatever happens."""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {name}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(rebuild_sql)


@contextmanager
def extra_alias(name: str, **overrides: Any) -> Iterator[str]:
    """A database alias that exists only for the block: a copy of default, with overrides."""
    settings_dict = {**connections.settings["default"], **overrides}
    settings_dict["TEST"] = {**settings_dict.get("TEST", {})}
    connections.settings[name] = settings_dict
    try:
        yield name
    finally:
        del connections.settings[name]
        try:
            del connections[name]
        except AttributeError:
            pass


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: a hung database server.

    The kernel completes the handshake from the listen backlog, so libpq waits for the
    server's first message until its connect_timeout fires.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@contextmanager
def hung_database(
    django_db_blocker: Any, settings: Any, *, connect_timeout: float, health_timeout: float
) -> Iterator[None]:
    """The view checks only the alias ``hung``, on a :func:`silent_server`, with a token."""
    with (
        django_db_blocker.unblock(),
        silent_server() as port,
        extra_alias("hung", HOST="127.0.0.1", PORT=str(port)),
    ):
        settings.TENANT_INDEXES = {
            "HEALTH_TOKEN": TOKEN,
            "HEALTH_DATABASES": ["hung"],
            "HEALTH_CONNECT_TIMEOUT": connect_timeout,
            "HEALTH_TIMEOUT": health_timeout,
        }
        yield


def unknown(response: Any) -> dict[str, Any]:
    """The document of a 503 answer with status "unknown"."""
    assert response.status_code == 503
    document: dict[str, Any] = response.json()
    assert document["status"] == "unknown"
    return document


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def backend_exits(pid: int, within: float = 5.0) -> bool:
    """Whether the server backend ``pid`` is gone within ``within`` seconds.

    A backend leaves pg_stat_activity a moment after its client closed the socket, so this
    polls for that condition (bounded) rather than sleeping for a guessed time.
    """
    deadline = time.monotonic() + within
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # pg_stat_activity is read once per transaction unless the snapshot is cleared.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                return True
            time.sleep(0.01)
    return False


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


# Status codes against the real catalog.


@pytest.mark.django_db
def test_view__healthy_database_answers_200(client: Any, health_settings: Any) -> None:
    response = client.get(URL, **bearer())
    assert response.status_code == 200, response.json()
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    document = response.json()
    assert document["status"] in ("ok", "warning")
    assert {"status", "databases", "indexes", "findings"} <= set(document)
    assert not [f for f in document["findings"] if f["level"] == "error"]


@pytest.mark.django_db(transaction=True)
def test_view__dropped_index_answers_503_and_rebuilt_answers_200_again(
    client: Any, health_settings: Any
) -> None:
    with index_dropped():
        clear_health_cache()
        broken = client.get(URL, **bearer())
        assert broken.status_code == 503
        document = broken.json()
        assert document["status"] == "error"
        assert any(
            f["id"] == "tenant_indexes.E001" and f["index"] == DROPPED for f in document["findings"]
        ), [(f["id"], f["table"], f["message"]) for f in document["findings"]]
        anonymous = client.get(URL)
        assert anonymous.status_code == 503
        assert anonymous.json() == {"status": "error"}
    clear_health_cache()
    rebuilt = client.get(URL, **bearer())
    assert rebuilt.status_code == 200, [(f["id"], f["table"]) for f in rebuilt.json()["findings"]]
    assert rebuilt.json()["status"] in ("ok", "warning")


@pytest.fixture
def warning_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    add_warning_finding(monkeypatch)


def add_warning_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pass also reports one warning, through the core's finding-producer hook."""

    def one_warning(tables: Any, snapshot: Any) -> list[Finding]:
        return [
            Finding(
                id="tenant_indexes.W001",
                level=Level.WARNING,
                database="default",
                table="tickets",
                index=DROPPED,
                message="unused",
                hint="look at it",
            )
        ]

    monkeypatch.setattr(health, "FINDING_PRODUCERS", [*health.FINDING_PRODUCERS, one_warning])


@pytest.mark.django_db
def test_view__warning_is_200_at_the_default_fail_level(
    client: Any, health_settings: Any, warning_finding: None
) -> None:
    response = client.get(URL)
    assert (response.status_code, response.json()) == (200, {"status": "warning"})


@pytest.mark.django_db
def test_view__fail_level_warning_turns_warnings_into_503(
    client: Any, health_settings: Any, warning_finding: None
) -> None:
    health_settings.TENANT_INDEXES = {
        **health_settings.TENANT_INDEXES,
        "HEALTH_FAIL_LEVEL": "warning",
    }
    response = client.get(URL)
    assert (response.status_code, response.json()) == (503, {"status": "warning"})


@pytest.mark.django_db
def test_view__included_urlconf_serves_the_same_view(client: Any, health_settings: Any) -> None:
    from django.urls import reverse

    assert reverse("tenant_indexes:health") == "/included/"
    assert client.get("/included/").json().keys() == {"status"}


# Access control.


@pytest.mark.django_db
def test_view__anonymous_caller_gets_the_status_only(client: Any, health_settings: Any) -> None:
    response = client.get(URL)
    assert response.status_code == 200
    assert response.json().keys() == {"status"}
    assert DROPPED not in response.content.decode()


@pytest.mark.django_db
def test_view__token_caller_gets_the_details(client: Any, health_settings: Any) -> None:
    document = client.get(URL, HTTP_AUTHORIZATION=f"bearer  {TOKEN} ").json()
    assert {"databases", "indexes", "findings"} <= set(document)
    assert DROPPED in {index["name"] for index in document["indexes"]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer", "Bearer "],
)
def test_view__wrong_or_malformed_token_is_anonymous(
    client: Any, health_settings: Any, authorization: str
) -> None:
    response = client.get(URL, HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 200
    assert response.json().keys() == {"status"}


@pytest.mark.django_db
@pytest.mark.parametrize("configured", [None, "", [""]])
def test_view__no_configured_token_never_matches_an_empty_one(
    client: Any, settings: Any, configured: Any
) -> None:
    settings.TENANT_INDEXES = {"HEALTH_TOKEN": configured, **SEED_APP_ON_DEFAULT}
    for authorization in ("Bearer ", "Bearer", ""):
        assert client.get(URL, HTTP_AUTHORIZATION=authorization).json().keys() == {"status"}


@pytest.mark.django_db
def test_view__any_of_several_tokens_unlocks_details_during_rotation(
    client: Any, settings: Any
) -> None:
    settings.TENANT_INDEXES = {
        "HEALTH_TOKEN": ["old-token", TOKEN],
        **SEED_APP_ON_DEFAULT,
    }
    assert "findings" in client.get(URL, **bearer("old-token")).json()
    assert "findings" in client.get(URL, **bearer(TOKEN)).json()
    assert client.get(URL, **bearer("older-token")).json().keys() == {"status"}


@pytest.mark.django_db
def test_view__token_is_compared_in_constant_time(
    client: Any, health_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison goes through hmac.compare_digest, never ==."""
    compared: list[tuple[bytes, bytes]] = []
    real_compare = views.hmac.compare_digest

    def recording_compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(views.hmac, "compare_digest", recording_compare)
    client.get(URL, **bearer("guess"))
    assert compared == [(b"guess", TOKEN.encode())]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("is_staff", "is_active", "detailed"),
    [(True, True, True), (False, True, False), (True, False, False)],
)
def test_view__staff_user_gets_the_details(
    health_settings: Any, is_staff: bool, is_active: bool, detailed: bool
) -> None:
    request = RequestFactory().get(URL)
    request.user = User(username="probe", is_staff=is_staff, is_active=is_active)
    response = tenant_index_health(request)
    assert response.status_code == 200
    assert ("findings" in json.loads(response.content)) is detailed


@pytest.mark.django_db
def test_view__anonymous_user_object_gets_the_status_only(health_settings: Any) -> None:
    request = RequestFactory().get(URL)
    request.user = AnonymousUser()
    assert json.loads(tenant_index_health(request).content).keys() == {"status"}


@pytest.mark.django_db
def test_view__prometheus_needs_details_access(client: Any, health_settings: Any) -> None:
    anonymous = client.get(URL, {"format": "prometheus"})
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    scraped = client.get(URL, {"format": "prometheus"}, **bearer())
    assert scraped.status_code == 200
    assert scraped["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "tenant_indexes" in scraped.content.decode()


@pytest.mark.django_db
def test_view__unknown_format_is_a_clear_400(client: Any, health_settings: Any) -> None:
    response = client.get(URL, {"format": "xml"})
    assert response.status_code == 400
    assert "json or prometheus" in response.json()["error"]


@pytest.mark.django_db
def test_view__only_get_and_head(client: Any, health_settings: Any) -> None:
    assert client.post(URL).status_code == 405
    assert client.head(URL).status_code == 200


@pytest.mark.django_db
def test_view__bad_fail_level_is_improperly_configured(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.TENANT_INDEXES = {"HEALTH_FAIL_LEVEL": "fatal"}
    with pytest.raises(ImproperlyConfigured, match="HEALTH_FAIL_LEVEL"):
        probe_health()


# The cache bounds the catalog passes.


@pytest.mark.django_db
def test_cache__a_burst_of_probes_costs_one_catalog_pass(
    client: Any, health_settings: Any, count_passes: list[int]
) -> None:
    for _ in range(20):
        assert client.get(URL).status_code == 200
    client.get(URL, **bearer())
    client.get(URL, {"format": "prometheus"}, **bearer())
    assert len(count_passes) == 1


@pytest.mark.django_db
def test_cache__concurrent_probes_wait_for_the_one_pass_in_flight(
    health_settings: Any, count_passes: list[int]
) -> None:
    start = threading.Barrier(16)
    statuses: list[str] = []

    def probe() -> None:
        start.wait()
        statuses.append(probe_health().status)

    threads = [threading.Thread(target=probe) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 16
    assert len(set(statuses)) == 1
    assert len(count_passes) == 1


@pytest.mark.django_db
def test_cache__expires_after_the_configured_seconds(
    health_settings: Any, count_passes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(views, "_monotonic", lambda: now[0])
    probe_health()
    now[0] += 4.9
    probe_health()
    assert len(count_passes) == 1
    now[0] += 0.2
    probe_health()
    assert len(count_passes) == 2


@pytest.mark.django_db
def test_cache__zero_seconds_runs_a_pass_per_probe(settings: Any, count_passes: list[int]) -> None:
    settings.TENANT_INDEXES = {"HEALTH_CACHE_SECONDS": 0, **SEED_APP_ON_DEFAULT}
    for _ in range(3):
        probe_health()
    assert len(count_passes) == 3


@pytest.mark.django_db
def test_cache__a_shared_django_cache_serves_other_workers(
    settings: Any, count_passes: list[int]
) -> None:
    """With HEALTH_CACHE_ALIAS the result lives in the Django cache, not in the process."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "health": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "h"},
    }
    settings.TENANT_INDEXES = {"HEALTH_CACHE_ALIAS": "health", **SEED_APP_ON_DEFAULT}
    first = probe_health()
    views._local_cache.clear()  # what another process would see: nothing local
    assert probe_health() == first
    assert len(count_passes) == 1
    clear_health_cache()
    probe_health()
    assert len(count_passes) == 2


# Bounds: a dedicated, timed-out connection; a database that is down.
# The down-database tests use no test database: the extra alias exists only while they run,
# and Django's test case would refuse a connection to an alias it was not told about.


@pytest.mark.django_db
def test_pass__runs_on_a_dedicated_connection_with_a_connect_timeout_and_closes_it(
    health_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    real_check = health.check_databases

    def observing_check(*args: Any, **kwargs: Any) -> Any:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            seen["pid"] = cursor.fetchone()[0]
        seen["connect_timeout"] = connections["default"].get_connection_params()["connect_timeout"]
        return real_check(*args, **kwargs)

    monkeypatch.setattr(health, "check_databases", observing_check)
    probe_health()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own_pid = cursor.fetchone()[0]
    assert seen["pid"] != own_pid
    assert seen["connect_timeout"] == 2
    assert backend_exits(seen["pid"]), "the pass left its connection open"


def test_down_database__closed_port_answers_503_quickly(
    client: Any, settings: Any, django_db_blocker: Any
) -> None:
    with (
        django_db_blocker.unblock(),
        extra_alias("down", HOST="127.0.0.1", PORT=str(closed_port())),
    ):
        settings.TENANT_INDEXES = {"HEALTH_TOKEN": TOKEN, "HEALTH_DATABASES": ["down"]}
        response = client.get(URL, **bearer())
    assert response.status_code == 503
    document = response.json()
    assert document["status"] == "unknown"
    assert [(d["alias"], bool(d["error"])) for d in document["databases"]] == [("down", True)]
    # Answered by the refused connection itself, not cut off by the probe's wall clock.
    assert E_PROBE_FAILED not in [f["id"] for f in document["findings"]]


def test_down_database__missing_unix_socket_answers_503(
    client: Any, settings: Any, django_db_blocker: Any
) -> None:
    with (
        django_db_blocker.unblock(),
        extra_alias("down", HOST="/nonexistent/tenant-indexes-socket-dir", PORT="5432"),
    ):
        settings.TENANT_INDEXES = {"HEALTH_DATABASES": ["down"]}
        response = client.get(URL)
    assert (response.status_code, response.json()) == (503, {"status": "unknown"})


def test_down_database__hung_server_is_cut_off_by_the_connect_timeout(
    client: Any, settings: Any, django_db_blocker: Any
) -> None:
    """A server that accepts TCP and never answers: libpq gives up after connect_timeout."""
    with hung_database(django_db_blocker, settings, connect_timeout=2, health_timeout=10):
        response = client.get(URL, **bearer())
    document = unknown(response)
    assert "timeout" in document["databases"][0]["error"], document["databases"]
    # libpq's connect timeout ended it, not the probe's 10 s wall clock (which reports E101).
    assert E_PROBE_FAILED not in [f["id"] for f in document["findings"]]


def test_down_database__wall_clock_bound_frees_the_worker(
    client: Any, settings: Any, django_db_blocker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if a pass hangs past its timeouts, the request answers at HEALTH_TIMEOUT; the
    abandoned pass blocks new ones until it ends, so passes never pile up."""
    count_passes = install_pass_counter(monkeypatch)
    # The abandoned pass outlives the block below; closing the server ends it.
    with hung_database(django_db_blocker, settings, connect_timeout=30, health_timeout=0.5):
        response = client.get(URL, **bearer())
        anonymous = client.get(URL)
        clear_health_cache()
        while_abandoned = client.get(URL, **bearer())
    document = unknown(response)
    assert [f["id"] for f in document["findings"]] == [E_PROBE_FAILED]
    assert "0.5s" in document["findings"][0]["message"]  # the wall clock, not the 30 s connect
    assert anonymous.json() == {"status": "unknown"}  # the failure is cached like a result
    assert while_abandoned.status_code == 503
    assert "still running" in while_abandoned.json()["findings"][0]["message"]
    assert len(count_passes) == 1


@pytest.mark.django_db
def test_pass__unexpected_error_answers_503_unknown_not_a_traceback(
    client: Any, health_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_check(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(health, "check_databases", broken_check)
    response = client.get(URL, **bearer())
    assert response.status_code == 503
    finding = response.json()["findings"][0]
    assert finding["id"] == E_PROBE_FAILED
    assert "RuntimeError: boom" in finding["message"]


@pytest.mark.django_db
def test_pass__unknown_alias_in_settings_answers_503_with_the_reason(
    client: Any, settings: Any
) -> None:
    settings.TENANT_INDEXES = {"HEALTH_TOKEN": TOKEN, "HEALTH_DATABASES": ["nope"]}
    response = client.get(URL, **bearer())
    assert response.status_code == 503
    (finding,) = response.json()["findings"]
    assert finding["id"] == E_PROBE_FAILED
    assert "unknown database alias 'nope'" in finding["message"]
