"""The build-control SQL on the real server: progress sampled from another session."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from tenant_indexes import buildcontrol
from tests.test_operations import other_session, run_sql, seed_indexes_unapplied


@pytest.mark.django_db(transaction=True)
def test_build_progress__reports_phase_and_names_the_waited_for_writer() -> None:
    """pg_stat_progress_create_index, sampled from another session while a build waits."""
    with seed_indexes_unapplied(), other_session() as writer, other_session() as builder:
        writer_pid = run_sql(writer, "SELECT pg_backend_pid()")[0][0]
        builder_pid = run_sql(builder, "SELECT pg_backend_pid()")[0][0]
        run_sql(writer, "BEGIN")
        run_sql(writer, "UPDATE files SET name = name /* writer */")
        errors: list[BaseException] = []

        def build() -> None:
            try:
                run_sql(
                    builder, "CREATE INDEX CONCURRENTLY idx_files_tenant_id ON files (tenant_id)"
                )
            except BaseException as e:  # reported by the assertion below
                errors.append(e)

        builder.inc_thread_sharing()  # the build runs in a thread, blocked
        thread = threading.Thread(target=build)
        thread.start()
        try:
            sample = None
            for _ in range(2000):  # until the build reaches its wait; bounded
                sample = buildcontrol.build_progress(connection, builder_pid)
                if sample is not None and sample.phase == "waiting for writers before build":
                    break
                threading.Event().wait(0.01)
            assert sample is not None and sample.phase == "waiting for writers before build"
            assert sample.blocker is not None and sample.blocker.pid == writer_pid
            assert "writer" in (sample.blocker.query or "")
            assert sample.lockers_total >= 1
        finally:
            run_sql(writer, "ROLLBACK")
            thread.join()
            builder.dec_thread_sharing()
        assert errors == []
        run_sql(connection, "DROP INDEX idx_files_tenant_id")
