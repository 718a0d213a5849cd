"""Predicates and index expressions, normalised by the server so they can be compared.

PostgreSQL rewrites a partial-index predicate and index expressions when it stores them
(casts, parentheses, ``IN`` lists as ``= ANY``), so Django's text and ``pg_get_expr()``'s text
of the same predicate differ. The server normalises both with its own parser and deparser:
``EXPLAIN (VERBOSE)`` (never ANALYZE: nothing is executed) of
``SELECT <expressions> FROM <table> WHERE <predicate>`` once for the declared text and once
for the live text, with index scans off so the predicate stays a Filter. Equal deparsed
Filter and Output means equal definitions.

Cost: nothing for indexes without a predicate or expressions; otherwise one statement for the
settings plus, per such index, a savepoint, two EXPLAINs and its release (EXPLAINs of
different texts cannot share a statement without mixing their deparsed output, and the
savepoint keeps one unparsable text from aborting the whole pass).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .catalog import CatalogIndex, CatalogTable
from .reads import check_timeouts, explain_plan, first_error_line, plan_nodes
from .sql import qualified_name

# Local to the transaction: index-only plans would hide the predicate inside the index.
_NORMALISE_SETTINGS_SQL = """
SELECT set_config('statement_timeout', %s, true),
       set_config('lock_timeout', %s, true),
       set_config('enable_indexscan', 'off', true),
       set_config('enable_indexonlyscan', 'off', true),
       set_config('enable_bitmapscan', 'off', true),
       set_config('max_parallel_workers_per_gather', '0', true)
