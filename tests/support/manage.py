"""``manage.py`` in a subprocess, the way a user or a deploy runs it, for the scenario tests.

``scenario_env(database_entry(), config)`` is the environment of ``tests/scenario_settings.py``
on the test database (or any ``DATABASES`` entry, e.g. one through PgBouncer); ``run(env,
*args)`` runs ``manage.py`` to its end and returns the finished process (exit code, stdout,
stderr); ``start(env, *args)`` returns the running one, for a test that reads its output as it
comes or kills it. ``killed_build_table(rows)`` migrates the ``killed_build`` scenario's table
and fills it, for the build scenarios. ``call(name, *args)`` runs a command in this process and
returns its exit code and output; ``wait_for(what, probe)`` polls until ``probe`` is truthy.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from io import StringIO
from pathlib import Path
from typing import Any

from django.core.management import CommandError, call_command
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0  # seconds a manage.py run of a scenario may take before the test fails
CONNECTION_FIELDS = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
# Little sort memory and no parallel workers: a slower, single-backend build.
SLOW_BUILD = {"options": "-c maintenance_work_mem=1MB -c max_parallel_maintenance_workers=0"}
TABLE = "scenario_bulk_rows"


def database_entry(settings_dict: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The connection fields of ``settings_dict`` (default: the test database), plus ``extra``."""
    source = connection.settings_dict if settings_dict is None else settings_dict
    return {**{k: source[k] for k in CONNECTION_FIELDS}, **extra}


def scenario_env(
    entry: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    *,
    settings: str = "tests.scenario_settings",
    **extra: str,
) -> dict[str, str]:
    """The environment of a ``manage.py`` on ``entry`` with ``TENANT_INDEXES = config``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "TENANT_INDEXES_SCENARIO_DB": json.dumps(dict(entry)),
        "PYTHONWARNINGS": "ignore",
    }
    if config is not None:
        env["TENANT_INDEXES_SCENARIO_CONFIG"] = json.dumps(dict(config))
    return env | extra


def run(
    env: Mapping[str, str], *args: str, timeout: float = DEADLINE
) -> subprocess.CompletedProcess[str]:
    """``manage.py *args`` run to its end; stdout and stderr captured apart."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(env: Mapping[str, str], *args: str, **popen: Any) -> subprocess.Popen[str]:
    """``manage.py *args`` started; by default its stdout and stderr are one text pipe."""
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    return subprocess.Popen(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=dict(env), **(options | popen)
    )


@contextlib.contextmanager
def killed_build_table(rows: int, *, scattered: bool = False) -> Iterator[None]:
    """The ``killed_build`` scenario's table (its ``0001``) with ``rows`` rows over ten tenants;
    ``scattered`` spreads ``n`` over a million values with an md5 payload and analyses the table
    (a realistic, slower build). Dropped, and the scenario unrecorded, afterwards."""
    env = scenario_env(database_entry(), {})
    result = run(env, "migrate", "killed_build", "0001", "--no-input")
    assert result.returncode == 0, result.stdout + result.stderr
    values = "((g::bigint * 7919) %% 1000003)::int, md5(g::text)" if scattered else "g, 'x'"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (tenant_id, n, payload) "
            f"SELECT ('00000000-0000-0000-0000-00000000000' || (g %% 10))::uuid, {values} "
            "FROM generate_series(1, %s) AS g",
            [rows],
        )
        if scattered:
            cursor.execute(f"VACUUM ANALYZE {TABLE}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
            cursor.execute("DELETE FROM django_migrations WHERE app = 'killed_build'")
        connection.close()


def call(name: str, *args: str) -> tuple[int, str, str]:
    """``call_command(name, *args)`` in this process: exit code, stdout, stderr (with the
    ``CommandError``'s message when it exits non-zero)."""
    out, err = StringIO(), StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
    except CommandError as e:
        return e.returncode, out.getvalue(), err.getvalue() + str(e)
    return 0, out.getvalue(), err.getvalue()


def wait_for(what: str, probe: Any, interval: float = 0.005) -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``DEADLINE`` seconds."""
    ends = time.monotonic() + DEADLINE
    while time.monotonic() < ends:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
