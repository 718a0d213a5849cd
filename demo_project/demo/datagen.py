"""A deterministic, fast generator of help-desk data for the seed's tables.

The same seed and sizes always produce byte-identical tables (ids, uuids, text, timestamps):
every value comes from one :class:`random.Random` seeded by the caller and a fixed epoch,
never from the clock. Rows are streamed with PostgreSQL ``COPY``
(psycopg 3's ``cursor.copy()``, psycopg2's ``copy_expert()``), which loads a few hundred
thousand rows per second.

Tenant sizes follow a Zipf distribution (weight ``1 / rank``): a few large tenants and a long
tail, as in a real SaaS. Tickets, messages and audit logs of all tenants are interleaved in
insertion order, as they would be when tenants work at the same time, so one tenant's rows are
spread over the whole table, which is what makes a missing tenant index expensive.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from django.db import NotSupportedError, connection, transaction

# Tables in load order (parents first) and their COPY columns.
COLUMNS: dict[str, tuple[str, ...]] = {
    "tenants": ("id", "name", "slug", "created_at"),
    "users": ("id", "tenant_id", "email", "name", "role", "is_active", "created_at"),
    "customers": ("id", "tenant_id", "name", "email", "status", "created_at"),
    "tickets": (
        "id",
        "tenant_id",
        "customer_id",
        "subject",
        "status",
        "priority",
        "created_at",
        "updated_at",
    ),
    "messages": ("id", "tenant_id", "ticket_id", "author_id", "body", "created_at"),
    "files": ("id", "tenant_id", "name", "size", "content_type", "storage_key", "created_at"),
    "integration_credentials": (
        "id",
        "tenant_id",
        "provider",
        "label",
        "secret_ref",
        "created_at",
        "rotated_at",
    ),
    "audit_logs": (
        "id",
        "tenant_id",
        "action",
        "actor",
        "target_type",
        "target_id",
        "metadata",
        "created_at",
    ),
    "tenant_usage_metrics": ("id", "tenant_id", "metric", "value", "period_start", "period_end"),
}
TABLES: tuple[str, ...] = tuple(COLUMNS)

# --scale 1 is the default; --scale 100 is the benchmark's 2,000 tenants / 2,000,000 tickets.
TENANTS_PER_SCALE = 20
TICKETS_PER_SCALE = 20_000
ZIPF_EXPONENT = 1.0
EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
SPAN_SECONDS = 365 * 24 * 3600
METRIC_MONTHS = 12

_WORDS = (
    "login refund invoice export password sync webhook outage billing upgrade import "
    "report api mobile email sso latency timeout crash slack calendar mfa quota csv"
).split()
_FIRST = "ada alan grace linus margaret ken barbara donald edsger frances john radia".split()
_LAST = "lovelace turing hopper torvalds hamilton thompson liskov knuth dijkstra allen".split()
_COMPANY = "acme globex initech umbrella hooli stark wayne wonka tyrell cyberdyne".split()
_TICKET_STATUS = ("open", "pending", "resolved", "closed")
_TICKET_STATUS_WEIGHTS = (15, 10, 25, 50)
_PRIORITY = ("low", "normal", "high", "urgent")
_PRIORITY_WEIGHTS = (20, 60, 15, 5)
_CUSTOMER_STATUS = ("active", "inactive", "blocked")
_CUSTOMER_STATUS_WEIGHTS = (85, 13, 2)
_ROLES = ("admin", "agent", "viewer")
_PROVIDERS = ("slack", "github", "jira", "salesforce", "email")
_CONTENT_TYPES = ("application/pdf", "image/png", "image/jpeg", "text/csv", "text/plain")
_ACTIONS = ("ticket.create", "ticket.update", "ticket.close", "user.login", "file.upload")
_METRICS = ("tickets_created", "messages_sent", "storage_bytes", "active_users", "api_calls")
_MESSAGES_PER_TICKET = (0, 1, 2, 3, 4)  # uniform: two messages per ticket on average

COPY_CHUNK_ROWS = 20_000


@dataclasses.dataclass(frozen=True)
class DemoSize:
    """How much data to generate."""

    tenants: int
    tickets: int

    @classmethod
    def from_scale(cls, scale: float) -> DemoSize:
        """``scale`` 1 = 20 tenants and 20,000 tickets; sizes grow linearly."""
        return cls(
            tenants=max(1, round(TENANTS_PER_SCALE * scale)),
            tickets=max(1, round(TICKETS_PER_SCALE * scale)),
        )


@dataclasses.dataclass(frozen=True)
class TableLoad:
    """One table's load: rows written and seconds spent."""

    table: str
    rows: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class DemoLoad:
    """The result of :func:`generate_demo_data`."""

    seed: int
    size: DemoSize
    tables: tuple[TableLoad, ...]
    foreign_key_seconds: float  # validating the foreign keys after the COPY
    tickets_per_tenant: tuple[int, ...]  # descending

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.tables) + self.foreign_key_seconds


