"""Database-enforced tenant isolation: PostgreSQL row-level security, pooler-safe (opt-in).

A model asks for it with ``tenant_rls = True`` and a migration that runs
:class:`EnableTenantRowLevelSecurity`. The table then gets one policy::

    CREATE POLICY tenant_isolation ON <table>
        USING (<tenant column> = NULLIF(current_setting('<RLS_SETTING>', true), '')::<type>)
        WITH CHECK (<the same>)

- The tenant is set per transaction with ``set_config('<RLS_SETTING>', <id>, true)`` (the
  ``SET LOCAL`` form), so the value ends with the transaction and never reaches the next client
  of a transaction-pooling PgBouncer. :func:`rls_tenant` and :class:`TenantRLSMiddleware` open
  the transaction and set it.
- With no tenant set the setting is missing or empty, the predicate is ``NULL``, and a
  connection of a role the policy applies to sees **no rows**.
- The policy applies to roles that neither own the table nor have ``BYPASSRLS``. With
  ``force=True`` (``FORCE ROW LEVEL SECURITY``) it applies to the owner too; superusers always
  bypass it. Run the application as a non-owner role.
- Maintenance across tenants names a ``BYPASSRLS`` role explicitly: :func:`rls_maintenance`.
- The predicate is ``tenant_column = <stable expression>``, which a tenant-leading index
  serves; ``check_tenant_indexes`` reports tenant_indexes.E030 (policy missing or RLS off) and
  tenant_indexes.W030 (no index serves the predicate: the plan has no Index Cond on the
  tenant column).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from django.apps import apps
from django.db import DatabaseError, connections, router, transaction
from django.db.migrations.operations.base import Operation
from django.utils.module_loading import import_string

from .conf import get_config
from .exceptions import TenantIndexesConfigError, TenantScopeError
from .findings import E_RLS_POLICY_MISSING, W_RLS_POLICY_UNSERVED, Finding, Level
from .scoping import _tenant_pk, all_tenants, tenant_context
from .tenancy import tenant_field_of

__all__ = [
    "POLICY_NAME",
    "EnableTenantRowLevelSecurity",
    "TenantRLSMiddleware",
    "find_rls_problems",
    "policy_predicate",
    "rls_maintenance",
    "rls_tenant",
    "set_rls_tenant",
]

POLICY_NAME = "tenant_isolation"
_SETTING_RE = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


def rls_setting() -> str:
    """The validated name of the run-time setting the policies read.

    Raises:
        TenantIndexesConfigError: it is not two lower-case identifiers joined by a dot.
    """
    name = get_config()["RLS_SETTING"]
    if not isinstance(name, str) or not _SETTING_RE.match(name):
        raise TenantIndexesConfigError(
            f"TENANT_INDEXES['RLS_SETTING'] must look like 'myapp.tenant', got {name!r}."
        )
    return name


def policy_predicate(model: Any, connection: Any) -> str:
    """The policy's predicate for ``model``: ``tenant_col = <current setting>::<type>``."""
    field = tenant_field_of(model)
    if field is None:
        raise TenantScopeError(f"{model.__name__} has no tenant field: it cannot have RLS.")
    qn = connection.ops.quote_name
    target = getattr(field, "target_field", None)
    db_type = target.rel_db_type(connection) if target is not None else field.db_type(connection)
    # The setting name is validated above, so it can be a literal.
    return f"({qn(field.column)} = NULLIF(current_setting('{rls_setting()}', true), '')::{db_type})"


