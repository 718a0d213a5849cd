"""Fail-closed tenant scoping: every way a user might read across tenants, on real PostgreSQL.

Two tenants, A and B, own parallel rows. Each test tries one path from inside A's scope (or
with no scope) and proves that B's rows never come back, or that the path raises. The paths
that cannot be guarded are tested too, so the documentation stays exact.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.db.models import Count, Prefetch, Subquery, Sum
from django.http import HttpResponse
from django.test import AsyncRequestFactory, RequestFactory, override_settings

from tenant_indexes import (
    TenantNotSetError,
    TenantScopeError,
    TenantScopeMiddleware,
    all_tenants,
    get_current_tenant,
    get_current_tenant_id,
    tenant_context,
)
from tenant_indexes.helpdesk.models import Tenant
from tests.scopingapp.models import Comment, Label, Project, Task


@dataclass
class World:
    a: Tenant
    b: Tenant
    a_project: Project
    b_project: Project
    a_task: Task
    b_task: Task


def _populate() -> World:
    a = Tenant.objects.create(name="A", slug="a")
    b = Tenant.objects.create(name="B", slug="b")
    rows = {}
    for tenant, points in ((a, 1), (b, 100)):
        # create(tenant=...) needs no current tenant: the write names its tenant.
        project = Project.objects.create(tenant=tenant, name=f"{tenant.slug}-project")
        label = Label.objects.create(tenant=tenant, name=f"{tenant.slug}-label")
        task = Task.objects.create(
            tenant=tenant, project=project, title=f"{tenant.slug}-task", points=points
        )
        Task.objects.create(
            tenant=tenant, project=project, title=f"{tenant.slug}-task-2", points=points
        )
        task.labels.through.objects.create(task=task, label=label)
        Comment.objects.create(account=tenant, task=task, body=f"{tenant.slug}-comment")
        rows[tenant.slug] = (project, task)
    return World(a, b, rows["a"][0], rows["b"][0], rows["a"][1], rows["b"][1])


@pytest.fixture
def world(db: None) -> World:
    return _populate()


@pytest.fixture
def migrated_world(transactional_db: None) -> World:
    """Rows committed for real (async ORM threads use their own connections)."""
    return _populate()


# No current tenant: every read path raises.

NO_TENANT_READS = {
    "all": lambda w: list(Project.objects.all()),
    "filter": lambda w: list(Task.objects.filter(title__startswith="b")),
    "get": lambda w: Task.objects.get(pk=w.b_task.pk),
    "exclude": lambda w: list(Task.objects.exclude(title="a-task")),
    "count": lambda w: Task.objects.count(),
    "exists": lambda w: Task.objects.exists(),
    "values": lambda w: list(Task.objects.values("title")),
    "values_list": lambda w: list(Task.objects.values_list("title", flat=True)),
    "aggregate": lambda w: Task.objects.aggregate(Sum("points")),
    "annotate": lambda w: list(Project.objects.annotate(n=Count("tasks"))),
    "in_bulk": lambda w: Task.objects.in_bulk([w.a_task.pk, w.b_task.pk]),
    "first": lambda w: Task.objects.first(),
    "iterator": lambda w: list(Task.objects.iterator()),
    "raw": lambda w: list(Task.objects.raw("SELECT * FROM scopingapp_task")),
    "get_or_create": lambda w: Task.objects.get_or_create(title="b-task"),
    "update": lambda w: Task.objects.update(done=True),
    "delete": lambda w: Task.objects.all().delete(),
    "reverse fk manager": lambda w: list(w.b_project.tasks.all()),
    "many-to-many manager": lambda w: list(w.b_task.labels.all()),
    "reverse m2m manager": lambda w: list(Label.objects.unscoped().get(name="b-label").tasks.all()),
    "tenant's reverse manager": lambda w: list(w.b.projects.all()),
    "custom tenant field": lambda w: list(Comment.objects.all()),
    "_default_manager": lambda w: list(Task._default_manager.all()),
    "db_manager": lambda w: list(Task.objects.db_manager("default").all()),
    "using": lambda w: list(Task.objects.using("default")),
    "subquery": lambda w: list(
        Project.objects.unscoped().filter(pk__in=Subquery(Task.objects.values("project")))
    ),
    "union": lambda w: list(Task.objects.unscoped().union(Task.objects.all())),
    "async count": lambda w: asyncio.run(Task.objects.acount()),
    "prefetch through related manager": lambda w: list(
        Project.objects.unscoped().prefetch_related("tasks")
    ),
}


@pytest.mark.parametrize("path", sorted(NO_TENANT_READS))
def test_no_tenant__read_path_raises(world: World, path: str) -> None:
    with pytest.raises(TenantNotSetError, match="no tenant is set"):
        NO_TENANT_READS[path](world)


def test_no_tenant__error_names_the_ways_out(world: World) -> None:
    queryset = Task.objects.all()  # building raises nothing; running does
    with pytest.raises(TenantNotSetError) as excinfo:
        list(queryset)
    message = str(excinfo.value)
    for hint in ("tenant_context(tenant)", "for_tenant(tenant)", ".unscoped()", "all_tenants()"):
        assert hint in message


def test_no_tenant__update_and_delete_touched_nothing(world: World) -> None:
    for path in ("update", "delete"):
        with pytest.raises(TenantNotSetError):
            NO_TENANT_READS[path](world)
    assert Task.objects.unscoped().filter(done=False).count() == 4


# Inside tenant A's scope: B's rows never come back.


def test_scope__filter_and_get_never_return_the_other_tenant(world: World) -> None:
    with tenant_context(world.a):
        assert set(Task.objects.values_list("title", flat=True)) == {"a-task", "a-task-2"}
        assert not Task.objects.filter(pk=world.b_task.pk).exists()
        assert not Task.objects.filter(tenant=world.b).exists()
        assert not Task.objects.filter(title="b-task").exists()
        assert set(Task.objects.exclude(title="a-task").values_list("title", flat=True)) == {
            "a-task-2"
        }
        with pytest.raises(Task.DoesNotExist):
            Task.objects.get(pk=world.b_task.pk)
        assert Task.objects.in_bulk([world.a_task.pk, world.b_task.pk]).keys() == {world.a_task.pk}


def test_scope__values_aggregates_and_annotations_stay_in_the_tenant(world: World) -> None:
    with tenant_context(world.a.pk):  # a primary key works as well as an instance
        assert Task.objects.aggregate(total=Sum("points"))["total"] == 2
        assert Task.objects.count() == 2
        assert list(Task.objects.values("points").annotate(n=Count("id"))) == [
            {"points": 1, "n": 2}
        ]
        assert sorted(Project.objects.values_list("name", flat=True)) == ["a-project"]


def test_scope__lookups_across_relations_start_from_the_tenant(world: World) -> None:
    with tenant_context(world.a):
        assert not Task.objects.filter(project__name="b-project").exists()
        assert not Project.objects.filter(tasks__title="b-task").exists()
        assert not Comment.objects.filter(task__title="b-task").exists()
        assert not Task.objects.filter(project__in=Project.objects.unscoped()).exclude(
            tenant=world.a
        )
        in_a = Project.objects.unscoped().filter(pk__in=Subquery(Task.objects.values("project")))
        assert [p.name for p in in_a] == ["a-project"]


def test_scope__related_managers_add_the_tenant_filter(world: World) -> None:
    """Even a foreign key that points across tenants (bad data) does not leak through them."""
    # A row of tenant B attached to A's project: a data-integrity bug we simulate on purpose.
    Task.objects.create(tenant=world.b, project=world.a_project, title="b-task-in-a-project")
    with tenant_context(world.a):
        assert sorted(t.title for t in world.a_project.tasks.all()) == ["a-task", "a-task-2"]
        assert world.a_project.tasks.count() == 2
        assert not world.b_project.tasks.exists()
        assert not world.b_task.labels.exists()
        assert not world.b.projects.exists()
        assert [c.body for c in world.a_task.comments.all()] == ["a-comment"]
        projects = Project.objects.prefetch_related("tasks")
        assert [len(p.tasks.all()) for p in projects] == [2]
    with tenant_context(world.b):
        assert [t.title for t in world.a_project.tasks.all()] == ["b-task-in-a-project"]


def test_scope__prefetch_of_an_unscoped_root_is_still_scoped(world: World) -> None:
    with tenant_context(world.a):
        projects = list(
            Project.objects.unscoped()
            .order_by("name")
            .prefetch_related(Prefetch("tasks", to_attr="prefetched"))
        )
    assert [len(p.prefetched) for p in projects] == [2, 0]


def test_scope__update_and_delete_touch_only_the_tenant(world: World) -> None:
    with tenant_context(world.a):
        assert Task.objects.update(done=True) == 2
        Comment.objects.all().delete()
    assert Task.objects.unscoped().filter(tenant=world.b, done=False).count() == 2
    assert Comment.objects.unscoped().filter(account=world.b).count() == 1


def test_scope__for_tenant_of_another_tenant_raises(world: World) -> None:
    with tenant_context(world.a):
        assert Task.objects.for_tenant(world.a).count() == 2
        with pytest.raises(TenantScopeError):
            Task.objects.for_tenant(world.b)
        # Chained on a scoped queryset it can only narrow: A AND B is nothing.
        assert not Task.objects.all().for_tenant(world.b).exists()


def test_scope__raw_refuses_to_run(world: World) -> None:
    with tenant_context(world.a), pytest.raises(TenantScopeError, match="unscoped"):
        Task.objects.raw("SELECT * FROM scopingapp_task")


def test_scope__writes_take_the_tenant_and_refuse_another(world: World) -> None:
    with tenant_context(world.a):
        task = Task.objects.create(project=world.a_project, title="new")
        assert task.tenant_id == world.a.pk
        obj, created = Task.objects.get_or_create(
            title="b-task", defaults={"project": world.a_project}
        )
        assert created and obj.tenant_id == world.a.pk  # B's "b-task" was not found
        world.a_project.tasks.create(title="via related manager")
        with pytest.raises(TenantScopeError):
            Task.objects.create(tenant=world.b, project=world.b_project, title="x")
        with pytest.raises(TenantScopeError):
            Task.objects.bulk_create([Task(tenant=world.b, project=world.b_project, title="x")])
        Task.objects.bulk_create([Task(project=world.a_project, title="bulk")])
    assert Task.objects.unscoped().filter(tenant=world.b).count() == 2
    assert Task.objects.unscoped().filter(tenant=world.a).count() == 6


def test_no_tenant__writes_that_name_their_tenant_work(world: World) -> None:
    Task.objects.bulk_create([Task(tenant=world.a, project=world.a_project, title="bulk")])
    with pytest.raises(TenantNotSetError):
        Task.objects.bulk_create([Task(project=world.a_project, title="no tenant")])
    with pytest.raises(TenantNotSetError):
        Task.objects.create(project=world.a_project, title="no tenant")
    assert Task.objects.for_tenant(world.a).count() == 3


def test_scope__sql_filters_on_the_tenant_column(world: World) -> None:
    """The scope is a plain ``tenant_id = %s`` condition, which the tenant index serves."""
    with tenant_context(world.a):
        sql, params = Task.objects.filter(done=False).query.sql_with_params()
        comment_sql, _ = Comment.objects.all().query.sql_with_params()
    assert '"scopingapp_task"."tenant_id" = %s' in sql
    assert world.a.pk in params
    assert '"scopingapp_comment"."account_id" = %s' in comment_sql


# Escape hatches.


def test_unscoped__returns_every_tenant(world: World) -> None:
    assert Task.objects.unscoped().count() == 4
    with tenant_context(world.a):
        assert Task.objects.unscoped().count() == 4
        assert len(list(Task.objects.unscoped().raw("SELECT * FROM scopingapp_task"))) == 4


def test_all_tenants__returns_every_tenant_and_restores(world: World) -> None:
    with tenant_context(world.a):
        with all_tenants():
            assert Task.objects.count() == 4
            assert get_current_tenant_id() is None
            with tenant_context(world.b):
                assert Task.objects.count() == 2
        assert Task.objects.count() == 2
        assert get_current_tenant() is world.a
    with pytest.raises(TenantNotSetError):
        Task.objects.count()


def test_for_tenant__without_a_current_tenant_is_the_explicit_form(world: World) -> None:
    assert sorted(Task.objects.for_tenant(world.b).values_list("title", flat=True)) == [
        "b-task",
        "b-task-2",
    ]
    with pytest.raises(TenantNotSetError):
        Task.objects.for_tenant(None)


# Django's internal paths keep working (and are documented as unguarded).


def test_internals__cascade_delete_refresh_and_save_work_without_a_tenant(world: World) -> None:
    world.a_task.title = "renamed"
    world.a_task.save()
    world.a_task.refresh_from_db()
    assert world.a_task.title == "renamed"
    assert world.a_task.project == world.a_project  # forward FK: _base_manager, by id
    world.a_project.delete()  # cascades to tasks and comments through _base_manager
    assert Task.objects.unscoped().count() == 2
    assert Comment.objects.unscoped().count() == 1


def test_unguarded__base_manager_without_scope_and_cursor_read_every_tenant(
    world: World,
) -> None:
    """Documented: ``_base_manager`` is bound inside a scope only; the cursor never is."""
    assert Task._base_manager.count() == 4
    with tenant_context(world.a):
        assert Task._base_manager.count() == 2
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM scopingapp_task")
            assert cursor.fetchone()[0] == 4


# The context variable: nesting, threads, asyncio.


def test_context__nests_and_restores() -> None:
    assert get_current_tenant() is None
    with tenant_context("t1"):
        with tenant_context("t2"):
            assert get_current_tenant_id() == "t2"
        assert get_current_tenant_id() == "t1"
    assert get_current_tenant_id() is None
    with pytest.raises(TenantNotSetError):
        with tenant_context(None):
            pass


def test_context__a_new_thread_starts_without_a_tenant(world: World) -> None:
    seen: list[object] = []

    def worker() -> None:
        seen.append(get_current_tenant_id())
        try:
            list(Task.objects.all())
        except TenantNotSetError as e:
            seen.append(type(e))

    with tenant_context(world.a):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert seen == [None, TenantNotSetError]


def test_context__concurrent_asyncio_tasks_keep_their_own_tenant() -> None:
    """Two tasks interleave at a barrier; each still sees its own tenant afterwards."""

    async def run() -> list[tuple[str, object, object]]:
        both_inside = asyncio.Barrier(2)
        results = []

        async def handle(name: str) -> None:
            with tenant_context(name):
                await both_inside.wait()
                inner = await sync_to_async(get_current_tenant_id)()
                results.append((name, get_current_tenant_id(), inner))

        await asyncio.gather(handle("tenant-1"), handle("tenant-2"))
        return sorted(results)

    assert asyncio.run(run()) == [
        ("tenant-1", "tenant-1", "tenant-1"),
        ("tenant-2", "tenant-2", "tenant-2"),
    ]


def test_context__async_orm_queries_are_scoped_per_task(migrated_world: World) -> None:
    world = migrated_world

    async def run() -> dict[str, object]:
        both_inside = asyncio.Barrier(2)

        async def count_for(tenant: Tenant) -> tuple[str, list[str]]:
            with tenant_context(tenant):
                await both_inside.wait()
                titles = [t.title async for t in Task.objects.order_by("title")]
                return tenant.slug, titles

        pairs = await asyncio.gather(count_for(world.a), count_for(world.b))
        with pytest.raises(TenantNotSetError):
            await Task.objects.acount()
        await sync_to_async(connections.close_all)()  # the ORM thread's connection
        return dict(pairs)

    assert asyncio.run(run()) == {"a": ["a-task", "a-task-2"], "b": ["b-task", "b-task-2"]}


# Middleware.


def _titles_view(request: object) -> HttpResponse:
    return HttpResponse(",".join(Task.objects.order_by("title").values_list("title", flat=True)))


def test_middleware__sets_the_request_tenant_for_the_view(world: World) -> None:
    request = RequestFactory().get("/")
    request.tenant = world.b
    response = TenantScopeMiddleware(_titles_view)(request)
    assert response.content == b"b-task,b-task-2"
    assert get_current_tenant() is None


def test_middleware__a_request_without_tenant_fails_closed(world: World) -> None:
    with pytest.raises(TenantNotSetError):
        TenantScopeMiddleware(_titles_view)(RequestFactory().get("/"))


def resolve_from_header(request: object) -> str | None:
    """A resolver for the test below: the tenant slug from a header (trusted proxy)."""
    slug = request.headers.get("X-Tenant")  # type: ignore[attr-defined]
    return Tenant.objects.get(slug=slug).pk if slug else None


def test_middleware__uses_the_configured_resolver(world: World) -> None:
    with override_settings(
        TENANT_INDEXES={"TENANT_RESOLVER": "tests.test_scoping.resolve_from_header"}
    ):
        middleware = TenantScopeMiddleware(_titles_view)
    response = middleware(RequestFactory().get("/", HTTP_X_TENANT="a"))
    assert response.content == b"a-task,a-task-2"


def test_middleware__async_view_gets_the_tenant(migrated_world: World) -> None:
    world = migrated_world

    async def view(request: object) -> HttpResponse:
        titles = [t.title async for t in Task.objects.order_by("title")]
        return HttpResponse(",".join(titles))

    async def run() -> bytes:
        middleware = TenantScopeMiddleware(view)
        request = AsyncRequestFactory().get("/")
        request.tenant = world.a
        response = await middleware(request)
        await sync_to_async(connections.close_all)()
        return response.content

    assert asyncio.run(run()) == b"a-task,a-task-2"