"""


@dataclass(frozen=True)
class DeclaredDefinition:
    """What a declared index says about its predicate and expressions, for a snapshot.

    Attributes:
        schema: the schema asked for (``None``: the search_path), as in the snapshot's tables.
        table: the table.
        name: the index name.
        predicate: the ``WHERE`` clause as SQL, ``None`` without one.
        expressions: the key expressions as SQL, plain columns left out.
    """

    schema: str | None
    table: str
    name: str
    predicate: str | None
    expressions: tuple[str, ...] = ()


@dataclass(frozen=True)
class DefinitionRequest:
    """A declared and a live index of the same name whose predicate or expressions need the
    server to compare them.

    Attributes:
        schema: schema of the live index and its table.
        table: the table.
        name: the index name.
        declared_predicate: the declared ``WHERE`` clause as SQL (``None``: not compared).
        live_predicate: ``pg_get_expr(indpred)`` (``None``: not compared).
        declared_expressions: the declared key expressions as SQL, plain columns left out.
        live_expressions: ``pg_get_expr(indexprs)`` (``None``: not compared).
    """

    schema: str
    table: str
    name: str
    declared_predicate: str | None
    live_predicate: str | None
    declared_expressions: tuple[str, ...]
    live_expressions: str | None


@dataclass(frozen=True)
class NormalisedDefinition:
    """Both sides of a :class:`DefinitionRequest` as the server's deparser writes them.

    ``error`` is set (and the texts are ``None``) when the server could not normalise one
    side; the definitions are then not known to be equal.
    """

    schema: str
    name: str
    declared_predicate: str | None = None
    live_predicate: str | None = None
    declared_expressions: tuple[str, ...] | None = None
    live_expressions: tuple[str, ...] | None = None
    error: str | None = None


def definition_requests(
    definitions: Iterable[DeclaredDefinition],
    live_tables: Sequence[CatalogTable],
    live_indexes: Sequence[CatalogIndex],
) -> list[DefinitionRequest]:
    """The requests for the declared definitions whose live index exists and is usable."""
    tables = {(t.requested_schema, t.name): t for t in live_tables}
    indexes = {(ix.schema, ix.name): ix for ix in live_indexes}
    requests = []
    for declared in definitions:
        table = tables.get((declared.schema, declared.table))
        live = indexes.get((table.schema, declared.name)) if table else None
        # An INVALID or building index is reported as such; its definition is not compared.
        if live is None or not live.usable:
            continue
        request = request_for(live, declared.predicate, declared.expressions)
        if request is not None:
            requests.append(request)
    return list(dict.fromkeys(requests))


def definition_request(
    schema: str,
    table: str,
    name: str,
    *,
    declared_predicate: str | None,
    live_predicate: str | None,
    declared_expressions: Sequence[str],
    live_expressions: str | None,
) -> DefinitionRequest | None:
    """The request to normalise one index pair, ``None`` when there is nothing to compare.

    A predicate (expressions) is compared only when both sides have one: when just one side
    has it the difference is plain without asking the server.
    """
    with_predicate = declared_predicate is not None and live_predicate is not None
    with_expressions = bool(declared_expressions) and live_expressions is not None
    if not (with_predicate or with_expressions):
        return None
    return DefinitionRequest(
        schema=schema,
        table=table,
        name=name,
        declared_predicate=declared_predicate if with_predicate else None,
        live_predicate=live_predicate if with_predicate else None,
        declared_expressions=tuple(declared_expressions) if with_expressions else (),
        live_expressions=live_expressions if with_expressions else None,
    )


def request_for(
    live: CatalogIndex, predicate: str | None, expressions: Sequence[str]
) -> DefinitionRequest | None:
    """:func:`definition_request` for a live index and a declared predicate and expressions."""
    return definition_request(
        live.schema,
        live.table,
        live.name,
        declared_predicate=predicate,
        live_predicate=live.predicate,
        declared_expressions=expressions,
        live_expressions=live.expressions,
    )


def normalise_definitions(
    connection: Any, requests: Sequence[DefinitionRequest]
) -> tuple[NormalisedDefinition, ...]:
    """Let the server deparse both sides of each request (see the module docstring).

    Runs in a transaction (a savepoint inside the caller's) that is read only when it is
    the outermost one and is rolled back at the end, so the local settings vanish with it;
    the ``CHECK_*`` timeouts bound every statement.

    Args:
        connection: a Django PostgreSQL connection.
        requests: the pairs to normalise (see :func:`definition_request`).

    Returns:
        One result per request, in order; a request whose text the server rejects gets a
        result with ``error`` set, the others are unaffected.
    """
    if not requests:
        return ()
    from django.db import DatabaseError, transaction

    results = []
    outermost = not connection.in_atomic_block
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if outermost:
            cursor.execute("SET TRANSACTION READ ONLY")
        cursor.execute(_NORMALISE_SETTINGS_SQL, check_timeouts())
        for request in requests:
            relation = qualified_name(request.schema, request.table)
            try:
                with transaction.atomic(using=connection.alias):
                    declared = _deparse(
                        cursor,
                        relation,
                        request.declared_predicate,
                        ", ".join(request.declared_expressions) or None,
                    )
                    live = _deparse(
                        cursor, relation, request.live_predicate, request.live_expressions
                    )
            except DatabaseError as e:
                results.append(
                    NormalisedDefinition(
                        schema=request.schema, name=request.name, error=first_error_line(e)
                    )
                )
                continue
            results.append(
                NormalisedDefinition(
                    schema=request.schema,
                    name=request.name,
                    declared_predicate=declared[0] if request.declared_predicate else None,
                    live_predicate=live[0] if request.live_predicate else None,
                    declared_expressions=declared[1] if request.declared_expressions else None,
                    live_expressions=live[1] if request.live_expressions else None,
                )
            )
        transaction.set_rollback(True, using=connection.alias)
    return tuple(results)


def _deparse(
    cursor: Any, relation: str, predicate: str | None, expressions: str | None
) -> tuple[str, tuple[str, ...]]:
    """``(filters, outputs)`` of ``SELECT <expressions> FROM relation WHERE <predicate>``.

    The texts are SQL that Django compiled from the model or that pg_get_expr() returned;
    they are planned, never executed. No parameters are passed, so a ``%`` in them is data.
    """
    root = explain_plan(
        cursor,
        f"EXPLAIN (VERBOSE, FORMAT JSON) SELECT {expressions or 'NULL'} "
        f"FROM {relation} WHERE {predicate or 'true'}",
    )
    # A predicate the planner folds to a constant becomes a One-Time Filter of a Result.
    filters = [
        node[key]
        for node in plan_nodes(root)
        for key in ("One-Time Filter", "Filter")
        if key in node
    ]
    return " AND ".join(filters), tuple(root.get("Output", ()))
