"""The index zoo: 24 tenant tables, one per case, each with the verdict PostgreSQL's own
semantics give, run through ``check_tenant_indexes`` and ``tenant_index_stats`` (JSON).

Each case is data: the table's DDL, its indexes and what must be reported for it:

- ``w002``: ``{redundant index: the indexes allowed to be named as covering it}``; every
  other index of the table must not be W002;
- ``e004`` / ``e050``: whether the table has no usable tenant-leading B-tree (E004), or only
  BRIN / hash ones (E050, instead of E004);
- ``w050``: whether an INVALID index that no model declares is reported.

Every case is a copy of the zoo model's table ``zoo`` in its own schema (``CHECK_SCHEMAS``),
so one run of each command reads the whole zoo and a verdict can never leak from one case to
another. The harness reports every false positive and false negative at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection
from django.test import override_settings

COLUMNS = (
    "id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, status text NOT NULL DEFAULT 'open', "
    'x int, name text, email text, tags text[], "Status Code" int'
)
TABLE = f"CREATE TABLE {{s}}.zoo ({COLUMNS})"


@dataclass(frozen=True)
class Case:
    name: str
    indexes: tuple[str, ...]
    w002: dict[str, frozenset[str]] = field(default_factory=dict)
    e004: bool = False
    e050: bool = False
    w050: bool = False
    table: str = TABLE
    # Statements that must fail (a concurrent unique build over duplicates: INVALID).
    failing: tuple[str, ...] = ()


def _w002(**pairs: str) -> dict[str, frozenset[str]]:
    return {name: frozenset(covering.split()) for name, covering in pairs.items()}


CASES = (
    Case(
        "expression_after_a_prefix",
        (
            "CREATE INDEX a ON {s}.zoo (tenant_id)",
            "CREATE INDEX b ON {s}.zoo (tenant_id, lower(name))",
        ),
        w002=_w002(a="b"),
    ),
    Case(
        "expression_prefix_of_expressions",
        (
            "CREATE INDEX a ON {s}.zoo (tenant_id, lower(name))",
            "CREATE INDEX b ON {s}.zoo (tenant_id, lower(name), upper(email))",
        ),
        w002=_w002(a="b"),
    ),
    Case(
        "different_expressions",
        (
            "CREATE INDEX a ON {s}.zoo (tenant_id, lower(name))",
            "CREATE INDEX b ON {s}.zoo (tenant_id, upper(name))",
        ),
    ),
    Case(
        "expression_before_the_tenant",
        (
            "CREATE INDEX a ON {s}.zoo (lower(name))",
            "CREATE INDEX b ON {s}.zoo (tenant_id, lower(name))",
        ),
    ),
    Case(
        "quoted_name_with_using_btree_inside",
        (
            'CREATE INDEX "q USING btree (tenant_id)" ON {s}.zoo ("Status Code")',
            "CREATE INDEX t ON {s}.zoo (tenant_id)",
        ),
    ),
    Case("brin_only", ("CREATE INDEX b ON {s}.zoo USING brin (tenant_id)",), e050=True),
    Case("hash_only", ("CREATE INDEX h ON {s}.zoo USING hash (tenant_id)",), e050=True),
    Case(
        "gin_duplicates_beside_a_btree",
        (
            "CREATE INDEX t ON {s}.zoo (tenant_id)",
            "CREATE INDEX g1 ON {s}.zoo USING gin (tags)",
            "CREATE INDEX g2 ON {s}.zoo USING gin (tags)",
        ),
        w002=_w002(g2="g1"),
    ),
    Case(
        "partial_not_covered_by_full_nor_full_by_partial",
        (
            "CREATE INDEX a ON {s}.zoo (tenant_id) WHERE status = 'open'",
            "CREATE INDEX b ON {s}.zoo (tenant_id, status)",
            "CREATE INDEX c ON {s}.zoo (tenant_id, x) WHERE status = 'closed'",
        ),
    ),
    Case(
        "partial_covered_by_the_same_predicate",
        (
            "CREATE INDEX a ON {s}.zoo (tenant_id) WHERE status = 'open'",
            "CREATE INDEX b ON {s}.zoo (tenant_id, x) WHERE status = 'open'",
            "CREATE INDEX c ON {s}.zoo (tenant_id, status)",
        ),
        w002=_w002(a="b"),
    ),
    Case(
        "partial_only_is_no_coverage",
        ("CREATE INDEX a ON {s}.zoo (tenant_id) WHERE status = 'open'",),
        e004=True,
    ),
    Case(
        "include_column_among_the_wider_keys",
        (
            "CREATE INDEX a ON {s}.zoo (tenant_id) INCLUDE (status)",
            "CREATE INDEX b ON {s}.zoo (tenant_id, status)",
        ),
        w002=_w002(a="b"),
    ),
    Case(
        "include_column_missing_from_the_wider",
        (
            "CREATE INDEX a ON {s}.zoo (tenant_id, x) INCLUDE (email)",
            "CREATE INDEX b ON {s}.zoo (tenant_id, x, status)",
        ),
    ),
    Case(
        "desc_against_asc",
        (
            "CREATE INDEX a ON {s}.zoo (tenant_id, x DESC)",
            "CREATE INDEX b ON {s}.zoo (tenant_id, x, status)",
        ),
    ),
    Case(
        "desc_prefix_of_desc",
        (
            "CREATE INDEX a ON {s}.zoo (tenant_id, x DESC)",
            "CREATE INDEX b ON {s}.zoo (tenant_id, x DESC, status)",
        ),
        w002=_w002(a="b"),
    ),
    Case(
        "other_collation",
        (
            'CREATE INDEX a ON {s}.zoo (tenant_id, name COLLATE "C")',
            "CREATE INDEX b ON {s}.zoo (tenant_id, name, status)",
        ),
    ),
    Case(
        "other_operator_class",
        (
            "CREATE INDEX a ON {s}.zoo (tenant_id, name text_pattern_ops)",
            "CREATE INDEX b ON {s}.zoo (tenant_id, name, status)",
        ),
    ),
    Case(
        "unique_is_not_covered_by_a_wider_index",
        (
            "CREATE UNIQUE INDEX u ON {s}.zoo (tenant_id, email)",
            "CREATE INDEX n ON {s}.zoo (tenant_id, email)",
            "CREATE INDEX w ON {s}.zoo (tenant_id, email, x)",
        ),
        w002=_w002(n="u w"),
    ),
    Case(
        "unique_index_beside_the_same_unique_constraint",
        (
            "ALTER TABLE {s}.zoo ADD CONSTRAINT c_uniq UNIQUE (tenant_id, email)",
            "CREATE UNIQUE INDEX d ON {s}.zoo (tenant_id, email)",
        ),
        w002=_w002(d="c_uniq"),
    ),
    Case(
        "invalid_duplicate",
        ("CREATE INDEX t ON {s}.zoo (tenant_id)",),
        failing=("CREATE UNIQUE INDEX CONCURRENTLY t_dup ON {s}.zoo (tenant_id)",),
        w050=True,
    ),
    Case(
        "identical_duplicates",
        (
            "CREATE INDEX a ON {s}.zoo (tenant_id, status)",
            "CREATE INDEX b ON {s}.zoo (tenant_id, status)",
        ),
        w002=_w002(b="a"),
    ),
    Case(
        "reordered_columns",
        (
            "CREATE INDEX a ON {s}.zoo (tenant_id, status, x)",
            "CREATE INDEX b ON {s}.zoo (tenant_id, x, status)",
            "CREATE INDEX c ON {s}.zoo (status, tenant_id)",
        ),
    ),
    Case(
        "exclusion_constraint_covers_its_prefix",
        (
            "ALTER TABLE {s}.zoo ADD CONSTRAINT ex EXCLUDE USING btree "
            "(tenant_id WITH =, email WITH =)",
            "CREATE INDEX t ON {s}.zoo (tenant_id)",
        ),
        w002=_w002(t="ex"),
    ),
    Case(
        "partitioned_table",
        (
            "CREATE TABLE {s}.zoo_p0 PARTITION OF {s}.zoo FOR VALUES WITH (MODULUS 2, REMAINDER 0)",
            "CREATE TABLE {s}.zoo_p1 PARTITION OF {s}.zoo FOR VALUES WITH (MODULUS 2, REMAINDER 1)",
            "CREATE INDEX a ON {s}.zoo (tenant_id)",
            "CREATE INDEX b ON {s}.zoo (tenant_id, status)",
            "CREATE INDEX p0_only ON {s}.zoo_p0 (tenant_id, status)",
        ),
        w002=_w002(a="b"),
        table="CREATE TABLE {s}.zoo (id bigint NOT NULL, tenant_id bigint NOT NULL, "
        "status text NOT NULL, x int) PARTITION BY HASH (tenant_id)",
    ),
)

ZOO = {f"ti_zoo_{i:02d}": case for i, case in enumerate(CASES, start=1)}


def _run(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def _build(schema: str, case: Case) -> None:
    _run(f"CREATE SCHEMA {schema}")
    _run(case.table.format(s=schema))
    for statement in case.indexes:
        _run(statement.format(s=schema))
    if case.failing:
        # Duplicate rows, so a concurrent unique build fails and leaves its index INVALID.
        _run(f"INSERT INTO {schema}.zoo (tenant_id) VALUES (1), (1)")
        for statement in case.failing:
            with pytest.raises(DatabaseError):
                _run(statement.format(s=schema))


@pytest.fixture
def zoo() -> Iterator[dict[str, Case]]:
    try:
        for schema, case in ZOO.items():
            _build(schema, case)
        _run(f"ANALYZE {', '.join(f'{s}.zoo' for s in ZOO)}")
        yield ZOO
    finally:
        for schema in ZOO:
            _run(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _json(command: str) -> dict[str, Any]:
    out = StringIO()
    try:
        call_command(command, "zooapp", "--database", "default", "--format", "json", stdout=out)
    except CommandError as e:
        assert e.returncode == 1, str(e)  # findings, never a database left unchecked
    return json.loads(out.getvalue())


def _verdicts(doc: dict[str, Any], case_schema: str) -> dict[str, Any]:
    found: dict[str, Any] = {"w002": {}, "e004": False, "e050": False, "w050": False}
    for f in doc["findings"]:
        if f["schema"] != case_schema:
            continue
        short = f["id"].rsplit(".", 1)[-1]
        if short == "W002":
            covering = f["message"].split(" is redundant: ", 1)[1].split(" (", 1)[0]
            found["w002"][f["index"]] = covering
        elif short in ("E004", "E050", "W050"):
            found[short.lower()] = True
    return found


def _mismatches(command: str, doc: dict[str, Any], zoo: dict[str, Case]) -> list[str]:
    problems = []
    for schema, case in zoo.items():
        got = _verdicts(doc, schema)
        where = f"{command} {schema} ({case.name})"
        for name, covering in got["w002"].items():
            if name not in case.w002:
                problems.append(f"{where}: false positive W002 on {name} (covered by {covering})")
            elif covering not in case.w002[name]:
                problems.append(f"{where}: W002 on {name} names {covering}, not {case.w002[name]}")
        for name in set(case.w002) - set(got["w002"]):
            problems.append(f"{where}: false negative, no W002 on {name}")
        for key in ("e004", "e050", "w050"):
            if got[key] != getattr(case, key):
                kind = "false positive" if got[key] else "false negative"
                problems.append(f"{where}: {kind} {key.upper()}")
    return problems


@pytest.mark.django_db(transaction=True)
def test_zoo__check_and_stats_agree_with_postgresql_on_every_case(zoo: dict[str, Case]) -> None:
    config = {"CHECK_SCHEMAS": list(zoo), "CHECK_INCLUDES_USAGE": True}
    with override_settings(
        INSTALLED_APPS=[*settings.INSTALLED_APPS, "tests.zooapp"], TENANT_INDEXES=config
    ):
        check = _json("check_tenant_indexes")
        stats = _json("tenant_index_stats")
    assert len(zoo) == 24
    for doc in (check, stats):
        assert [d["error"] for d in doc["databases"] if d.get("error")] == []
    # Stats read every case (the check lists declared indexes only, and the zoo has none).
    assert {ix["schema"] for ix in stats["indexes"]} == set(zoo)
    problems = _mismatches("check_tenant_indexes", check, zoo)
    # Stats reports the usage findings and W050; E004 / E050 are the check's.
    stats_zoo = {s: Case(c.name, c.indexes, c.w002, w050=c.w050) for s, c in zoo.items()}
    problems += _mismatches("tenant_index_stats", stats, stats_zoo)
    assert problems == []


@pytest.mark.django_db(transaction=True)
def test_zoo__stats_shows_the_invalid_duplicate_and_the_constraint_indexes_as_they_are(
    zoo: dict[str, Case],
) -> None:
    schema_of = {case.name: schema for schema, case in zoo.items()}
    with override_settings(
        INSTALLED_APPS=[*settings.INSTALLED_APPS, "tests.zooapp"],
        TENANT_INDEXES={"CHECK_SCHEMAS": list(zoo)},
    ):
        stats = _json("tenant_index_stats")
    by_key = {(ix["schema"], ix["name"]): ix for ix in stats["indexes"]}
    invalid = by_key[schema_of["invalid_duplicate"], "t_dup"]
    assert invalid["status"] == "invalid"
    assert invalid["unused"].startswith("invalid unique: enforces nothing")
    assert invalid["redundant_to"] is None
    constraint = by_key[schema_of["unique_index_beside_the_same_unique_constraint"], "c_uniq"]
    assert constraint["unused"].startswith("unique or primary: enforces a constraint")
    assert constraint["redundant_to"] is None
    exclusion = by_key[schema_of["exclusion_constraint_covers_its_prefix"], "ex"]
    assert exclusion["constraint"] == "ex" and exclusion["redundant_to"] is None


def test_zoo_harness__reports_false_positives_and_negatives_of_each_kind() -> None:
    """The harness itself: a document that disagrees with a case is reported, each way."""
    case = Case("c", (), w002=_w002(a="b"), e050=True)

    def doc(*findings: tuple[str, str | None, str]) -> dict[str, Any]:
        return {
            "findings": [
                {"id": f"tenant_indexes.{i}", "schema": "s", "index": ix, "message": m}
                for i, ix, m in findings
            ]
        }

    agreeing = doc(
        ("W002", "a", "index a (x) on s.zoo is redundant: b (x, y) has"), ("E050", None, "")
    )
    assert _mismatches("cmd", agreeing, {"s": case}) == []
    wrong = doc(("W002", "b", "index b (x) on s.zoo is redundant: a (x) has"), ("E004", None, ""))
    assert _mismatches("cmd", wrong, {"s": case}) == [
        "cmd s (c): false positive W002 on b (covered by a)",
        "cmd s (c): false negative, no W002 on a",
        "cmd s (c): false positive E004",
        "cmd s (c): false negative E050",
    ]
