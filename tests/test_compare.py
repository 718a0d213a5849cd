"""Coverage and leftovers on real tenant tables: E004, E050 (BRIN/hash-only), W050."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection

from tenant_indexes.helpdesk.models import Tenant, User


def _json(command: str) -> tuple[int, dict]:
    out = StringIO()
    code = 0
    try:
        call_command(command, "--database", "default", "--format", "json", stdout=out)
    except CommandError as e:
        code = e.returncode
    return code, json.loads(out.getvalue())


def _findings(doc: dict, table: str) -> dict[str, dict]:
    return {f["id"]: f for f in doc["findings"] if f["table"] == table}


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["brin", "hash"])
def test_check__tenant_index_of_another_method_is_e050_not_coverage(method: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX idx_users_tenant_id")
        cursor.execute(f"CREATE INDEX users_tenant_{method} ON users USING {method} (tenant_id)")
    code, doc = _json("check_tenant_indexes")
    users = _findings(doc, "users")
    assert code == 1
    assert "tenant_indexes.E004" not in users  # its own finding, saying why
    e050 = users["tenant_indexes.E050"]
    assert e050["level"] == "error" and e050["index"] == f"users_tenant_{method}"
    assert method.upper() in e050["message"] and "B-tree" in e050["message"]


@pytest.mark.django_db
def test_check__a_btree_beside_a_brin_index_is_coverage() -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX users_tenant_brin ON users USING brin (tenant_id)")
    _, doc = _json("check_tenant_indexes")
    assert not {"tenant_indexes.E004", "tenant_indexes.E050"} & set(_findings(doc, "users"))


@pytest.mark.django_db
def test_check__partial_tenant_index_alone_is_still_e004() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX idx_users_tenant_id")
        cursor.execute("CREATE INDEX users_active ON users (tenant_id) WHERE is_active")
    _, doc = _json("check_tenant_indexes")
    assert "tenant_indexes.E004" in _findings(doc, "users")


@pytest.mark.django_db(transaction=True)
def test_undeclared_invalid_unique_index__w050_in_check_and_stats_and_not_a_constraint() -> None:
    """A concurrent unique build over duplicate rows fails and leaves an INVALID index that
    no model declares; duplicates still go in, so stats must not call it a constraint."""
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    User.objects.bulk_create(
        [User(tenant=tenant, email=f"u{i}@example.com", name="same") for i in range(3)]
    )
    with connection.cursor() as cursor:
        with pytest.raises(DatabaseError):
            cursor.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY users_tenant_name_uniq ON users (tenant_id, name)"
            )
    User.objects.create(tenant=tenant, email="dup@example.com", name="same")  # not enforced
    for command in ("check_tenant_indexes", "tenant_index_stats"):
        code, doc = _json(command)
        w050 = _findings(doc, "users")["tenant_indexes.W050"]
        assert code == 0, command  # a warning, below the default fail level
        assert w050["index"] == "users_tenant_name_uniq"
        assert "INVALID" in w050["message"] and "duplicates can be inserted" in w050["message"]
        assert 'DROP INDEX CONCURRENTLY "public"."users_tenant_name_uniq"' in w050["hint"]
    (entry,) = [ix for ix in doc["indexes"] if ix["name"] == "users_tenant_name_uniq"]
    assert entry["status"] == "invalid"
    assert entry["unused"].startswith("invalid unique: enforces nothing")
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX users_tenant_name_uniq")
