"""``repair_tenant_indexes --dry-run`` on a partitioned table (``partitionplan.py``), on the
real server: the printed statements are the build's own plan.

Each scenario is laid twice on a fresh table: once the plan's statements are run one by one
through a raw autocommit session, as ``psql`` would, and must leave the parent index valid;
once the real build runs, and the DDL it sends must be the plan's, statement for statement.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection, models
from django.test.utils import CaptureQueriesContext

from tenant_indexes import partitionplan
from tenant_indexes.build import build_index_concurrently
from tests.test_partitions import (
    INDEX,
    TABLE,
    _build,
    _create,
    _drop,
    _leaf_indexes,
    _model,
    _parent_valid,
    _raw,
    _run,
)

_DDL = ("CREATE", "DROP", "ALTER", "LOCK")


def _index() -> models.Index:
    return models.Index(fields=["tenant_id"], name=INDEX)


def _plan() -> list[str]:
    with connection.schema_editor(atomic=False) as editor:
        return partitionplan.partitioned_index_sql(editor, _model(), _index(), "public")


def _build_ddl() -> list[str]:
    """The DDL the real build sends, in order."""
    with CaptureQueriesContext(connection) as queries:
        with connection.schema_editor(atomic=False) as editor:
            build_index_concurrently(editor, _model(), _index())
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith(_DDL)]


def _as_run(plan: list[str], parent_existed: bool) -> list[str]:
    """The plan as the build sends it: no ``IF NOT EXISTS``, no ``BEGIN``/``COMMIT`` (the
    build's transaction is Django's), and no create of a parent index that was there."""
    statements = [s.replace(" IF NOT EXISTS", "") for s in plan if s not in ("BEGIN", "COMMIT")]
    return statements[1:] if parent_existed else statements


def _plan_runs_and_is_the_build(layout: str, setup: Callable[[], None]) -> list[str]:
    """The plan for ``setup``'s state, run in psql, then compared with the real build's DDL
    on the same state laid again; returns the plan."""
    try:
        _create(layout)
        setup()
        parent_existed = _parent_valid() is not None
        plan = _plan()
        with _raw() as psql:
            for statement in plan:
                psql.execute(statement)
        assert _parent_valid() is True
        planned_leaves = _leaf_indexes()
        assert planned_leaves and all(valid for _, _, valid in planned_leaves)
    finally:
        _drop()
    try:
        _create(layout)
        setup()
        assert _plan() == plan  # nothing of the first lay-out is left to change it
        assert _build_ddl() == _as_run(plan, parent_existed)
        assert _leaf_indexes() == planned_leaves
    finally:
        _drop()
    return plan


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("layout", ["hash", "range"])
def test_partition_plan__after_a_rename_swap_names_the_free_child_and_makes_the_parent_valid(
    layout: str,
) -> None:
    """The swap of ChangeIndexConcurrently renames only the parent: every partition keeps an
    index called ``<partition>_<index>``, attached to the renamed parent."""

    def renamed() -> None:
        _build(_model())
        _run(f'ALTER INDEX "{INDEX}" RENAME TO "{INDEX}_ti_old"')

    plan = _plan_runs_and_is_the_build(layout, renamed)
    text = "\n".join(plan)
    leaves = [f"{TABLE}_{n}" for n in range(2 if layout == "range" else 4)]
    if layout == "range":
        leaves += [f"{TABLE}_sub_0", f"{TABLE}_sub_1"]
    for leaf in leaves:
        assert f'ATTACH PARTITION "public"."{leaf}_{INDEX}_1"' in text
        assert f'"{leaf}_{INDEX}"' not in text  # the taken name is never created nor attached
    if layout == "range":
        # The last attach under the sub-partition completes its index: the server marks the
        # root's valid too, so the root is locked first, as the build does.
        lock = plan.index(f'LOCK TABLE ONLY "public"."{TABLE}" IN ACCESS EXCLUSIVE MODE')
        assert plan[lock - 1] == "BEGIN" and plan[lock + 2] == "COMMIT"
        assert f'"{TABLE}_sub_1_{INDEX}_1"' in plan[lock + 1]
        assert sum(s.startswith("LOCK TABLE") for s in plan) == 1


@pytest.mark.django_db(transaction=True)
def test_partition_plan__with_half_the_partitions_attached_builds_only_the_rest() -> None:
    def half() -> None:
        _run(f"CREATE INDEX {INDEX} ON ONLY {TABLE} (tenant_id)")
        for n in (0, 1):
            _run(f"CREATE INDEX {TABLE}_{n}_{INDEX} ON {TABLE}_{n} (tenant_id)")
            _run(f"ALTER INDEX {INDEX} ATTACH PARTITION {TABLE}_{n}_{INDEX}")

    plan = _plan_runs_and_is_the_build("hash", half)
    assert not any(f'"{TABLE}_0' in s or f'"{TABLE}_1' in s for s in plan), plan
    built = [s for s in plan if s.startswith("CREATE INDEX CONCURRENTLY")]
    attached = [s for s in plan if " ATTACH PARTITION " in s]
    assert len(built) == len(attached) == 2
    assert all(f'"{TABLE}_2' in s or f'"{TABLE}_3' in s for s in built + attached)


@pytest.mark.django_db(transaction=True)
def test_partition_plan__a_valid_identical_unattached_leaf_index_is_attached_not_rebuilt() -> None:
    def own_index() -> None:
        _run(f"CREATE INDEX own_name_on_1 ON {TABLE}_1 (tenant_id)")
        _run(f"CREATE INDEX other_definition_on_2 ON {TABLE}_2 (status)")

    plan = _plan_runs_and_is_the_build("hash", own_index)
    assert f'ALTER INDEX "public"."{INDEX}" ATTACH PARTITION "public"."own_name_on_1"' in plan
    assert not any(s.startswith("CREATE") and f'"{TABLE}_1"' in s for s in plan), plan
    # An index of another definition is no candidate: that leaf gets its own.
    assert any(s.startswith("CREATE INDEX CONCURRENTLY") and f'"{TABLE}_2"' in s for s in plan)
    assert "other_definition_on_2" not in "\n".join(plan)


@pytest.mark.django_db(transaction=True)
def test_partition_plan__in_a_read_only_session_plans_without_adopting_and_still_finishes() -> None:
    """No temporary table can be made there to compare definitions with: the leaf's valid
    identical index is left alone and the leaf gets its own, which still completes."""
    try:
        _create("hash")
        _run(f"CREATE INDEX own_name_on_1 ON {TABLE}_1 (tenant_id)")
        _run("SET default_transaction_read_only = on")
        try:
            plan = _plan()
        finally:
            _run("SET default_transaction_read_only = off")
        assert sum(s.startswith("CREATE INDEX CONCURRENTLY") for s in plan) == 4
        with _raw() as psql:
            for statement in plan:
                psql.execute(statement)
        assert _parent_valid() is True
    finally:
        _drop()
