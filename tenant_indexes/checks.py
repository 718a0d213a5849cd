"""Django system checks: declarations (no database) and the live catalog (``Tags.database``).

The static check runs with every ``manage.py`` command and reads only the models. The
database check runs on ``manage.py check --database ALIAS`` (and ``migrate``, which checks
the alias it migrates) and reports the same findings as ``check_tenant_indexes``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from django.apps import apps
from django.core import checks
from django.db import connections

from .conf import get_config
from .declared import TenantTable, declared_tenant_tables, tenant_table_for_model
from .exceptions import TenantIndexesConfigError, TenantModelNotConfigured
from .fields import TenantForeignKey
from .findings import (
    E_ATOMIC_CONCURRENT_MIGRATION,
    E_BAD_SETTING,
    E_NAME_TOO_LONG,
    E_NO_TENANT_INDEX_DECLARED,
    E_NO_TENANT_MODEL,
    E_NOT_CHECKED,
    I_NAME_OVER_30,
    W_IMPLICIT_FK_INDEX_DUPLICATE,
)
from .tenancy import get_tenant_model

HELPDESK_APP_LABEL = "tenant_indexes_helpdesk"
POSTGRES_NAME_LIMIT = 63  # NAMEDATALEN - 1
PORTABLE_NAME_LIMIT = 30  # Oracle's limit, which Django's models.E034 enforces


def _app_labels(app_configs: Sequence[Any] | None) -> list[str] | None:
    return [c.label for c in app_configs] if app_configs else None


def check_tenant_index_declarations(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Static checks of the tenant models' declared indexes (no database access)."""
    try:
        get_config()
    except TenantIndexesConfigError as e:
        return [
            checks.Error(
                str(e),
                hint=(
                    "Fix settings.TENANT_INDEXES; docs/settings.md lists every key and its default."
                ),
                id=E_BAD_SETTING,
            )
        ]
    messages: list[Any] = _tenant_model_messages()
    for table in declared_tenant_tables(None, _app_labels(app_configs)):
        messages.extend(declaration_messages(apps.get_model(table.model), table))
    return messages


def _tenant_model_messages() -> list[Any]:
    """E010 when ``TENANT_MODEL`` names a model that is not installed.

    No tenant model at all is fine until a ``TenantForeignKey()`` needs one; that field's
    own check reports it.
    """
    if get_config()["TENANT_MODEL"] is None:
        return []
    try:
        get_tenant_model()
    except TenantModelNotConfigured as e:
        return [
            checks.Error(
                str(e),
                hint="Name an installed model as 'app_label.ModelName', or add its app to "
                "INSTALLED_APPS.",
                id=E_NO_TENANT_MODEL,
            )
        ]
    return []


def declaration_messages(model: Any, table: TenantTable | None = None) -> list[Any]:
    """The static check's messages for one model (none when it is not tenant-scoped)."""
    table = table or tenant_table_for_model(model)
    if table is None:
        return []
    messages: list[Any] = []
    if not table.has_tenant_leading_index:
        messages.append(
            checks.Error(
                f"{table.model} is tenant-scoped but declares no index whose first column is "
                f"{table.tenant_column}; every tenant query would read the whole table.",
                hint="Add TenantIndex(fields=[...]) to Meta.indexes (or inherit "
                "TenantModel.Meta), then makemigrations.",
                obj=model,
                id=E_NO_TENANT_INDEX_DECLARED,
            )
        )
    for name in table.all_index_names:
        if len(name) > POSTGRES_NAME_LIMIT:
            messages.append(
                checks.Error(
                    f"Index name {name!r} has {len(name)} characters; PostgreSQL truncates "
                    f"names to {POSTGRES_NAME_LIMIT}, so the live index would never match "
                    "its declaration.",
                    hint=f"Use a name of at most {POSTGRES_NAME_LIMIT} characters.",
                    obj=model,
                    id=E_NAME_TOO_LONG,
                )
            )
        elif len(name) > PORTABLE_NAME_LIMIT and table.app_label != HELPDESK_APP_LABEL:
            # The help desk's names (idx_integration_credentials_tenant_id, 37) are its
            # public contract: users cannot rename them, so telling them on every
            # manage.py command would be noise. The docs say they are not Oracle-safe.
            messages.append(
                checks.Info(
                    f"Index name {name!r} has {len(name)} characters: fine on PostgreSQL, "
                    f"MySQL and SQLite, too long for Oracle ({PORTABLE_NAME_LIMIT}).",
                    hint="Only matters if the project must also run on Oracle; silence with "
                    f"SILENCED_SYSTEM_CHECKS = [{I_NAME_OVER_30!r}].",
                    obj=model,
                    id=I_NAME_OVER_30,
                )
            )
    messages.extend(_implicit_index_duplicates(model, table))
    return messages


