"""Schema-per-shard layouts (``CHECK_SCHEMAS``): the check, the statistics and the repair
on real schemas that each hold a copy of the help desk's tables.

Every test builds its shards with Django's own schema editor (so the index names are the
models' own, the same in every schema) and drops them in ``finally``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.test import override_settings

from tests.support import manage
from tests.support.helpdesk import SEED_INDEXES

SHARDS = ("ti_shard_a", "ti_shard_b")


def shard_schemas(alias: str | None = None) -> list[str]:
    """A ``CHECK_SCHEMAS`` callable (dotted path: this function)."""
    return list(SHARDS)


def _run(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _create_shard(schema: str) -> None:
    """The help desk's tables and indexes in ``schema``, with the models' names."""
    models = apps.get_app_config("tenant_indexes_helpdesk").get_models()
    _run(f'CREATE SCHEMA "{schema}"')
    with connection.schema_editor() as editor:
        editor.execute(f'SET search_path TO "{schema}"')
        for model in models:
            editor.create_model(model)
    # The editor's deferred SQL (foreign keys) ran in the shard too; now back to normal.
    _run("SET search_path TO DEFAULT")


@pytest.fixture
def shards() -> Iterator[tuple[str, ...]]:
    try:
        for schema in SHARDS:
            _create_shard(schema)
        yield SHARDS
    finally:
        for schema in SHARDS:
            _run(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _json(name: str, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = manage.call(name, "--format", "json", *args)
    assert out, err
    return code, json.loads(out)


def _diverge_shard_b() -> None:
    """In shard b only, the (tenant_id, status) index of customers has another name.

    Both shards then have a redundant idx_customers_tenant_id, covered by a different
    index in each: a verdict keyed by bare name mixes them up (the KeyError). In shard a the
    pair is the help desk's own (kept, no W002); in shard b it is not (W002).
    """
    _run('ALTER INDEX "ti_shard_b".idx_customers_tenant_status RENAME TO customers_ts_other')


@pytest.mark.django_db(transaction=True)
def test_schemas__same_index_name_in_two_schemas_keyed_by_schema_in_check_and_stats(
    shards: tuple[str, ...],
) -> None:
    _diverge_shard_b()
    config = {"CHECK_SCHEMAS": list(shards), "CHECK_INCLUDES_USAGE": True}
    with override_settings(TENANT_INDEXES=config):
        code, check = _json("check_tenant_indexes", "tenant_indexes_helpdesk")
        stats_code, stats = _json("tenant_index_stats", "tenant_indexes_helpdesk")
        system_code, _, system_err = manage.call("check", "--database", "default")
    assert code == 1  # shard b's idx_customers_tenant_status is missing (renamed): E001
    redundant = {
        (f["schema"], f["index"]): f["message"]
        for f in check["findings"]
        if f["id"] == "tenant_indexes.W002"
    }
    assert "customers_ts_other" in redundant["ti_shard_b", "idx_customers_tenant_id"]
    assert ("ti_shard_a", "idx_customers_tenant_id") not in redundant  # the shipped pair, kept
    assert stats_code == 0, stats["databases"]
    by_key = {(ix["schema"], ix["name"]): ix for ix in stats["indexes"]}
    assert by_key["ti_shard_a", "idx_customers_tenant_id"]["redundant_to"] == (
        "idx_customers_tenant_status"
    )
    assert by_key["ti_shard_b", "idx_customers_tenant_id"]["redundant_to"] == ("customers_ts_other")
    missing = {(f["schema"], f["index"]) for f in check["findings"] if f["id"].endswith("E001")}
    assert missing == {("ti_shard_b", "idx_customers_tenant_status")}
    # The system check reads the same pass: the E001, never a KeyError traceback.
    assert system_code == 1 and "KeyError" not in system_err, system_err
    assert "tenant_indexes.E001" in system_err


@pytest.mark.django_db(transaction=True)
def test_schemas__dotted_path_to_a_callable_names_the_schemas(shards: tuple[str, ...]) -> None:
    path = f"{__name__}.shard_schemas"
    with override_settings(TENANT_INDEXES={"CHECK_SCHEMAS": path}):
        code, check = _json("check_tenant_indexes", "tenant_indexes_helpdesk")
    assert code == 0, check["findings"]
    schemas = {ix["schema"] for ix in check["indexes"]}
    assert schemas == set(shards)
    assert len(check["indexes"]) == 2 * len(SEED_INDEXES)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tests.nosuch.module.schemas", "does not import"),
        (f"{__name__}._run", "failed"),
    ],
)
def test_schemas__bad_callable_is_exit_2_with_one_line(value: str, message: str) -> None:
    with override_settings(TENANT_INDEXES={"CHECK_SCHEMAS": value}):
        for command in ("check_tenant_indexes", "tenant_index_stats", "repair_tenant_indexes"):
            code, _, err = manage.call(command, "tenant_indexes_helpdesk")
            assert code == 2, (command, err)
            assert message in err and "Traceback" not in err


@pytest.mark.django_db(transaction=True)
def test_schemas__missing_schema_is_e040_in_the_check_and_exit_2_in_stats_and_repair(
    shards: tuple[str, ...],
) -> None:
    with override_settings(TENANT_INDEXES={"CHECK_SCHEMAS": [shards[0], "nosuch"]}):
        code, check = _json("check_tenant_indexes", "tenant_indexes_helpdesk")
        stats_code, stats = _json("tenant_index_stats", "tenant_indexes_helpdesk")
        repair_code, _, repair_err = manage.call("repair_tenant_indexes", "--dry-run")
    assert code == 1
    ids = [(f["id"], f["schema"]) for f in check["findings"]]
    assert ids == [("tenant_indexes.E040", "nosuch")]  # one finding, not one E005 per table
    assert check["status"] == "error"
    assert stats_code == 2 and "nosuch" in stats["databases"][0]["error"]
    assert repair_code == 2 and "nosuch" in repair_err


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_schemas__repair_builds_what_each_shard_lacks_with_qualified_sql(
    shards: tuple[str, ...], jobs: str
) -> None:
    for name in SEED_INDEXES:
        _run(f'DROP INDEX "{shards[1]}"."{name}"')
    _run(f'DROP INDEX "{shards[0]}".idx_users_tenant_id')
    with override_settings(TENANT_INDEXES={"CHECK_SCHEMAS": list(shards)}):
        dry_code, sql, _ = manage.call(
            "repair_tenant_indexes", "--dry-run", "tenant_indexes_helpdesk"
        )
        creates = [line for line in sql.splitlines() if line.startswith("CREATE")]
        assert dry_code == 1 and len(creates) == len(SEED_INDEXES) + 1
        assert all(f' ON "{shards[0]}".' in c or f' ON "{shards[1]}".' in c for c in creates)
        assert sum(f' ON "{shards[0]}"."users"' in c for c in creates) == 1
        code, out, err = manage.call(
            "repair_tenant_indexes", "--jobs", jobs, "tenant_indexes_helpdesk"
        )
        assert code == 0, err
        if jobs != "1":
            assert f"[{len(creates)}/{len(creates)}]" in out
        check_code, check = _json("check_tenant_indexes", "tenant_indexes_helpdesk")
    assert check_code == 0, check["findings"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT schemaname, count(*) FROM pg_indexes WHERE schemaname = ANY(%s) "
            "AND indexname = ANY(%s) GROUP BY 1 ORDER BY 1",
            [list(shards), list(SEED_INDEXES)],
        )
        assert cursor.fetchall() == [(s, len(SEED_INDEXES)) for s in shards]
        # Public was not touched by the shards' repair: still exactly its own eleven.
        cursor.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND indexname = ANY(%s)",
            [list(SEED_INDEXES)],
        )
        assert cursor.fetchone() == (len(SEED_INDEXES),)


@pytest.mark.django_db(transaction=True)
def test_schemas__bad_jobs_is_exit_2() -> None:
    code, _, err = manage.call("repair_tenant_indexes", "--jobs", "0")
    assert code == 2 and "--jobs" in err
