"""TenantScopedAdmin through Django's test client: a superuser with no tenant, a tenant's staff."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from tests.scopingapp.models import Comment, Project, Task
from tests.test_scoping import World, _populate


@pytest.fixture
def world(db: None) -> World:
    return _populate()


@pytest.fixture
def superuser_client(world: World) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "x"))
    return client


def _staff_client(tenant_slug: str) -> Client:
    user = User.objects.create_user(f"staff-{tenant_slug}", is_staff=True, last_name=tenant_slug)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="scopingapp"))
    client = Client()
    client.force_login(user)
    return client


def test_admin__superuser_without_tenant_sees_every_tenant(
    world: World, superuser_client: Client
) -> None:
    response = superuser_client.get("/admin/scopingapp/task/")
    assert response.status_code == 200
    for title in ("a-task", "a-task-2", "b-task", "b-task-2"):
        assert title in response.content.decode()


def test_admin__superuser_add_and_change_pages_work(world: World, superuser_client: Client) -> None:
    assert superuser_client.get("/admin/scopingapp/task/add/").status_code == 200
    page = superuser_client.get(f"/admin/scopingapp/task/{world.b_task.pk}/change/")
    assert page.status_code == 200
    assert "b-task" in page.content.decode()
    response = superuser_client.post(
        "/admin/scopingapp/task/add/",
        {"tenant": world.b.pk, "project": world.b_project.pk, "title": "by root", "points": 3},
    )
    assert response.status_code == 302, response.content.decode()
    assert Task.objects.unscoped().get(title="by root").tenant_id == world.b.pk


def test_admin__superuser_cannot_link_rows_of_two_tenants(
    world: World, superuser_client: Client
) -> None:
    response = superuser_client.post(
        "/admin/scopingapp/task/add/",
        {"tenant": world.b.pk, "project": world.a_project.pk, "title": "mixed", "points": 1},
    )
    assert response.status_code == 200  # the form again, with the error
    assert "belongs to another tenant" in response.content.decode()
    assert not Task.objects.unscoped().filter(title="mixed").exists()


def test_admin__tenant_staff_sees_only_their_tenant(world: World) -> None:
    client = _staff_client("a")
    page = client.get("/admin/scopingapp/task/").content.decode()
    assert "a-task" in page and "b-task" not in page
    assert client.get(f"/admin/scopingapp/task/{world.b_task.pk}/change/").status_code == 302
    assert Task.objects.unscoped().filter(pk=world.b_task.pk).exists()


def test_admin__tenant_staff_add_page_lists_and_saves_their_tenant(world: World) -> None:
    client = _staff_client("a")
    add = client.get("/admin/scopingapp/task/add/")
    assert add.status_code == 200
    html = add.content.decode()
    assert "a-project" in html and "b-project" not in html
    assert 'name="tenant"' not in html  # filled in on save
    created = client.post(
        "/admin/scopingapp/task/add/",
        {"project": world.a_project.pk, "title": "by staff", "points": 2},
    )
    assert created.status_code == 302
    assert Task.objects.unscoped().get(title="by staff").tenant_id == world.a.pk
    # B's project is not a valid choice: posting its id is a form error, not a write.
    refused = client.post(
        "/admin/scopingapp/task/add/",
        {"project": world.b_project.pk, "title": "into b", "points": 2},
    )
    assert refused.status_code == 200
    assert not Task.objects.unscoped().filter(title="into b").exists()
    changed = client.post(
        f"/admin/scopingapp/task/{world.a_task.pk}/change/",
        {"project": world.a_project.pk, "title": "renamed", "points": 1},
    )
    assert changed.status_code == 302
    assert Task.objects.unscoped().get(pk=world.a_task.pk).title == "renamed"


def test_admin__staff_without_tenant_is_forbidden(world: World) -> None:
    client = _staff_client("")
    assert client.get("/admin/scopingapp/project/").status_code == 403
    assert Project.objects.unscoped().count() == 2


# The autocomplete view: autocomplete_fields of CommentAdmin point at TaskAdmin's rows.


def _autocomplete(client: Client, term: str = "") -> tuple[int, list[str]]:
    response = client.get(
        "/admin/autocomplete/",
        {"app_label": "scopingapp", "model_name": "comment", "field_name": "task", "term": term},
    )
    if response.status_code != 200:
        return response.status_code, []
    return 200, sorted(r["text"] for r in response.json()["results"])


def test_autocomplete__tenant_staff_see_only_their_tenants_rows(world: World) -> None:
    client = _staff_client("a")
    assert _autocomplete(client) == (200, ["a-task", "a-task-2"])
    assert _autocomplete(client, "b-task") == (200, [])  # searching B's titles finds nothing
    assert _autocomplete(_staff_client("b"), "task") == (200, ["b-task", "b-task-2"])


def test_autocomplete__superuser_without_tenant_sees_every_tenant(
    world: World, superuser_client: Client
) -> None:
    assert _autocomplete(superuser_client, "task") == (
        200,
        ["a-task", "a-task-2", "b-task", "b-task-2"],
    )


def test_autocomplete__staff_without_tenant_is_forbidden(world: World) -> None:
    assert _autocomplete(_staff_client("")) == (403, [])


def test_autocomplete__the_comment_pages_render_with_the_widget(
    world: World, superuser_client: Client
) -> None:
    comment = Comment.objects.unscoped().get(body="b-comment")
    page = superuser_client.get(f"/admin/scopingapp/comment/{comment.pk}/change/")
    assert page.status_code == 200
    assert "b-task" in page.content.decode()  # the selected option of the widget
    staff = _staff_client("a")
    assert staff.get("/admin/scopingapp/comment/add/").status_code == 200
    assert staff.get(f"/admin/scopingapp/comment/{comment.pk}/change/").status_code == 302