def _implicit_index_duplicates(model: Any, table: TenantTable) -> list[Any]:
    messages = []
    explicit = [ix for ix in table.indexes if ix.origin != "implicit" and ix.condition is None]
    for field in model._meta.local_concrete_fields:
        is_tenant_fk = isinstance(field, TenantForeignKey) or field.column == table.tenant_column
        if not (is_tenant_fk and field.db_index and not field.unique):
            continue
        covering = [ix.name for ix in explicit if ix.leads_with == field.column]
        if covering:
            messages.append(
                checks.Warning(
                    f"{table.model}.{field.name} has an implicit index on ({field.column}) "
                    f"that duplicates {', '.join(covering)}, which already leads with it.",
                    hint=f"Set db_index=False on {field.name} (TenantForeignKey does by "
                    "default), then makemigrations; every write pays for the duplicate.",
                    obj=field,
                    id=W_IMPLICIT_FK_INDEX_DUPLICATE,
                )
            )
    return messages


def check_live_tenant_indexes(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[Any]:
    """The live findings of ``check_tenant_indexes`` for the databases Django asks about.

    Skips aliases that are not PostgreSQL (nothing to compare with), and returns nothing
    while ``migrate`` runs: ``migrate`` runs the database checks before it migrates, and a
    live finding must never stop the very command that creates the missing tables and
    indexes (nor a deploy that has nothing to migrate). ``manage.py check --database`` and
    ``check_tenant_indexes`` are the gates.
    """
    if not databases or _inside_migrate():
        return []
    from .findings import Level
    from .health import check_databases

    aliases = [alias for alias in databases if connections[alias].vendor == "postgresql"]
    if not aliases:
        return []
    report = check_databases(databases=aliases, app_labels=_app_labels(app_configs))
    messages: list[Any] = []
    for db in report.databases:
        if db.error:
            messages.append(
                checks.Error(
                    f"Could not check the tenant indexes of database {db.alias!r}: {db.error}",
                    hint="Check that the database is reachable and the credentials are right.",
                    id=E_NOT_CHECKED,
                )
            )
    # The same verdict as the command, the view and the django-health-check backend: a
    # finding at or above HEALTH_FAIL_LEVEL is an Error (manage.py check fails), one below
    # it a Warning (reported, healthy).
    from .conf import get_config

    fail_rank = Level(get_config()["HEALTH_FAIL_LEVEL"]).rank
    for f in report.findings:
        cls = checks.Error if f.level.rank >= fail_rank else checks.Warning
        where = f"{f.database}: {f.table}" + (f".{f.index}" if f.index else "")
        messages.append(cls(f"{where}: {f.message}", hint=f.hint, id=f.id))
    return messages


def _inside_migrate() -> bool:
    """Whether the checks run on behalf of ``migrate`` (or a subclass of it).

    Django 4.2 calls them from ``migrate``'s ``handle()``, 5.x from ``BaseCommand.execute()``
    of the migrate command: either way a frame's ``self`` is the migrate command.
    """
    from django.core.management.commands.migrate import Command as MigrateCommand

    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), MigrateCommand):
            return True
        frame = frame.f_back
    return False


def check_migration_atomicity(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """E020: a migration on disk runs a concurrent operation but is atomic.

    ``CREATE INDEX CONCURRENTLY`` cannot run in a transaction: such a migration fails on
    PostgreSQL when it is applied, possibly half-way through a deploy. Squashed migrations
    are on disk like the others and are checked too. Reads the migration files, not the
    database.
    """
    from django.db.migrations.loader import MigrationLoader

    from .safe_changes import is_concurrent_operation

    labels = set(_app_labels(app_configs) or [])
    try:
        loader = MigrationLoader(None, ignore_no_migrations=True)
    except Exception:  # a broken migration file is Django's own error to report
        return []
    messages: list[Any] = []
    for (app_label, name), migration in sorted(loader.disk_migrations.items()):
        if labels and app_label not in labels:
            continue
        if getattr(migration, "atomic", True) is False:
            continue
        concurrent = [op for op in migration.operations if is_concurrent_operation(op)]
        if concurrent:
            kinds = ", ".join(sorted({type(op).__name__ for op in concurrent}))
            messages.append(
                checks.Error(
                    f"Migration {app_label}.{name} runs {kinds} but is atomic: "
                    "CONCURRENTLY cannot run inside a transaction, so it fails on "
                    "PostgreSQL when applied.",
                    hint="Add atomic = False to the Migration class (makemigrations and "
                    "squashmigrations of tenant_indexes write it), and keep the other "
                    "operations in a migration of their own.",
                    obj=f"{app_label}.{name}",
                    id=E_ATOMIC_CONCURRENT_MIGRATION,
                )
            )
    return messages


def register() -> None:
    """Register the checks (called from ``AppConfig.ready()``)."""
    checks.register(check_tenant_index_declarations, checks.Tags.models)
    checks.register(check_migration_atomicity, checks.Tags.models)
    checks.register(check_live_tenant_indexes, checks.Tags.database)
