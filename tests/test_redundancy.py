"""W002: redundancy decided over indexes that really exist on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection

from tenant_indexes.redundancy import find_redundant
from tenant_indexes.statistics import usage_snapshot
from tests.support.helpdesk import HELPDESK_TABLES

SCRATCH = "usage_redundancy_scratch"


def _redundancy_among(*statements: str) -> dict[str, str]:
    """Create a scratch table with the given indexes and return what find_redundant says."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {SCRATCH} (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, "
            'status text NOT NULL, x int NOT NULL, name text, email text, "Status Code" int)'
        )
        for statement in statements:
            cursor.execute(statement.format(t=SCRATCH))
    snapshot = usage_snapshot("default", [("public", SCRATCH)])
    return find_redundant(snapshot.indexes)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        pytest.param(
            ["CREATE INDEX a ON {t} (tenant_id)", "CREATE INDEX b ON {t} (tenant_id, status)"],
            {"a": "b"},
            id="leading-prefix",
        ),
        pytest.param(
            [
                "CREATE INDEX a ON {t} (tenant_id, status)",
                "CREATE INDEX b ON {t} (tenant_id, status)",
            ],
            {"b": "a"},
            id="exact-duplicate-keeps-first-name",
        ),
        pytest.param(
            [
                "CREATE INDEX a ON {t} (tenant_id, status)",
                "CREATE INDEX b ON {t} (tenant_id) INCLUDE (status)",
            ],
            {"b": "a"},
            id="include-column-present-as-key-in-the-wider-index",
        ),
        pytest.param(
            [
                "CREATE INDEX a ON {t} (tenant_id) INCLUDE (status)",
                "CREATE INDEX b ON {t} (tenant_id, x)",
            ],
            {},
            id="include-column-missing-from-the-wider-index",
        ),
        pytest.param(
            [
                "CREATE INDEX a ON {t} (tenant_id, status)",
                "CREATE INDEX b ON {t} (tenant_id) INCLUDE (status, x)",
            ],
            {},
            id="include-columns-are-not-key-columns",
        ),
        pytest.param(
            [
                "CREATE INDEX a ON {t} (tenant_id) WHERE status = 'open'",
                "CREATE INDEX b ON {t} (tenant_id, status)",
            ],
            {},
            id="different-predicate",
        ),
        pytest.param(
            [
                "CREATE INDEX a ON {t} (lower(status))",
                "CREATE INDEX b ON {t} (upper(status), tenant_id)",
            ],
            {},
            id="different-expressions",
        ),
        pytest.param(
            [
                "CREATE INDEX a ON {t} (lower(status))",
                "CREATE INDEX b ON {t} (lower(status), tenant_id)",
            ],
            {"a": "b"},
            id="same-expression-prefix",
        ),
        pytest.param(
            [
                "CREATE INDEX a ON {t} USING hash (tenant_id)",
                "CREATE INDEX b ON {t} (tenant_id, status)",
            ],
            {},
            id="different-access-method",
        ),
        pytest.param(
            [
                "CREATE INDEX a ON {t} (status text_pattern_ops)",
                "CREATE INDEX b ON {t} (status, tenant_id)",
            ],
            {},
            id="different-operator-class",
        ),
        pytest.param(
            [
                "ALTER TABLE {t} ADD CONSTRAINT a UNIQUE (tenant_id)",
                "CREATE INDEX b ON {t} (tenant_id, status)",
            ],
            {},
            id="prefix-backs-a-unique-constraint",
        ),
        pytest.param(
            [
                "ALTER TABLE {t} ADD CONSTRAINT b UNIQUE (tenant_id, status)",
                "CREATE INDEX a ON {t} (tenant_id, status)",
            ],
            {"a": "b"},
            id="duplicate-of-a-constraint-reports-the-plain-index",
        ),
        pytest.param(
            [
                "CREATE UNIQUE INDEX a ON {t} (tenant_id)",
                "CREATE INDEX b ON {t} (tenant_id, status)",
            ],
            {},
            id="unique-prefix-enforces-more-than-the-wider-index",
        ),
        pytest.param(
            ["CREATE INDEX a ON {t} (tenant_id)", "CREATE INDEX b ON {t} (tenant_id, lower(name))"],
            {"a": "b"},
            id="column-prefix-of-an-expression-index",
        ),
        pytest.param(
            [
                "CREATE INDEX a ON {t} (tenant_id, lower(name))",
                "CREATE INDEX b ON {t} (tenant_id, lower(name), upper(email))",
            ],
            {"a": "b"},
            id="expression-prefix-of-a-longer-expression-index",
        ),
        pytest.param(
            [
                "CREATE INDEX a ON {t} (tenant_id, lower(name))",
                "CREATE INDEX b ON {t} (tenant_id, upper(name), lower(name))",
            ],
            {},
            id="same-expression-in-another-position",
        ),
        pytest.param(
            [
                'CREATE INDEX "q USING btree (tenant_id)" ON {t} ("Status Code")',
                "CREATE INDEX b ON {t} (tenant_id)",
            ],
            {},
            id="quoted-name-that-reads-like-an-indexdef",
        ),
        pytest.param(
            [
                'CREATE INDEX "q USING btree (tenant_id)" ON {t} ("Status Code")',
                'CREATE INDEX b ON {t} ("Status Code", tenant_id)',
            ],
            {"q USING btree (tenant_id)": "b"},
            id="quoted-column-prefix",
        ),
        pytest.param(
            [
                "CREATE INDEX a ON {t} USING brin (tenant_id)",
                "CREATE INDEX b ON {t} USING brin (tenant_id, x)",
            ],
            {},
            id="brin-is-not-a-prefix-index",
        ),
        pytest.param(
            ["CREATE INDEX a ON {t} (id)"],
            {"a": f"{SCRATCH}_pkey"},
            id="duplicate-of-the-primary-key",
        ),
    ],
)
def test_find_redundant__real_indexes(statements: list[str], expected: dict[str, str]) -> None:
    assert _redundancy_among(*statements) == expected


@pytest.mark.django_db
def test_find_redundant__seed_reports_exactly_the_two_tenant_id_beside_tenant_status() -> None:
    tables = [("public", t) for t in HELPDESK_TABLES]
    snapshot = usage_snapshot("default", tables)
    assert find_redundant(snapshot.indexes) == {
        "idx_customers_tenant_id": "idx_customers_tenant_status",
        "idx_tickets_tenant_id": "idx_tickets_tenant_status",
    }
