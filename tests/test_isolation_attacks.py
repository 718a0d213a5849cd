"""Isolation by attack: inside tenant A's scope, every read and write path against B's rows.

Each case is one path, written the way an attacker (or a careless caller) would try it, on real
PostgreSQL. Two layers:

- **The ORM** with the scoped managers (no row-level security involved): every case runs inside
  ``tenant_context(A)`` and must either be refused (an exception, the savepoint rolled back) or
  return exactly what A alone would see. After every case B's rows are compared with a
  fingerprint taken before it: nothing of B may have changed.
- **SQL under row-level security** as the application's non-owner role (the ``Secret`` table
  has the tenant policy): ``connection.cursor()`` inside and outside a scope, ``COPY``, a
  function, a CTE, a prepared statement. Paths the ORM cannot guard (raw SQL, ``RawSQL()`` on
  an unscoped model) are shown guarded here. The ``FORCE`` variant is attacked through the ORM
  as the table's owner.

Two threads with different scopes at once close the module, for both layers.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django import forms
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connection, connections, transaction
from django.db.models import Count, Exists, F, OuterRef, Subquery, Sum
from django.db.models.expressions import RawSQL

from tenant_indexes import TenantNotSetError, TenantScopeError, all_tenants, tenant_context
from tenant_indexes.helpdesk.models import Tenant
from tests.scopingapp.models import Comment, Label, Project, Secret, Task
from tests.test_scoping import World, _populate

# Built at import time, with no tenant, like a project's forms module.
PROJECT_CHOICE = forms.ModelChoiceField(Project.objects.all())
LABEL_CHOICES = forms.ModelMultipleChoiceField(Label.objects.all())


class TaskForm(forms.ModelForm):
    class Meta:
        model = Task
        fields = ["project", "title", "points", "labels"]


ANY = object()  # the case's result is not compared; B's fingerprint still is


@dataclasses.dataclass(frozen=True)
class Attack:
    run: Callable[[World], Any]
    expect: Any  # A's own result, or the exception that refuses the path
    setup: Callable[[World], None] | None = None  # bad data, made outside any scope


ORM_ATTACKS: dict[str, Attack] = {}


def attack(expect: Any = ANY, setup: Callable[[World], None] | None = None) -> Callable[..., Any]:
    def register(run: Callable[[World], Any]) -> Callable[[World], Any]:
        ORM_ATTACKS[run.__name__] = Attack(run, expect, setup)
        return run

    return register


def b_task(w: World) -> Task:
    return Task.objects.unscoped().get(pk=w.b_task.pk)


def b_project(w: World) -> Project:
    return Project.objects.unscoped().get(pk=w.b_project.pk)


def b_label() -> Label:
    return Label.objects.unscoped().get(name="b-label")


def b_fingerprint(w: World) -> dict[str, list[tuple[Any, ...]]]:
    """Every value of every row of tenant B, through the escape hatch."""
    with all_tenants():
        through = Task.labels.through.objects.filter(task__tenant=w.b) | (
            Task.labels.through.objects.filter(label__tenant=w.b)
        )
        return {
            "project": list(Project.objects.filter(tenant=w.b).order_by("pk").values_list()),
            "task": list(Task.objects.filter(tenant=w.b).order_by("pk").values_list()),
            "label": list(Label.objects.filter(tenant=w.b).order_by("pk").values_list()),
            "comment": list(Comment.objects.filter(account=w.b).order_by("pk").values_list()),
            "task_labels": list(through.order_by("pk").values_list()),
            "secret": list(Secret.objects.filter(tenant=w.b).order_by("pk").values_list()),
        }


# Reads that enter a scoped model from an unscoped one.


@attack(expect={"a-project", None})
def reverse_lookup_values_list_from_tenant(w: World) -> Any:
    return set(Tenant.objects.values_list("projects__name", flat=True))


@attack(expect={"a": 1, "b": 0})
def reverse_count_annotation_from_tenant(w: World) -> Any:
    return dict(Tenant.objects.annotate(n=Count("projects")).values_list("slug", "n"))


@attack(expect={"s": 2})
def aggregate_across_fk_from_tenant(w: World) -> Any:
    return Tenant.objects.aggregate(s=Sum("tasks__points"))


@attack(expect={"s": 2})
def aggregate_across_fk_from_scoped_model(w: World) -> Any:
    return Project.objects.aggregate(s=Sum("tasks__points"))


@attack(expect=[])
def related_manager_of_bs_tenant_instance(w: World) -> Any:
    return list(w.b.tasks.all())


@attack(expect=[("a-task", "a-label")])
def through_model_values_list(w: World) -> Any:
    return list(Task.labels.through.objects.values_list("task__title", "label__name"))


@attack(expect=["a-task", "a-project"])
def values_list_across_two_relations(w: World) -> Any:
    titles = sorted(Comment.objects.values_list("task__title", flat=True))
    return [*titles, *Label.objects.values_list("tasks__project__name", flat=True)]


@attack(expect=Task.DoesNotExist)
def contenttype_get_object_for_this_type(w: World) -> Any:
    return ContentType.objects.get_for_model(Task).get_object_for_this_type(pk=w.b_task.pk)


@attack(expect={"a-task", "a-task-2"})
def contenttype_get_all_objects_for_this_type(w: World) -> Any:
    return {
        t.title for t in ContentType.objects.get_for_model(Task).get_all_objects_for_this_type()
    }


@attack(expect=["a-task", "a-task-2"])
def queryset_built_in_b_evaluated_in_a(w: World) -> Any:
    with tenant_context(w.b):
        built = Task.objects.order_by("title")
    return [t.title for t in built]


@attack(expect=[])
def filter_on_bs_tenant(w: World) -> Any:
    return list(Task.objects.filter(tenant=w.b))


@attack(expect=Task.DoesNotExist)
def get_by_bs_primary_key(w: World) -> Any:
    return Task.objects.get(pk=w.b_task.pk)


@attack(expect=[])
def base_manager_by_bs_primary_key(w: World) -> Any:
    return list(Task._base_manager.filter(pk=w.b_task.pk))


@attack(expect=Task.DoesNotExist)
def refresh_from_db_of_bs_instance(w: World) -> Any:
    return b_task(w).refresh_from_db()


@attack(expect=TenantScopeError)
def for_tenant_b_inside_a(w: World) -> Any:
    return list(Task.objects.for_tenant(w.b))


# Raw SQL pieces: refused on scoped models (row-level security guards the rest, below).


@attack(expect=TenantScopeError)
def raw_on_scoped_manager(w: World) -> Any:
    return list(Task.objects.raw("SELECT * FROM scopingapp_task"))


@attack(expect=TenantScopeError)
def rawsql_annotation(w: World) -> Any:
    return list(Task.objects.annotate(x=RawSQL("SELECT max(title) FROM scopingapp_task", [])))


@attack(expect=TenantScopeError)
def rawsql_in_filter(w: World) -> Any:
    return list(Task.objects.filter(id__in=RawSQL("SELECT id FROM scopingapp_task", [])))


@attack(expect=TenantScopeError)
def rawsql_in_order_by(w: World) -> Any:
    return list(Task.objects.order_by(RawSQL("title", [])))


@attack(expect=TenantScopeError)
def extra_where(w: World) -> Any:
    return list(Task.objects.extra(where=["true"]))


# Joins, subqueries, expressions, evaluation paths.


@attack(expect={"a": ["a-task", "a-task-2"], "b": []})
def prefetch_related_from_tenant(w: World) -> Any:
    return {
        t.slug: sorted(x.title for x in t.tasks.all())
        for t in Tenant.objects.prefetch_related("tasks")
    }


def _a_task_on_bs_project(w: World) -> None:
    Task.objects.create(tenant=w.a, project=w.b_project, title="a-on-b")


@attack(expect=(["a-task", "a-task-2"], ["a-comment"]), setup=_a_task_on_bs_project)
def select_related_into_bs_row(w: World) -> Any:
    tasks = [t.title for t in Task.objects.select_related("project").order_by("title")]
    comments = [c.body for c in Comment.objects.select_related("task__project")]
    return tasks, comments


@attack(expect=Project.DoesNotExist, setup=_a_task_on_bs_project)
def forward_foreign_key_into_bs_row(w: World) -> Any:
    return Task._base_manager.get(title="a-on-b").project


@attack(expect={"a": "a-task", "b": None})
def subquery_outerref_from_tenant(w: World) -> Any:
    first = Task.objects.filter(tenant=OuterRef("pk")).order_by("title").values("title")[:1]
    return dict(Tenant.objects.annotate(t=Subquery(first)).values_list("slug", "t"))


@attack(expect={"a": True, "b": False})
def exists_outerref_from_tenant(w: World) -> Any:
    has = Exists(Task.objects.filter(tenant=OuterRef("pk")))
    return dict(Tenant.objects.annotate(has=has).values_list("slug", "has"))


@attack(expect={"a-task", "a-task-2", None})
def f_expression_join_from_tenant(w: World) -> Any:
    return set(Tenant.objects.annotate(x=F("tasks__title")).values_list("x", flat=True))


@attack(expect=0)
def f_expression_update_of_bs_row(w: World) -> Any:
    return Task.objects.filter(pk=w.b_task.pk).update(points=F("points") + 1)


@attack(expect=(["a-task", "a-task-2"], {"a-task", "a-task-2", None}))
def iterator(w: World) -> Any:
    tasks = [t.title for t in Task.objects.order_by("title").iterator(chunk_size=1)]
    joined = set(Tenant.objects.values_list("tasks__title", flat=True).iterator(chunk_size=1))
    return tasks, joined


@attack(expect=["a-task"])
def in_bulk_with_bs_primary_key(w: World) -> Any:
    return [t.title for t in Task.objects.in_bulk([w.a_task.pk, w.b_task.pk]).values()]


@attack(expect=["a-project", "a-task", "a-task-2"])
def union_with_another_scoped_model(w: World) -> Any:
    names = Task.objects.values_list("title").union(Project.objects.values_list("name"))
    return sorted(n for (n,) in names)


@attack(expect=[])
def intersection_with_bs_row(w: World) -> Any:
    return list(Task.objects.filter(pk=w.b_task.pk).intersection(Task.objects.all()))


@attack(expect=[])
def difference_reveals_nothing(w: World) -> Any:
    return list(Task.objects.filter(tenant=w.b).difference(Task.objects.none()))


@attack(expect=([{"project__name": "a-project", "n": 2}], [("a", 2), ("b", None)]))
def values_on_annotations(w: World) -> Any:
    per_project = list(Task.objects.values("project__name").annotate(n=Count("id")))
    per_tenant = list(
        Tenant.objects.values("slug").annotate(n=Sum("tasks__points")).values_list("slug", "n")
    )
    return per_project, sorted(per_tenant)


@attack(expect=([], []))
def dates_and_datetimes_through_bs_rows(w: World) -> Any:
    dates = list(Project.objects.filter(pk=w.b_project.pk).dates("tenant__created_at", "day"))
    stamps = list(Tenant.objects.filter(tasks__title="b-task").datetimes("created_at", "day"))
    return dates, stamps


@attack(expect=(False, False))
def exists_of_bs_rows(w: World) -> Any:
    return (
        Task.objects.filter(pk=w.b_task.pk).exists(),
        Tenant.objects.filter(tasks__title="b-task").exists(),
    )


@attack(expect=2)
def count(w: World) -> Any:
    return Task.objects.count()


async def _acount() -> int:
    return await Task.objects.acount()


@attack(expect=2)
def async_orm_in_the_scope(w: World) -> Any:
    return async_to_sync(_acount)()


@attack(expect=TenantNotSetError)
def a_new_thread_started_inside_the_scope(w: World) -> Any:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            Task.objects.count()
        except BaseException as e:  # handed to the main thread
            errors.append(e)
        finally:
            connections.close_all()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    raise errors[0]


# Writes.


@attack(expect=TenantScopeError)
def bulk_create_update_conflicts_on_bs_id(w: World) -> Any:
    return Task.objects.bulk_create(
        [Task(pk=w.b_task.pk, project=w.a_project, title="overwritten")],
        update_conflicts=True,
        unique_fields=["id"],
        update_fields=["title"],
    )


@attack(expect=TenantScopeError)
def bulk_create_ignore_conflicts_on_bs_id(w: World) -> Any:
    return Task.objects.bulk_create(
        [Task(pk=w.b_task.pk, project=w.a_project, title="x")], ignore_conflicts=True
    )


@attack(expect=TenantScopeError)
def bulk_create_of_a_row_of_b(w: World) -> Any:
    return Task.objects.bulk_create([Task(tenant=w.b, project=w.b_project, title="x")])


@attack(expect=0)
def bulk_update_of_bs_row(w: World) -> Any:
    task = b_task(w)
    task.title = "changed"
    return Task.objects.bulk_update([task], ["title"])


@attack(expect=TenantScopeError)
def update_tenant_to_b(w: World) -> Any:
    return Task.objects.update(tenant=w.b)


@attack(expect=TenantScopeError)
def update_foreign_key_to_bs_row(w: World) -> Any:
    return Task.objects.update(project=w.b_project)


@attack(expect=0)
def update_of_bs_rows_by_filter(w: World) -> Any:
    return Task.objects.filter(tenant=w.b).update(title="changed")


@attack(expect=TenantScopeError)
def save_of_bs_existing_row(w: World) -> Any:
    task = b_task(w)
    task.title = "changed"
    task.save()


@attack(expect=DatabaseError)
def save_update_fields_of_bs_row(w: World) -> Any:
    task = b_task(w)
    task.title = "changed"
    task.save(update_fields=["title"])  # the bound UPDATE matches no row: Django raises


@attack(expect=TenantScopeError)
def save_of_a_new_row_of_b(w: World) -> Any:
    Project(tenant=w.b, name="sneaked").save()


@attack(expect=TenantScopeError)
def save_moving_as_row_to_b(w: World) -> Any:
    task = Task.objects.get(pk=w.a_task.pk)
    task.tenant = w.b
    task.save()


@attack(expect=TenantScopeError)
def create_linking_bs_row(w: World) -> Any:
    return Task.objects.create(project=w.b_project, title="linked")


@attack(expect=TenantScopeError)
def create_through_bs_related_manager(w: World) -> Any:
    return b_project(w).tasks.create(title="linked")


@attack(expect=TenantScopeError)
def create_comment_on_bs_task(w: World) -> Any:
    return Comment.objects.create(task=w.b_task, body="x")


@attack(expect=TenantScopeError)
def get_or_create_bs_primary_key(w: World) -> Any:
    return Task.objects.get_or_create(
        pk=w.b_task.pk, defaults={"project": w.a_project, "title": "x"}
    )


@attack(expect=TenantScopeError)
def update_or_create_bs_primary_key(w: World) -> Any:
    return Task.objects.update_or_create(
        pk=w.b_task.pk, defaults={"project": w.a_project, "title": "x"}
    )


@attack(expect=TenantScopeError)
def through_create_with_bs_label(w: World) -> Any:
    return Task.labels.through.objects.create(task=w.a_task, label=b_label())


@attack(expect=TenantScopeError)
def m2m_add_of_bs_label(w: World) -> Any:
    w.a_task.labels.add(b_label())


@attack(expect=TenantScopeError)
def m2m_set_to_bs_label(w: World) -> Any:
    w.a_task.labels.set([b_label()])


@attack(expect=ANY)
def m2m_clear_of_bs_task(w: World) -> Any:
    b_task(w).labels.clear()


@attack(expect=ANY)
def delete_of_bs_instance(w: World) -> Any:
    return b_project(w).delete()


@attack(expect=0)
def delete_of_bs_rows_by_filter(w: World) -> Any:
    return Task.objects.filter(tenant=w.b).delete()[0]


@attack(expect=ANY)
def delete_everything_in_scope(w: World) -> Any:
    Comment.objects.all().delete()
    Task.labels.through.objects.all().delete()
    return Task.objects.all().delete()


def _bs_task_on_as_project(w: World) -> None:
    Task.objects.create(tenant=w.b, project=w.a_project, title="b-on-a")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


@attack(expect=IntegrityError, setup=_bs_task_on_as_project)
def delete_cascade_into_b(w: World) -> Any:
    return Project.objects.get(pk=w.a_project.pk).delete()


# Forms, as a module-level form a view renders and validates in the request's scope.


@attack(expect=ValidationError)
def model_choice_field_posting_bs_pk(w: World) -> Any:
    return PROJECT_CHOICE.clean(w.b_project.pk)


@attack(expect=ValidationError)
def model_multiple_choice_field_posting_bs_pk(w: World) -> Any:
    return LABEL_CHOICES.clean([b_label().pk])


@attack(expect=(["", "a-project"], False, ["labels", "project"]))
def model_form_lists_and_refuses(w: World) -> Any:
    choices = [str(label) for _, label in TaskForm().fields["project"].choices]
    posted = TaskForm(
        data={"project": w.b_project.pk, "title": "x", "points": 1, "labels": [b_label().pk]}
    )
    return (
        ["" if c.startswith("---") else c for c in choices],
        posted.is_valid(),
        sorted(posted.errors),
    )


@pytest.fixture
def world(db: None) -> World:
    w = _populate()
    for tenant in (w.a, w.b):
        Secret.objects.create(tenant=tenant, body=f"{tenant.slug}-secret")
    return w


@pytest.mark.parametrize("name", list(ORM_ATTACKS))
def test_orm_attack(name: str, world: World) -> None:
    case = ORM_ATTACKS[name]
    if case.setup is not None:
        case.setup(world)
    before = b_fingerprint(world)
    with tenant_context(world.a):
        if isinstance(case.expect, type) and issubclass(case.expect, BaseException):
            with pytest.raises(case.expect), transaction.atomic():
                case.run(world)
        else:
            with transaction.atomic():
                got = case.run(world)
            if case.expect is not ANY:
                assert got == case.expect
    assert b_fingerprint(world) == before


def test_the_fingerprint_sees_any_change_of_b(world: World) -> None:
    """The check every case ends with is not vacuous: a write through the escape hatch shows."""
    before = b_fingerprint(world)
    Task.labels.through.objects.filter(task=world.b_task).delete()
    assert b_fingerprint(world) != before