class DemoDataError(Exception):
    """The demo data cannot be generated here (tables not empty, unsupported backend)."""


ProgressCallback = Callable[[str, int, int], None]


def zipf_counts(total: int, buckets: int, exponent: float = ZIPF_EXPONENT) -> list[int]:
    """Split ``total`` into ``buckets`` Zipf-distributed integer counts (descending).

    Every bucket gets at least one when ``total >= buckets``; the split is exact (largest
    remainder) and involves no randomness.
    """
    floor = 1 if total >= buckets else 0
    rest = total - floor * buckets
    weights = [1.0 / (rank**exponent) for rank in range(1, buckets + 1)]
    scale = rest / sum(weights)
    shares = [w * scale for w in weights]
    counts = [int(s) for s in shares]
    by_remainder = sorted(range(buckets), key=lambda i: (counts[i] - shares[i], i))
    for i in by_remainder[: rest - sum(counts)]:
        counts[i] += 1
    return [c + floor for c in counts]


def _ts(seconds: int) -> str:
    return (EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S+00")


def _date(days: int) -> str:
    return (EPOCH.date() + dt.timedelta(days=days)).isoformat()


class _Generator:
    """Row producers for each table; all draw from one seeded RNG in a fixed order."""

    def __init__(self, seed: int, size: DemoSize) -> None:
        self.rng = random.Random(seed)
        self.size = size
        rng = self.rng
        self.tenant_ids = [
            str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(size.tenants)
        ]
        # Which tenant is big is random, not "the first one created".
        ranks = list(range(size.tenants))
        rng.shuffle(ranks)
        by_rank = zipf_counts(size.tickets, size.tenants)
        self.tickets_of = [by_rank[ranks[t]] for t in range(size.tenants)]
        self.customers_of = [max(1, n // 10) for n in self.tickets_of]
        self.users_of = [min(200, 1 + n // 100) for n in self.tickets_of]
        self.files_of = [n // 10 for n in self.tickets_of]
        self.credentials_of = [1 + t % 3 for t in range(size.tenants)]
        self.customer_start = self._starts(self.customers_of)
        self.user_start = self._starts(self.users_of)

    @staticmethod
    def _starts(counts: Sequence[int]) -> list[int]:
        starts, next_id = [], 1
        for n in counts:
            starts.append(next_id)
            next_id += n
        return starts

    def _rows(self, counts: Sequence[int]) -> Iterator[tuple[int, int, str, int]]:
        """Per row, tenant by tenant: its id (from 1), the tenant's index and id, and the row's
        index within the tenant (``counts[t]`` rows for tenant ``t``)."""
        next_id = 1
        for t, n in enumerate(counts):
            for i in range(n):
                yield next_id, t, self.tenant_ids[t], i
                next_id += 1

    def _interleaved_tenants(self, counts: Sequence[int]) -> list[int]:
        order = [t for t, n in enumerate(counts) for _ in range(n)]
        self.rng.shuffle(order)
        return order

    def tenants(self) -> Iterator[str]:
        for t, tid in enumerate(self.tenant_ids):
            company = _COMPANY[t % len(_COMPANY)]
            yield f"{tid}\t{company.title()} {t}\t{company}-{t}\t{_ts(t * 60)}\n"

    def users(self) -> Iterator[str]:
        rng = self.rng
        for next_id, t, tid, i in self._rows(self.users_of):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            role = "admin" if i == 0 else rng.choice(_ROLES)
            active = "f" if rng.random() < 0.05 else "t"
            yield (
                f"{next_id}\t{tid}\t{first}.{last}.{i}@tenant{t}.example\t"
                f"{first.title()} {last.title()}\t{role}\t{active}\t"
                f"{_ts(t * 60 + i)}\n"
            )

    def customers(self) -> Iterator[str]:
        rng = self.rng
        for next_id, t, tid, i in self._rows(self.customers_of):
            if i == 0:  # every tenant has a customer; its statuses are drawn first
                statuses = rng.choices(
                    _CUSTOMER_STATUS, _CUSTOMER_STATUS_WEIGHTS, k=self.customers_of[t]
                )
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            yield (
                f"{next_id}\t{tid}\t{first.title()} {last.title()}\t"
                f"{first}{i}@customer{t}.example\t{statuses[i]}\t"
                f"{_ts(rng.randrange(SPAN_SECONDS))}\n"
            )

    def tickets(self) -> Iterator[str]:
        rng = self.rng
        order = self._interleaved_tenants(self.tickets_of)
        total = len(order)
        statuses = rng.choices(_TICKET_STATUS, _TICKET_STATUS_WEIGHTS, k=total)
        priorities = rng.choices(_PRIORITY, _PRIORITY_WEIGHTS, k=total)
        # The ticket -> tenant map is kept for the messages.
        self.ticket_tenant = order
        step = SPAN_SECONDS / max(total, 1)
        for i, t in enumerate(order):
            customer = self.customer_start[t] + rng.randrange(self.customers_of[t])
            created = int(i * step)
            subject = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} request {i + 1}"
            yield (
                f"{i + 1}\t{self.tenant_ids[t]}\t{customer}\t{subject}\t{statuses[i]}\t"
                f"{priorities[i]}\t{_ts(created)}\t{_ts(created + rng.randrange(86400))}\n"
            )

    def messages(self) -> Iterator[str]:
        rng, next_id = self.rng, 1
        per_ticket = rng.choices(_MESSAGES_PER_TICKET, k=len(self.ticket_tenant))
        step = SPAN_SECONDS / max(len(self.ticket_tenant), 1)
        for ticket_index, t in enumerate(self.ticket_tenant):
            tid = self.tenant_ids[t]
            created = int(ticket_index * step)
            for m in range(per_ticket[ticket_index]):
                # Every other message is from the customer (no author).
                author = (
                    str(self.user_start[t] + rng.randrange(self.users_of[t])) if m % 2 else r"\N"
                )
                body = " ".join(rng.choices(_WORDS, k=8))
                yield (
                    f"{next_id}\t{tid}\t{ticket_index + 1}\t{author}\t{body}\t"
                    f"{_ts(created + 600 * (m + 1))}\n"
                )
                next_id += 1

    def files(self) -> Iterator[str]:
        rng = self.rng
        for next_id, _, tid, _ in self._rows(self.files_of):
            content_type = rng.choice(_CONTENT_TYPES)
            extension = content_type.rsplit("/", 1)[1]
            yield (
                f"{next_id}\t{tid}\t{rng.choice(_WORDS)}-{next_id}.{extension}\t"
                f"{rng.randrange(1_000, 50_000_000)}\t{content_type}\t"
                f"tenants/{tid}/files/{next_id}\t{_ts(rng.randrange(SPAN_SECONDS))}\n"
            )

    def integration_credentials(self) -> Iterator[str]:
        rng = self.rng
        for next_id, t, tid, i in self._rows(self.credentials_of):
            if i == 0:  # every tenant has one to three; its providers are drawn first
                providers = rng.sample(_PROVIDERS, self.credentials_of[t])
            provider = providers[i]
            created = rng.randrange(SPAN_SECONDS)
            rotated = _ts(created + 86400 * 30) if rng.random() < 0.5 else r"\N"
            yield (
                f"{next_id}\t{tid}\t{provider}\t{provider} main\t"
                f"vault:secret/data/tenants/{tid}/{provider}\t{_ts(created)}\t{rotated}\n"
            )

    def audit_logs(self) -> Iterator[str]:
        # One audit log per ticket, interleaved across tenants like the tickets.
        rng = self.rng
        order = self._interleaved_tenants(self.tickets_of)
        actions = rng.choices(_ACTIONS, k=len(order))
        step = SPAN_SECONDS / max(len(order), 1)
        for i, t in enumerate(order):
            user = self.user_start[t] + rng.randrange(self.users_of[t])
            target = rng.randrange(1, 1_000_000)
            yield (
                f"{i + 1}\t{self.tenant_ids[t]}\t{actions[i]}\tuser:{user}\t"
                f'{actions[i].split(".")[0]}\t{target}\t{{"ip": "10.0.{t % 256}.{i % 256}"}}\t'
                f"{_ts(int(i * step))}\n"
            )

    def tenant_usage_metrics(self) -> Iterator[str]:
        rng = self.rng
        per_tenant = [METRIC_MONTHS * len(_METRICS)] * self.size.tenants
        for next_id, t, tid, i in self._rows(per_tenant):
            month, metric = divmod(i, len(_METRICS))  # month by month, every metric
            value = rng.randrange(0, 10 * self.tickets_of[t] + 10)
            yield (
                f"{next_id}\t{tid}\t{_METRICS[metric]}\t{value}\t"
                f"{_date(month * 30)}\t{_date(month * 30 + 29)}\n"
            )


def _copy(
    cursor: Any, table: str, rows: Iterator[str], progress: ProgressCallback | None, expected: int
) -> int:
    qn = connection.ops.quote_name
    columns = ", ".join(qn(c) for c in COLUMNS[table])
    sql = f"COPY {qn(table)} ({columns}) FROM STDIN"
    written = 0
    for_psycopg2 = not hasattr(cursor, "copy")
    chunks = _chunks(rows)
    if for_psycopg2:
        # psycopg2 (Django's other backend): copy_expert() reads the rows from a file.
        stream = _ChunkReader(chunks, table, progress, expected)
        cursor.copy_expert(sql, stream)
        return stream.rows
    with cursor.copy(sql) as copy:
        for chunk, count in chunks:
            copy.write(chunk)
            written += count
            if progress:
                # Never "done" mid-table: expected is only an estimate for messages.
                progress(table, written, max(expected, written + 1))
    return written


def _chunks(rows: Iterator[str]) -> Iterator[tuple[str, int]]:
    """The rows as COPY text, ``COPY_CHUNK_ROWS`` rows at a time, with their count."""
    chunk: list[str] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= COPY_CHUNK_ROWS:
            yield "".join(chunk), len(chunk)
            chunk.clear()
    if chunk:
        yield "".join(chunk), len(chunk)


class _ChunkReader:
    """A read-only file over :func:`_chunks` for psycopg2's ``copy_expert()``."""

    def __init__(
        self,
        chunks: Iterator[tuple[str, int]],
        table: str,
        progress: ProgressCallback | None,
        expected: int,
    ) -> None:
        self.chunks = chunks
        self.table = table
        self.progress = progress
        self.expected = expected
        self.rows = 0
        self._buffer = ""

    def read(self, size: int = -1) -> str:
        while size < 0 or len(self._buffer) < size:
            try:
                chunk, count = next(self.chunks)
            except StopIteration:
                break
            self._buffer += chunk
            self.rows += count
            if self.progress:
                self.progress(self.table, self.rows, max(self.expected, self.rows + 1))
        if size < 0:
            data, self._buffer = self._buffer, ""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    readline = read


def _reset_sequences(cursor: Any) -> None:
    # COPY wrote explicit ids; move each id sequence past them so ORM inserts keep working.
    for table in TABLES:
        if table == "tenants":
            continue
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
            f"COALESCE((SELECT max(id) FROM {connection.ops.quote_name(table)}), 0) + 1, false)",
            [table],
        )


def seed_foreign_keys() -> list[tuple[str, str, str]]:
    """``(table, constraint name, definition)`` of the foreign keys of the seed's tables."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
            "FROM pg_constraint c WHERE c.contype = 'f' "
            "AND c.conrelid = ANY(SELECT to_regclass(t) FROM unnest(%s::text[]) t) "
            "ORDER BY 1, 2",
            [list(TABLES)],
        )
        return [(table.strip('"'), name, definition) for table, name, definition in cursor]


def seed_tables_row_count() -> int:
    """Rows already in the seed's tables (0 when they are all empty)."""
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        probes = [f"(SELECT count(*) FROM (SELECT 1 FROM {qn(t)} LIMIT 1) s)" for t in TABLES]
        cursor.execute("SELECT " + " + ".join(probes))
        return int(cursor.fetchone()[0])


def truncate_seed_tables() -> None:
    """Empty the seed's tables.

    ``TRUNCATE`` when nothing else references them; when other tables do (a project's own
    tenant models), row-by-row ``DELETE``, which fails, rather than cascades, if those tables
    still hold rows of these tenants.
    """
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: TRUNCATE refuses to run
        # while checks of rows inserted earlier in the transaction are pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        try:
            with transaction.atomic():
                cursor.execute(f"TRUNCATE {', '.join(qn(t) for t in TABLES)}")
        except NotSupportedError:
            for table in reversed(TABLES):
                cursor.execute(f"DELETE FROM {qn(table)}")


def generate_demo_data(
    size: DemoSize, *, seed: int = 0, progress: ProgressCallback | None = None
) -> DemoLoad:
    """Load deterministic demo data into the (empty) seed tables with COPY.

    Args:
        size: number of tenants and tickets; the other tables are sized from them.
        seed: the same seed and size always give the same rows.
        progress: called as ``progress(table, rows_written, rows_expected)`` while loading.

    Returns:
        What was loaded, per table.

    Raises:
        DemoDataError: not PostgreSQL, or the seed tables are not empty.
    """
    connection.ensure_connection()
    if connection.vendor != "postgresql":
        raise DemoDataError("The demo data generator needs PostgreSQL (COPY).")
    if size.tenants < 1 or size.tickets < 0:
        raise DemoDataError("Need at least one tenant and a non-negative number of tickets.")
    if seed_tables_row_count():
        raise DemoDataError(
            "The seed tables already hold rows; pass --replace to empty them first."
        )
    gen = _Generator(seed, size)
    tickets = size.tickets
    expected = {
        "tenants": size.tenants,
        "users": sum(gen.users_of),
        "customers": sum(gen.customers_of),
        "tickets": tickets,
        "messages": 2 * tickets,
        "files": sum(gen.files_of),
        "integration_credentials": sum(gen.credentials_of),
        "audit_logs": tickets,
        "tenant_usage_metrics": size.tenants * METRIC_MONTHS * len(_METRICS),
    }
    loads = []
    with connection.cursor() as cursor:
        # Checked row by row, the foreign keys cost a third of the load; dropped and added
        # back after the COPY, each is validated by one join. The caller's transaction
        # restores them if anything fails.
        foreign_keys = seed_foreign_keys()
        qn = connection.ops.quote_name
        for table, name, _ in foreign_keys:
            cursor.execute(f"ALTER TABLE {qn(table)} DROP CONSTRAINT {qn(name)}")
        for table in TABLES:
            started = time.perf_counter()
            rows = _copy(cursor, table, getattr(gen, table)(), progress, expected[table])
            loads.append(TableLoad(table, rows, time.perf_counter() - started))
            if progress:
                progress(table, rows, rows)
        started = time.perf_counter()
        for table, name, definition in foreign_keys:
            # The definition comes from pg_get_constraintdef(): an identifier-safe SQL text.
            cursor.execute(f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(name)} {definition}")
        foreign_key_seconds = time.perf_counter() - started
        _reset_sequences(cursor)
    return DemoLoad(
        seed=seed,
        size=size,
        tables=tuple(loads),
        foreign_key_seconds=foreign_key_seconds,
        tickets_per_tenant=tuple(sorted(gen.tickets_of, reverse=True)),
    )


def table_checksums() -> dict[str, tuple[int, str]]:
    """``{table: (rows, md5 of all rows in id order)}`` for the seed's tables."""
    qn = connection.ops.quote_name
    result = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(
                f"SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t.id)), '') "
                f"FROM {qn(table)} t"
            )
            rows, digest = cursor.fetchone()
            result[table] = (int(rows), digest)
    return result


def analyze_seed_tables(vacuum: bool = True) -> None:
    """``VACUUM ANALYZE`` (or ``ANALYZE`` inside a transaction) the seed's tables."""
    qn = connection.ops.quote_name
    verb = "VACUUM ANALYZE" if vacuum and not connection.in_atomic_block else "ANALYZE"
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"{verb} {qn(table)}")
