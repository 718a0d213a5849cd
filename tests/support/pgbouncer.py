"""A real PgBouncer (Debian's ``pgbouncer``) in front of the test server, for pooler tests.

``with pgbouncer(settings.DATABASES["default"], pool_mode="transaction") as entry:`` starts
PgBouncer on a free loopback port, pointing at the server that entry names (TCP host/port or
the embedded server's Unix socket directory), and yields a copy of the ``DATABASES`` entry that
connects through it. Any database name is routed to the same name on the server. The pooler
stops when the block ends.

PgBouncer refuses to run as root; when the tests run as root it is started with ``-u`` as the
user that owns the server's socket directory (or ``postgres``), which can reach the server.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as(host: str) -> str | None:
    """The user PgBouncer switches to when started as root (None when not root)."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        return pwd.getpwuid(os.stat(host).st_uid).pw_name
    return "postgres"


@contextlib.contextmanager
def pgbouncer(
    database: dict[str, Any],
    *,
    pool_mode: str = "transaction",
    pool_size: int = 2,
    extra: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run PgBouncer in front of the server ``database`` names; yield an entry through it.

    Args:
        database: a Django ``DATABASES`` entry of the real server.
        pool_mode: ``transaction``, ``session`` or ``statement``.
        pool_size: server connections per (database, user) pair.
        extra: more ``[pgbouncer]`` settings, e.g. ``{"query_wait_timeout": "5"}``.
    """
    if not Path(PGBOUNCER).exists():
        pytest.fail("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    host = database.get("HOST") or "/var/run/postgresql"
    port = str(database.get("PORT") or 5432)
    user = database.get("USER") or "postgres"
    workdir = Path(tempfile.mkdtemp(prefix="ti-pgbouncer-"))
    listen = free_port()
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(listen),
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": str(workdir / "users.txt"),
        "pool_mode": pool_mode,
        "default_pool_size": str(pool_size),
        "max_client_conn": "200",
        "logfile": str(workdir / "pgbouncer.log"),
        "pidfile": str(workdir / "pgbouncer.pid"),
        "ignore_startup_parameters": "extra_float_digits,options,application_name",
        **(extra or {}),
    }
    lines = ["[databases]", f"* = host={host} port={port} user={user}", "", "[pgbouncer]"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    (workdir / "pgbouncer.ini").write_text("\n".join(lines) + "\n")
    (workdir / "users.txt").write_text(f'"{user}" ""\n')
    run_as = _run_as(str(host))
    command = [PGBOUNCER, str(workdir / "pgbouncer.ini")]
    if run_as:
        owner = pwd.getpwnam(run_as)
        for path in [workdir, *workdir.iterdir()]:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        command[1:1] = ["-u", run_as]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", listen), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                log = (
                    (workdir / "pgbouncer.log").read_text()
                    if (workdir / "pgbouncer.log").exists()
                    else ""
                )
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"pgbouncer did not start: {output}{log}")
            time.sleep(0.05)
        entry = {**database, "HOST": "127.0.0.1", "PORT": str(listen), "USER": user}
        entry["OPTIONS"] = {**database.get("OPTIONS", {})}
        # Django reuses no connection across requests in tests; no server-side cursors through
        # a transaction pool (they would outlive the transaction's server connection).
        entry["DISABLE_SERVER_SIDE_CURSORS"] = True
        yield entry
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
