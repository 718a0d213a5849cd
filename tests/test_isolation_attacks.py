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

import contextlib
import dataclasses
import io
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django import forms
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connection, connections, transaction
from django.db.models import Count, Exists, F, OuterRef, Subquery, Sum
from django.db.models.expressions import RawSQL
from django.test import Client

from tenant_indexes import TenantNotSetError, TenantScopeError, all_tenants, tenant_context
from tenant_indexes.helpdesk.models import Tenant
from tenant_indexes.rls import rls_tenant, set_rls_tenant
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


# The admin, through Django's test client, as tenant A's staff (TenantScopeMiddleware).


def _autocomplete(term: str) -> tuple[str, dict[str, Any]]:
    query = {"app_label": "scopingapp", "model_name": "comment", "field_name": "task"}
    return "/admin/autocomplete/", {**query, "term": term}


ADMIN_ATTACKS: dict[str, Callable[[World], tuple[str, str, dict[str, Any]]]] = {
    "changelist_search_for_bs_title": lambda w: ("get", "/admin/scopingapp/task/", {"q": "b-"}),
    "changelist_filter_on_bs_tenant": lambda w: (
        "get",
        "/admin/scopingapp/task/",
        {"tenant__id__exact": str(w.b.pk)},
    ),
    "change_view_by_bs_id": lambda w: ("get", f"/admin/scopingapp/task/{w.b_task.pk}/change/", {}),
    "change_post_to_bs_id": lambda w: (
        "post",
        f"/admin/scopingapp/task/{w.b_task.pk}/change/",
        {"project": w.a_project.pk, "title": "changed", "points": 1},
    ),
    "delete_post_of_bs_id": lambda w: (
        "post",
        f"/admin/scopingapp/project/{w.b_project.pk}/delete/",
        {"post": "yes"},
    ),
    "history_of_bs_id": lambda w: ("get", f"/admin/scopingapp/task/{w.b_task.pk}/history/", {}),
    "add_post_linking_bs_project": lambda w: (
        "post",
        "/admin/scopingapp/task/add/",
        {"project": w.b_project.pk, "title": "b-linked", "points": 1},
    ),
    "add_post_picking_bs_task_of_the_autocomplete": lambda w: (
        "post",
        "/admin/scopingapp/comment/add/",
        {"task": w.b_task.pk, "body": "b-linked"},
    ),
    "autocomplete_search_for_bs_title": lambda w: ("get", *_autocomplete("b-")),
    "autocomplete_listing_everything": lambda w: ("get", *_autocomplete("")),
    "bulk_delete_action_with_bs_id": lambda w: (
        "post",
        "/admin/scopingapp/task/",
        {"action": "delete_selected", "_selected_action": [w.b_task.pk], "post": "yes"},
    ),
}


@pytest.mark.parametrize("name", list(ADMIN_ATTACKS))
def test_admin_attack(name: str, world: World) -> None:
    user = User.objects.create_user("staff-a", is_staff=True, last_name="a")
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="scopingapp"))
    client = Client()
    client.force_login(user)
    method, url, data = ADMIN_ATTACKS[name](world)
    before = b_fingerprint(world)
    response = getattr(client, method)(url, data)
    assert response.status_code in (200, 302), response.status_code
    body = response.content.decode()
    assert "b-task" not in body and "b-project" not in body
    assert b_fingerprint(world) == before
    assert not Task.objects.unscoped().filter(title="b-linked").exists()
    assert not Comment.objects.unscoped().filter(body="b-linked").exists()


# SQL under row-level security, as the application's non-owner role. ``Secret`` has the tenant
# policy; the suite connects as a superuser (which always bypasses it), so each test switches
# to roles made for it. Their names carry the process id: roles are shared by the cluster.

APP_ROLE = f"ti_attack_app_{os.getpid()}"
OWNER_ROLE = f"ti_attack_owner_{os.getpid()}"
REFUSED = "refused"  # the database (or, first, the ORM's write check) raises: nothing done
SECRET = Secret._meta.db_table