class EnableTenantRowLevelSecurity(Operation):
    """Migration operation: enable RLS on a tenant table with the tenant policy.

    Args:
        model_name: the model, as in other operations (``"ticket"``).
        force: also ``FORCE ROW LEVEL SECURITY``, so the table owner is filtered too.
    """

    reduces_to_sql = True
    reversible = True

    def __init__(self, model_name: str, force: bool = False) -> None:
        self.model_name = model_name
        self.force = force

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs: dict[str, Any] = {"model_name": self.model_name}
        if self.force:
            kwargs["force"] = True
        return self.__class__.__qualname__, [], kwargs

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def _statements(self, model: Any, connection: Any) -> list[str]:
        qn = connection.ops.quote_name
        table = qn(model._meta.db_table)
        predicate = policy_predicate(model, connection)
        statements = [f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"]
        if self.force:
            statements.append(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        statements.append(
            f"CREATE POLICY {qn(POLICY_NAME)} ON {table} USING {predicate} WITH CHECK {predicate}"
        )
        return statements

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if schema_editor.connection.vendor != "postgresql":
            return
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        for sql in self._statements(model, schema_editor.connection):
            schema_editor.execute(sql)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        connection = schema_editor.connection
        if connection.vendor != "postgresql":
            return
        if not self.allow_migrate_model(connection.alias, model):
            return
        qn = connection.ops.quote_name
        table = qn(model._meta.db_table)
        schema_editor.execute(f"DROP POLICY IF EXISTS {qn(POLICY_NAME)} ON {table}")
        schema_editor.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        schema_editor.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")

    def describe(self) -> str:
        force = " (forced)" if self.force else ""
        return f"Enable tenant row-level security on {self.model_name}{force}"

    @property
    def migration_name_fragment(self) -> str:
        return f"{self.model_name.lower()}_tenant_rls"


# Run time: the tenant of the current transaction.


def set_rls_tenant(tenant: Any, using: str = "default") -> None:
    """Set the policies' tenant for the rest of the current transaction.

    Raises:
        TenantScopeError: no transaction is open (in autocommit the value would end with
            this very statement, and a pooler could hand the connection to another client).
    """
    connection = connections[using]
    if not connection.in_atomic_block:
        raise TenantScopeError(
            "set_rls_tenant() needs a transaction: use rls_tenant(), TenantRLSMiddleware "
            "or transaction.atomic()."
        )
    value = "" if tenant is None else str(_tenant_pk(tenant))
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, true)", [rls_setting(), value])


def _current_rls_value(using: str) -> str:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT coalesce(current_setting(%s, true), '')", [rls_setting()])
        return str(cursor.fetchone()[0])


@contextlib.contextmanager
def rls_tenant(tenant: Any, using: str = "default") -> Iterator[None]:
    """One transaction in which ``tenant`` is current for the ORM and for the policies.

    Nested inside another transaction it restores the outer value when it ends.
    """
    with transaction.atomic(using=using), tenant_context(tenant):
        previous = _current_rls_value(using)
        set_rls_tenant(tenant, using)
        try:
            yield
        finally:
            if not connections[using].needs_rollback:
                set_rls_tenant(previous or None, using)


@contextlib.contextmanager
def rls_maintenance(role: str, using: str = "default") -> Iterator[None]:
    """Escape hatch: one transaction as ``role`` (a ``BYPASSRLS`` role), across tenants.

    The role is named by the caller on purpose, so every use is greppable
    (``rls_maintenance(``); the application's role must be a member of it. The ORM's scoping
    is lifted with :func:`~tenant_indexes.all_tenants` for the same block.
    """
    connection = connections[using]
    qn = connection.ops.quote_name
    with transaction.atomic(using=using), all_tenants():
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            previous = cursor.fetchone()[0]
            cursor.execute(f"SET LOCAL ROLE {qn(role)}")
        try:
            yield
        finally:
            if not connection.needs_rollback:
                with connection.cursor() as cursor:  # nested in a longer transaction
                    cursor.execute(f"SET LOCAL ROLE {qn(previous)}")


class TenantRLSMiddleware:
    """Run the view in one transaction per ``RLS_DATABASES`` alias with the request's tenant.

    Use it instead of ``TenantScopeMiddleware`` (it sets the ORM's scope too). A request with
    no tenant runs without a transaction and without a tenant: the ORM fails closed and the
    policies show no rows.
    """

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        config = get_config()
        self.resolve_tenant: Callable[[Any], Any] = import_string(config["TENANT_RESOLVER"])
        self.aliases: Sequence[str] = tuple(config["RLS_DATABASES"])

    def __call__(self, request: Any) -> Any:
        tenant = self.resolve_tenant(request)
        if tenant is None:
            return self.get_response(request)
        with contextlib.ExitStack() as stack:
            for alias in self.aliases:
                stack.enter_context(rls_tenant(tenant, using=alias))
            return self.get_response(request)


# The check: E030 and W030.


def rls_models() -> list[Any]:
    """The installed models that ask for row-level security (``tenant_rls = True``)."""
    return [m for m in apps.get_models() if getattr(m, "tenant_rls", False)]


def _index_cond_columns(plan: Any) -> Iterator[str]:
    if isinstance(plan, dict):
        for key in ("Index Cond", "Recheck Cond"):
            if key in plan:
                yield str(plan[key])
        for value in plan.values():
            yield from _index_cond_columns(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _index_cond_columns(item)


def _policy_plan(cursor: Any, qn: Any, table: str, column: str) -> Any:
    """The plan of the policy's predicate on a real tenant, or ``None`` (no rows)."""
    cursor.execute(f"SELECT {qn(column)} FROM {qn(table)} LIMIT 1")
    sample = cursor.fetchone()
    if sample is None:
        return None
    cursor.execute(
        "SELECT pg_get_expr(polqual, polrelid) FROM pg_policy "
        "WHERE polrelid = to_regclass(%s) AND polname = %s",
        [qn(table), POLICY_NAME],
    )
    predicate = cursor.fetchone()[0]
    cursor.execute("SELECT set_config(%s, %s, true)", [rls_setting(), str(sample[0])])
    cursor.execute("SET LOCAL enable_seqscan = off")
    cursor.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {qn(table)} WHERE {predicate}")
    plan = cursor.fetchone()[0]
    return json.loads(plan) if isinstance(plan, str) else plan


def find_rls_problems(using: str, models: Iterable[Any] | None = None) -> list[Finding]:
    """E030 and W030 for the RLS models of one alias, in one rolled-back transaction.

    W030 is judged on a real tenant (one that has rows), with sequential scans made
    unattractive, so a plan without an ``Index Cond`` on the tenant column means no index
    serves the policy's predicate. A table with no rows is not judged.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    findings: list[Finding] = []
    chosen = [
        m
        for m in (rls_models() if models is None else models)
        if router.allow_migrate_model(using, m)
    ]
    if not chosen:
        return []
    qn = connection.ops.quote_name
    with transaction.atomic(using=using), connection.cursor() as cursor:
        # The check is a probe: never wait long on a lock or a slow plan.
        cursor.execute("SET LOCAL lock_timeout = '1s'")
        cursor.execute("SET LOCAL statement_timeout = '5s'")
        for model in chosen:
            table = model._meta.db_table
            field = tenant_field_of(model)
            if field is None:
                continue
            subject = {"database": using, "table": table, "index": None}
            cursor.execute(
                "SELECT c.relrowsecurity, p.polname IS NOT NULL FROM pg_class c "
                "LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polname = %s "
                "WHERE c.oid = to_regclass(%s)",
                [POLICY_NAME, qn(table)],
            )
            row = cursor.fetchone()
            if row is None:
                continue  # a missing table is E005's business
            enabled, has_policy = row
            if not enabled or not has_policy:
                what = "row-level security is disabled" if not enabled else "no tenant policy"
                findings.append(
                    Finding(
                        id=E_RLS_POLICY_MISSING,
                        level=Level.ERROR,
                        message=f"{model.__name__} asks for row-level security, but {table} "
                        f"has {what} ({POLICY_NAME}).",
                        hint="Add a migration with EnableTenantRowLevelSecurity("
                        f"{model._meta.model_name!r}) and run migrate.",
                        **subject,
                    )
                )
                continue
            try:
                with transaction.atomic(using=using):
                    plan = _policy_plan(cursor, qn, table, field.column)
            except DatabaseError:
                continue  # no SELECT privilege, or the table is locked: not judged
            if plan is None:
                continue
            served = any(field.column in cond for cond in _index_cond_columns(plan))
            if not served:
                findings.append(
                    Finding(
                        id=W_RLS_POLICY_UNSERVED,
                        level=Level.WARNING,
                        message=f"No index serves the tenant policy of {table}: its plan on "
                        f"a real tenant has no Index Cond on {field.column}, so every "
                        "policy-filtered query scans the table.",
                        hint=f"Declare a TenantIndex on {model.__name__} (an index that "
                        f"leads with {field.column}) and run migrate.",
                        **subject,
                    )
                )
        transaction.set_rollback(True, using=using)
    return findings


def rls_check_producer(tables: Any, snapshot: Any) -> list[Finding]:
    """The finding producer ``check_tenant_indexes`` runs: RLS findings of the snapshot's alias.

    A database error (privileges, a lock held too long) leaves the RLS findings out rather
    than fail the whole check.
    """
    try:
        return find_rls_problems(snapshot.alias)
    except DatabaseError:
        return []
