"""The demo data generator (``seed_demo_data``) and the benchmark's plan shapes, at tiny scale."""

from __future__ import annotations

import statistics
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import Count

from demo_project.demo.datagen import DemoSize, seed_foreign_keys, table_checksums, zipf_counts
from demo_project.demo.querybench import run_benchmark, scan_node, typical_queries
from tenant_indexes.helpdesk.models import Customer, Tenant, Ticket

SMALL = ["--tenants", "12", "--tickets", "3000"]


def _seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo_data", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def _checksums_of(*args: str) -> dict[str, tuple[int, str]]:
    """Load, read the checksums, and roll the load back."""
    with transaction.atomic():
        _seed(*args)
        sums = table_checksums()
        transaction.set_rollback(True)
    return sums


def test_zipf_counts__exact_total_descending_and_skewed() -> None:
    counts = zipf_counts(2_000_000, 2_000)
    assert sum(counts) == 2_000_000
    assert counts == sorted(counts, reverse=True)
    assert min(counts) >= 1
    # A few large tenants and a long tail: the largest dwarfs the median.
    assert counts[0] > 500 * statistics.median(counts)
    assert sum(counts[:20]) > 0.4 * sum(counts)  # 1% of the tenants hold over 40%


def test_demo_size__scale_100_is_the_benchmark_target() -> None:
    assert DemoSize.from_scale(100) == DemoSize(tenants=2_000, tickets=2_000_000)
    assert DemoSize.from_scale(1) == DemoSize(tenants=20, tickets=20_000)


@pytest.mark.django_db
def test_seed__same_seed_gives_the_same_rows_and_another_seed_does_not() -> None:
    first = _checksums_of(*SMALL, "--seed", "7")
    again = _checksums_of(*SMALL, "--seed", "7")
    other = _checksums_of(*SMALL, "--seed", "8")
    assert first == again
    assert first["tickets"][0] == 3000 and first["tenants"][0] == 12
    assert all(rows > 0 for rows, _ in first.values()), first
    assert other["tickets"][0] == 3000
    assert other["tickets"][1] != first["tickets"][1]


@pytest.mark.django_db
def test_seed__tenant_sizes_are_skewed() -> None:
    _seed("--tenants", "40", "--tickets", "8000")
    sizes = sorted(
        Ticket.objects.values("tenant").annotate(n=Count("id")).values_list("n", flat=True)
    )
    assert len(sizes) == 40 and sum(sizes) == 8000
    assert sizes[-1] > 10 * statistics.median(sizes)


@pytest.mark.django_db
def test_seed__related_rows_stay_within_their_tenant() -> None:
    _seed(*SMALL)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT
              (SELECT count(*) FROM tickets t JOIN customers c ON c.id = t.customer_id
                WHERE c.tenant_id <> t.tenant_id),
              (SELECT count(*) FROM messages m JOIN tickets t ON t.id = m.ticket_id
                WHERE t.tenant_id <> m.tenant_id),
              (SELECT count(*) FROM messages m JOIN users u ON u.id = m.author_id
                WHERE u.tenant_id <> m.tenant_id),
              (SELECT count(DISTINCT status) FROM tickets)
            """
        )
        assert cursor.fetchone() == (0, 0, 0, 4)


@pytest.mark.django_db
def test_seed__foreign_keys_are_back_with_the_same_names_and_definitions() -> None:
    """The load drops the seed's foreign keys for speed and adds them back, validated."""
    before = seed_foreign_keys()
    assert len(before) >= 11  # eight tenant FKs, ticket->customer, message->ticket/author
    _seed(*SMALL)
    assert seed_foreign_keys() == before
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated "
            "AND conrelid = ANY(SELECT to_regclass(t) FROM unnest(%s::text[]) t)",
            [[table for table, _, _ in before]],
        )
        assert cursor.fetchone()[0] == 0


@pytest.mark.django_db
def test_seed__orm_inserts_work_after_the_copy() -> None:
    """COPY wrote explicit ids; the sequences were moved past them."""
    _seed(*SMALL)
    tenant = Tenant.objects.order_by("slug").first()
    customer = Customer.objects.create(tenant=tenant, name="new", email="new@example.com")
    assert customer.pk == Customer.objects.count()


@pytest.mark.django_db
def test_seed__refuses_tables_with_rows_unless_replace() -> None:
    _seed(*SMALL)
    with pytest.raises(CommandError, match="--replace") as excinfo:
        _seed(*SMALL)
    assert excinfo.value.returncode == 2
    before = table_checksums()
    out = _seed(*SMALL, "--replace", "--checksums")
    assert table_checksums() == before
    assert before["tickets"][1] in out


@pytest.mark.django_db
@pytest.mark.parametrize("args", [["--scale", "0"], ["--tenants", "0"], ["--tickets", "-1"]])
def test_seed__bad_sizes_exit_2(args: list[str]) -> None:
    with pytest.raises(CommandError) as excinfo:
        _seed(*args)
    assert excinfo.value.returncode == 2


@pytest.mark.django_db
def test_plan__median_tenant_queries_use_the_tenant_indexes_and_seq_scan_without() -> None:
    _seed("--tenants", "50", "--tickets", "20000")  # ANALYZEs the tables
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
    result = run_benchmark(repeat=1)
    expected_index = {
        "tenant's open tickets": "idx_tickets_tenant_status",
        "tenant's customers": ("idx_customers_tenant_id", "idx_customers_tenant_status"),
        "messages of a ticket": "idx_messages_ticket_tenant",
        "tenant's audit logs": "idx_audit_logs_tenant_id",
    }
    for r in result.results:
        assert r.without_indexes.scan.node_type == "Seq Scan", r
        assert r.with_indexes.scan.node_type in (
            "Index Scan",
            "Index Only Scan",
            "Bitmap Heap Scan",
        ), r
        assert r.with_indexes.scan.index_name in expected_index[r.label], r
        assert r.with_indexes.rows == r.without_indexes.rows > 0, r
    # The indexes came back: the rollback restored them.
    queries = typical_queries(result.tenant_id)
    assert scan_node(queries[0].queryset, "tickets").index_name == "idx_tickets_tenant_status"


@pytest.mark.django_db
def test_demo_fail_closed__refuses_without_tenant_and_uses_the_index_with_one() -> None:
    _seed("--tenants", "50", "--tickets", "20000")
    out = StringIO()
    call_command("demo_fail_closed", stdout=out, no_color=True)
    text = out.getvalue()
    assert "refused: ScopedTicket is tenant-scoped and no tenant is set" in text
    assert "idx_tickets_tenant_status" in text
    assert "exists() = False" in text
    assert "for_tenant(<another tenant>) refused" in text


@pytest.mark.django_db
def test_demo_fail_closed__without_data_exits_2() -> None:
    with pytest.raises(CommandError, match="seed_demo_data") as excinfo:
        call_command("demo_fail_closed", stdout=StringIO())
    assert excinfo.value.returncode == 2


@pytest.mark.django_db
def test_demo_app__has_no_missing_migrations() -> None:
    out = StringIO()
    call_command("makemigrations", "demo", "scopingapp", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