def _sql(statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def _rowcount(statement: str, params: list[Any] | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return int(cursor.rowcount)


def _bodies(statement: str, params: list[Any] | None = None) -> list[str]:
    return sorted(str(r[0]) for r in _sql(statement, params))


def _copy_out(statement: str) -> list[str]:
    """``COPY ... TO STDOUT`` with whichever driver Django uses."""
    with connection.cursor() as cursor:
        raw = cursor.cursor
        if hasattr(raw, "copy"):  # psycopg 3
            with raw.copy(statement) as copy:
                data = b"".join(bytes(chunk) for chunk in copy)
        else:  # psycopg2
            buffer = io.BytesIO()
            raw.copy_expert(statement, buffer)
            data = buffer.getvalue()
    return sorted(data.decode().splitlines())


def _copy_in(statement: str, text: str) -> None:
    with connection.cursor() as cursor:
        raw = cursor.cursor
        if hasattr(raw, "copy"):  # psycopg 3
            with raw.copy(statement) as copy:
                copy.write(text)
        else:  # psycopg2
            raw.copy_expert(statement, io.StringIO(text))


@contextlib.contextmanager
def as_role(role: str) -> Iterator[None]:
    _sql(f"SET ROLE {role}")
    try:
        yield
    finally:
        _sql("RESET ROLE")


def _create_roles() -> None:
    tenants = Tenant._meta.db_table
    _sql(f"CREATE ROLE {APP_ROLE} NOLOGIN")
    _sql(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    _sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {SECRET} TO {APP_ROLE}")
    _sql(f"GRANT USAGE ON SEQUENCE {SECRET}_id_seq TO {APP_ROLE}")
    _sql(f"GRANT SELECT ON {tenants} TO {APP_ROLE}")


def _drop_roles() -> None:
    for role in (APP_ROLE, OWNER_ROLE):
        if _sql("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]):
            _sql(f"DROP OWNED BY {role}")
            _sql(f"DROP ROLE {role}")


@pytest.fixture
def rls_world(world: World) -> World:
    """The world, the app role (rolled back with the test) and two functions to call."""
    _create_roles()
    _sql(
        "CREATE FUNCTION ti_attack_bodies() RETURNS SETOF text LANGUAGE sql STABLE "
        f"AS $$ SELECT body FROM {SECRET} $$"
    )
    _sql(
        "CREATE FUNCTION ti_attack_wipe(t uuid) RETURNS integer LANGUAGE plpgsql AS $$ "
        f"DECLARE n integer; BEGIN DELETE FROM {SECRET} WHERE tenant_id = t; "
        "GET DIAGNOSTICS n = ROW_COUNT; RETURN n; END $$"
    )
    return world


@dataclasses.dataclass(frozen=True)
class SQLAttack:
    run: Callable[[World], Any]
    in_scope: Any  # the result inside rls_tenant(A), or REFUSED
    no_scope: Any  # the result with no tenant set, or REFUSED


def _prepared(w: World) -> list[str]:
    _sql("PREPARE ti_attack_q(uuid) AS SELECT body FROM scopingapp_secret WHERE tenant_id = $1")
    try:
        return _bodies("EXECUTE ti_attack_q(%s)", [w.b.pk])
    finally:
        _sql("DEALLOCATE ti_attack_q")


def _rawsql_on_unscoped_model(w: World) -> list[Any]:
    """The ORM cannot refuse it (the query's model is not scoped): only the policy guards it."""
    steal = RawSQL(f"SELECT max(body) FROM {SECRET} WHERE tenant_id = %s", [w.b.pk])
    return list(Tenant.objects.annotate(s=steal).values_list("s", flat=True))


def _all_tenants_orm(w: World) -> list[str]:
    with all_tenants():
        return sorted(Secret.objects.values_list("body", flat=True))


SQL_ATTACKS: dict[str, SQLAttack] = {
    "cursor_select_everything": SQLAttack(
        lambda w: _bodies(f"SELECT body FROM {SECRET}"), ["a-secret"], []
    ),
    "cursor_select_bs_rows": SQLAttack(
        lambda w: _bodies(f"SELECT body FROM {SECRET} WHERE tenant_id = %s", [w.b.pk]), [], []
    ),
    "cursor_update_bs_rows": SQLAttack(
        lambda w: _rowcount(f"UPDATE {SECRET} SET body = 'x' WHERE tenant_id = %s", [w.b.pk]),
        0,
        0,
    ),
    "cursor_delete_everything": SQLAttack(lambda w: _rowcount(f"DELETE FROM {SECRET}"), 1, 0),
    "cursor_insert_a_row_of_b": SQLAttack(
        lambda w: _sql(f"INSERT INTO {SECRET} (tenant_id, body) VALUES (%s, 'x')", [w.b.pk]),
        REFUSED,
        REFUSED,
    ),
    "cursor_update_moving_rows_to_b": SQLAttack(
        lambda w: _rowcount(f"UPDATE {SECRET} SET tenant_id = %s", [w.b.pk]), REFUSED, 0
    ),
    "copy_table_to_stdout": SQLAttack(
        lambda w: [
            line.split("\t")[1] for line in _copy_out(f"COPY {SECRET} (id, body) TO STDOUT")
        ],
        ["a-secret"],
        [],
    ),
    "copy_query_to_stdout": SQLAttack(
        lambda w: _copy_out(f"COPY (SELECT body FROM {SECRET}) TO STDOUT"), ["a-secret"], []
    ),
    "copy_a_row_of_b_from_stdin": SQLAttack(
        lambda w: _copy_in(f"COPY {SECRET} (tenant_id, body) FROM STDIN", f"{w.b.pk}\tx\n"),
        REFUSED,
        REFUSED,
    ),
    "function_reading_the_table": SQLAttack(
        lambda w: _bodies("SELECT * FROM ti_attack_bodies()"), ["a-secret"], []
    ),
    "function_deleting_bs_rows": SQLAttack(
        lambda w: _sql("SELECT ti_attack_wipe(%s)", [w.b.pk])[0][0], 0, 0
    ),
    "cte_select": SQLAttack(
        lambda w: _bodies(f"WITH s AS (SELECT * FROM {SECRET}) SELECT body FROM s"),
        ["a-secret"],
        [],
    ),
    "cte_deleting_bs_rows": SQLAttack(
        lambda w: _sql(
            f"WITH d AS (DELETE FROM {SECRET} WHERE tenant_id = %s RETURNING 1) "
            "SELECT count(*) FROM d",
            [w.b.pk],
        )[0][0],
        0,
        0,
    ),
    "prepared_statement_for_bs_rows": SQLAttack(_prepared, [], []),
    "rawsql_on_an_unscoped_model": SQLAttack(_rawsql_on_unscoped_model, [None, None], [None, None]),
    "orm_unscoped_escape_hatch": SQLAttack(
        lambda w: sorted(Secret.objects.unscoped().values_list("body", flat=True)), ["a-secret"], []
    ),
    "orm_unscoped_raw": SQLAttack(
        lambda w: [s.body for s in Secret.objects.unscoped().raw(f"SELECT * FROM {SECRET}")],
        ["a-secret"],
        [],
    ),
    "orm_all_tenants": SQLAttack(_all_tenants_orm, ["a-secret"], []),
    "orm_unscoped_update_of_bs_rows": SQLAttack(
        lambda w: Secret.objects.unscoped().filter(tenant=w.b).update(body="x"), 0, 0
    ),
    "orm_unscoped_create_of_a_row_of_b": SQLAttack(
        lambda w: Secret.objects.unscoped().create(tenant=w.b, body="x"), REFUSED, REFUSED
    ),
}


@pytest.mark.parametrize("scope", ["in_a", "no_scope"])
@pytest.mark.parametrize("name", list(SQL_ATTACKS))
def test_sql_attack_as_the_app_role(name: str, scope: str, rls_world: World) -> None:
    case = SQL_ATTACKS[name]
    expect = case.in_scope if scope == "in_a" else case.no_scope
    before = b_fingerprint(rls_world)
    outer = rls_tenant(rls_world.a) if scope == "in_a" else transaction.atomic()
    with as_role(APP_ROLE), outer:
        if expect == REFUSED:
            errors = (DatabaseError, connection.Database.Error, TenantScopeError)
            with pytest.raises(errors, match=r"row-level security|Refusing"), transaction.atomic():
                case.run(rls_world)
        else:
            with transaction.atomic():
                assert case.run(rls_world) == expect
    assert b_fingerprint(rls_world) == before


def test_sql_attack__a_statement_prepared_in_bs_transaction_runs_with_as_tenant(
    rls_world: World,
) -> None:
    """The policy reads the setting when the statement runs, not when it was prepared."""
    with as_role(APP_ROLE):
        with rls_tenant(rls_world.b):
            _sql(f"PREPARE ti_attack_all AS SELECT body FROM {SECRET}")
            assert _bodies("EXECUTE ti_attack_all") == ["b-secret"]
        try:
            with rls_tenant(rls_world.a):
                assert _bodies("EXECUTE ti_attack_all") == ["a-secret"]
            assert _bodies("EXECUTE ti_attack_all") == []
        finally:
            _sql("DEALLOCATE ti_attack_all")


# What the ORM cannot guard: raw SQL outside a scoped model's queryset (RLS guards it, above).


def test_known_gap__the_orm_alone_does_not_guard_raw_sql(world: World) -> None:
    """On a table without a policy, raw SQL in A's scope reads B's rows: only RLS stops it."""
    task_table = Task._meta.db_table
    steal = RawSQL(f"SELECT max(title) FROM {task_table} WHERE tenant_id = %s", [world.b.pk])
    with tenant_context(world.a):
        assert _bodies(f"SELECT title FROM {task_table} WHERE tenant_id = %s", [world.b.pk]) == [
            "b-task",
            "b-task-2",
        ]
        assert set(Tenant.objects.annotate(s=steal).values_list("s", flat=True)) == {"b-task-2"}


# What row-level security does not cover: SQL that chooses its own tenant or its own rights.


def test_known_gap__sql_that_sets_the_tenant_itself_picks_the_tenant(rls_world: World) -> None:
    """The policy trusts the setting: code that runs set_config() itself is not isolated."""
    with as_role(APP_ROLE), rls_tenant(rls_world.a):
        _sql("SELECT set_config('tenant_indexes.tenant', %s, true)", [str(rls_world.b.pk)])
        assert _bodies(f"SELECT body FROM {SECRET}") == ["b-secret"]


def test_known_gap__a_view_or_definer_function_runs_with_its_owners_rights(
    rls_world: World,
) -> None:
    """A view (unless ``security_invoker``) or a ``SECURITY DEFINER`` function owned by a role
    that bypasses the policy reads every tenant; a ``security_invoker`` view is guarded."""
    _sql(f"CREATE VIEW ti_attack_view AS SELECT body FROM {SECRET}")
    _sql(
        "CREATE VIEW ti_attack_invoker_view WITH (security_invoker = true) "
        f"AS SELECT body FROM {SECRET}"
    )
    _sql(
        "CREATE FUNCTION ti_attack_definer() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER "
        f"AS $$ SELECT body FROM {SECRET} $$"
    )
    _sql(f"GRANT SELECT ON ti_attack_view, ti_attack_invoker_view TO {APP_ROLE}")
    with as_role(APP_ROLE), rls_tenant(rls_world.a):
        assert _bodies("SELECT body FROM ti_attack_invoker_view") == ["a-secret"]
        assert _bodies("SELECT body FROM ti_attack_view") == ["a-secret", "b-secret"]
        assert _bodies("SELECT * FROM ti_attack_definer()") == ["a-secret", "b-secret"]


# FORCE ROW LEVEL SECURITY, attacked through the ORM as the table's owner.


@pytest.fixture
def owned_secret(rls_world: World) -> World:
    """``Secret``'s table owned by a non-superuser role (rolled back with the test)."""
    _sql("SET CONSTRAINTS ALL IMMEDIATE")  # no pending trigger events before ALTER TABLE
    _sql(f"CREATE ROLE {OWNER_ROLE} NOLOGIN")
    _sql(f"GRANT USAGE ON SCHEMA public TO {OWNER_ROLE}")
    _sql(f"ALTER TABLE {SECRET} OWNER TO {OWNER_ROLE}")
    return rls_world


def test_force__without_it_the_owner_bypasses_the_policy(owned_secret: World) -> None:
    with as_role(OWNER_ROLE):
        assert sorted(Secret.objects.unscoped().values_list("body", flat=True)) == [
            "a-secret",
            "b-secret",
        ]


def test_force__the_owner_sees_only_the_scoped_tenant_through_the_orm(owned_secret: World) -> None:
    w = owned_secret
    _sql(f"ALTER TABLE {SECRET} FORCE ROW LEVEL SECURITY")
    before = b_fingerprint(w)
    with as_role(OWNER_ROLE):
        with rls_tenant(w.a):
            assert list(Secret.objects.values_list("body", flat=True)) == ["a-secret"]
            # The ORM's escape hatches lift the ORM's filter, not the database's.
            assert list(Secret.objects.unscoped().values_list("body", flat=True)) == ["a-secret"]
            assert _all_tenants_orm(w) == ["a-secret"]
            assert Secret.objects.unscoped().filter(tenant=w.b).update(body="x") == 0
            assert Secret.objects.create(body="a-new").tenant_id == w.a.pk
        with transaction.atomic():  # the policy's tenant without the ORM's scope
            set_rls_tenant(w.a)
            with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
                Secret.objects.unscoped().create(tenant=w.b, body="x")  # WITH CHECK refuses
            set_rls_tenant(None)  # the value lasts as long as the (test's) transaction
        assert list(Secret.objects.unscoped().values_list("body", flat=True)) == []
        assert _all_tenants_orm(w) == []
        assert Secret.objects.unscoped().filter(tenant=w.b).delete()[0] == 0
    assert b_fingerprint(w) == before


# Two threads with different scopes at once, each on its own connection (rows committed).


@pytest.fixture
def committed_world(transactional_db: None) -> Iterator[World]:
    w = _populate()
    for tenant in (w.a, w.b):
        Secret.objects.create(tenant=tenant, body=f"{tenant.slug}-secret")
    _create_roles()
    try:
        yield w
    finally:
        _drop_roles()


def _race(work: Callable[[Tenant], list[str]], w: World, rounds: int = 50) -> dict[str, set]:
    """Run ``work`` in two threads, A's and B's, in lock step; return what each one saw."""
    barrier = threading.Barrier(2, timeout=60)
    seen: dict[str, set] = {"a": set(), "b": set()}
    errors: list[BaseException] = []

    def worker(tenant: Tenant) -> None:
        try:
            for _ in range(rounds):
                barrier.wait()
                seen[tenant.slug].update(work(tenant))
        except BaseException as e:  # handed to the main thread
            errors.append(e)
            barrier.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(t,)) for t in (w.a, w.b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return seen


def test_threads__two_orm_scopes_at_once_never_cross(committed_world: World) -> None:
    def work(tenant: Tenant) -> list[str]:
        with tenant_context(tenant):
            titles = list(Task.objects.values_list("title", flat=True))
            joined = Tenant.objects.values_list("tasks__title", flat=True)
            return [*titles, *(t for t in joined if t is not None)]

    seen = _race(work, committed_world)
    assert seen == {"a": {"a-task", "a-task-2"}, "b": {"b-task", "b-task-2"}}


def test_threads__two_rls_tenants_at_once_never_cross(committed_world: World) -> None:
    def work(tenant: Tenant) -> list[str]:
        with rls_tenant(tenant):
            _sql(f"SET LOCAL ROLE {APP_ROLE}")
            return _bodies(f"SELECT body FROM {SECRET}")

    seen = _race(work, committed_world)
    assert seen == {"a": {"a-secret"}, "b": {"b-secret"}}
