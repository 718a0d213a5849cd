"""The leak catalogue: paths that used to read or change tenant B's rows from A's scope.

Each test runs one path inside tenant A's scope against B's rows on real PostgreSQL and asserts
that B's rows neither come back nor change. Before scoping bound at compile time, each of these
returned or wrote B's rows (or raised at import time).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.db.models.expressions import RawSQL

from tenant_indexes import TenantNotSetError, TenantScopeError, tenant_context
from tests.scopingapp.models import Label, Project, Task
from tests.test_scoping import World, _populate

# Built at import time, with no tenant: must not raise here.
MODULE_LEVEL_TASKS = Task.objects.filter(done=False).order_by("title")


@contextlib.contextmanager
def refused(match: str | None = None) -> Iterator[None]:
    """A refused write is like a constraint violation: it rolls back its savepoint."""
    with pytest.raises(TenantScopeError, match=match), transaction.atomic():
        yield


@pytest.fixture
def world(db: None) -> World:
    return _populate()


# Reads that enter a scoped model from an unscoped one.


def test_join__lookup_from_the_tenant_model_sees_only_the_tenant(world: World) -> None:
    from tenant_indexes.helpdesk.models import Tenant

    with tenant_context(world.a):
        names = set(Tenant.objects.values_list("projects__name", flat=True))
        counts = dict(Tenant.objects.annotate(n=Count("projects")).values_list("slug", "n"))
    assert names == {"a-project", None}
    assert counts == {"a": 1, "b": 0}


def test_join__without_a_tenant_raises(world: World) -> None:
    from tenant_indexes.helpdesk.models import Tenant

    with pytest.raises(TenantNotSetError, match="no tenant is set"):
        list(Tenant.objects.values_list("projects__name"))


def test_through__auto_created_model_sees_only_the_tenant(world: World) -> None:
    through = Task.labels.through
    with tenant_context(world.a):
        pairs = list(through.objects.values_list("task__title", "label__name"))
        assert through.objects.count() == 1
    assert pairs == [("a-task", "a-label")]


def test_through__add_of_another_tenants_row_is_refused(world: World) -> None:
    b_label = Label.objects.unscoped().get(name="b-label")
    with tenant_context(world.a), refused("Label"):
        world.a_task.labels.add(b_label)
    assert Task.labels.through.objects.filter(label=b_label).count() == 1


def test_contenttypes__helpers_stay_in_the_tenant(world: World) -> None:
    ct = ContentType.objects.get_for_model(Task)
    with tenant_context(world.a):
        with pytest.raises(Task.DoesNotExist):
            ct.get_object_for_this_type(pk=world.b_task.pk)
        titles = {t.title for t in ct.get_all_objects_for_this_type()}
    assert titles == {"a-task", "a-task-2"}


def test_select_related__a_join_into_another_tenant_is_cut(world: World) -> None:
    """Bad data (a task of A on B's project) does not bring B's project in."""
    Task.objects.create(tenant=world.a, project=world.b_project, title="a-on-b")
    with tenant_context(world.a):
        titles = [t.title for t in Task.objects.select_related("project").order_by("title")]
        with pytest.raises(Project.DoesNotExist):
            Task.objects.get(title="a-on-b").project  # noqa: B018
    assert titles == ["a-task", "a-task-2"]


# Bound when it runs, not when it is built.


def test_binding__a_queryset_built_in_b_runs_in_a(world: World) -> None:
    with tenant_context(world.b):
        built_in_b = Task.objects.order_by("title")
    with tenant_context(world.a):
        assert [t.title for t in built_in_b] == ["a-task", "a-task-2"]


def test_binding__a_module_level_queryset_runs_in_each_scope(world: World) -> None:
    with pytest.raises(TenantNotSetError):
        list(MODULE_LEVEL_TASKS)
    for tenant, slug in ((world.a, "a"), (world.b, "b")):
        with tenant_context(tenant):
            assert [t.title for t in MODULE_LEVEL_TASKS.all()] == [f"{slug}-task", f"{slug}-task-2"]


def test_binding__for_tenant_binds_joins_and_subqueries(world: World) -> None:
    """``for_tenant()`` names the tenant of the whole statement, so no scope is needed."""
    qs = Task.objects.for_tenant(world.a).filter(project__name__endswith="project")
    assert qs.count() == 2
    in_a = Project.objects.for_tenant(world.a).filter(pk__in=Task.objects.values("project"))
    assert [p.name for p in in_a] == ["a-project"]


# Raw SQL pieces.


def test_raw_sql__rawsql_and_extra_are_refused_in_scope(world: World) -> None:
    with tenant_context(world.a):
        with refused("RawSQL"):
            list(Task.objects.annotate(x=RawSQL("SELECT count(*) FROM scopingapp_task", [])))
        with refused("extra"):
            Task.objects.extra(where=["true"])
        # The explicit escape hatch still takes them.
        assert len(Task.objects.unscoped().extra(where=["true"])) == 4


# Writes.


def test_write__bulk_create_update_conflicts_cannot_overwrite_b(world: World) -> None:
    with tenant_context(world.a), refused("same id"):
        Task.objects.bulk_create(
            [Task(pk=world.b_task.pk, project=world.a_project, title="overwritten")],
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=["title"],
        )
    assert Task.objects.unscoped().get(pk=world.b_task.pk).title == "b-task"


def test_write__update_cannot_move_rows_to_b(world: World) -> None:
    with tenant_context(world.a), refused("another tenant"):
        Task.objects.update(tenant=world.b)
    assert Task.objects.unscoped().filter(tenant=world.b).count() == 2


def test_write__update_cannot_point_at_bs_row(world: World) -> None:
    with tenant_context(world.a), refused("Project"):
        Task.objects.update(project=world.b_project)
    assert Task.objects.unscoped().filter(project=world.b_project).count() == 2


def test_write__save_of_a_new_row_of_b_is_refused(world: World) -> None:
    with tenant_context(world.a), refused():
        Project(tenant=world.b, name="sneaked").save()
    assert not Project.objects.unscoped().filter(name="sneaked").exists()


def test_write__save_of_bs_existing_row_is_refused(world: World) -> None:
    b_task = Task.objects.unscoped().get(pk=world.b_task.pk)
    b_task.title = "changed"
    with tenant_context(world.a):
        with refused():
            b_task.save()  # still tenant B: refused
        b_task.tenant = world.a
        with refused("another tenant"):
            b_task.save()  # claimed for A: the UPDATE finds no A row, the INSERT is refused
    assert Task.objects.unscoped().get(pk=world.b_task.pk).title == "b-task"


def test_write__save_cannot_change_the_tenant_column(world: World) -> None:
    world.a_task.tenant = world.b
    with tenant_context(world.a), refused():
        world.a_task.save()
    assert Task.objects.unscoped().get(pk=world.a_task.pk).tenant_id == world.a.pk


def test_write__create_cannot_link_to_bs_row_so_no_cascade_reaches_b(world: World) -> None:
    with tenant_context(world.a):
        with refused("Project"):
            Task.objects.create(project=world.b_project, title="linked")
        with refused("Project"):
            world.b_project.tasks.create(title="linked")
    assert not Task.objects.unscoped().filter(title="linked").exists()


def test_write__a_delete_in_scope_does_not_cascade_into_b(world: World) -> None:
    """Bad data made on purpose outside any scope: B's task on A's project."""
    Task.objects.create(tenant=world.b, project=world.a_project, title="b-on-a")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with tenant_context(world.a), pytest.raises(IntegrityError), transaction.atomic():
        world.a_project.delete()  # A's tasks go; B's task keeps the project: refused
    assert Task.objects.unscoped().filter(title="b-on-a").exists()


def test_write__get_or_create_refuses_bs_row(world: World) -> None:
    with tenant_context(world.a), refused():
        Task.objects.get_or_create(
            pk=world.b_task.pk, defaults={"project": world.a_project, "title": "x"}
        )
    assert Task.objects.unscoped().get(pk=world.b_task.pk).title == "b-task"


def test_write__foreign_keys_are_checked_in_one_query_per_statement(
    world: World, django_assert_num_queries: object
) -> None:
    tasks = [Task(project=world.a_project, title=f"bulk-{i}") for i in range(50)]
    with tenant_context(world.a):
        with django_assert_num_queries(2):  # type: ignore[operator]
            Task.objects.bulk_create(tasks)  # one check, one INSERT
        mixed = [Task(project=world.a_project, title="ok"), Task(project=world.b_project)]
        with refused("Project"):
            Task.objects.bulk_create(mixed)
    assert Task.objects.unscoped().filter(title__startswith="bulk-").count() == 50


def test_write__a_write_that_names_its_tenant_needs_no_scope(world: World) -> None:
    """Out of any scope, nothing is checked beyond the database's constraints (maintenance)."""
    task = Task.objects.create(tenant=world.b, project=world.b_project, title="named")
    assert task.tenant_id == world.b.pk
