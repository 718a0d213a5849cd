"""A real streaming replica for the tests: a primary and a hot standby from the embedded
server's binaries (PostgreSQL 18 by default, 16 with ``TENANT_INDEXES_EMBEDDED=pg16``).

The pair is independent of the run's ``DATABASE_URL``: a standby must run the primary's major
version, and the binaries shipped in the embedded package are the ones every machine has.
Both servers listen on Unix sockets only, each in its own short directory under the system's
temporary folder, so they never collide with a server on a TCP port or with a colleague's run.

As root, PostgreSQL refuses to run, so (like the embedded package itself) the servers run as
that package's system user, created on first use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import dbapi
from tests.support.cluster import pgserver_bin, run_binary, server_user

# How long to wait for the standby to replay the primary's WAL.
REPLAY_TIMEOUT_SECONDS = 30


def _run(program: str, args: list[str], user: str | None) -> None:
    run_binary(pgserver_bin(), program, args, user)


@dataclass
class ReplicaPair:
    """A running primary and a hot standby that streams from it."""

    root: Path
    user: str | None
    primary_socket: Path
    standby_socket: Path
    dbname: str = "tenant_indexes_replica"

    @property
    def primary_data(self) -> Path:
        return self.root / "primary"

    @property
    def standby_data(self) -> Path:
        return self.root / "standby"

    def database_settings(self, base: dict[str, Any], standby: bool) -> dict[str, Any]:
        """A Django ``DATABASES`` entry for one server, built from another alias's entry."""
        settings = {**base}
        settings.update(
            NAME=self.dbname,
            USER="postgres",
            PASSWORD="",
            HOST=str(self.standby_socket if standby else self.primary_socket),
            PORT="5432",
            TEST={**base.get("TEST", {}), "NAME": self.dbname},
        )
        return settings

    def connect(self, standby: bool, dbname: str | None = None) -> dbapi.Session:
        return dbapi.connect(
            host=str(self.standby_socket if standby else self.primary_socket),
            port=5432,
            user="postgres",
            dbname=dbname or self.dbname,
            autocommit=True,
        )

    def wait_for_replay(self) -> None:
        """Block until the standby has replayed everything the primary has written so far.

        Polls ``pg_last_wal_replay_lsn()`` on the standby against the primary's
        ``pg_current_wal_lsn()`` in a bounded loop; raises if the standby falls behind for
        longer than :data:`REPLAY_TIMEOUT_SECONDS`.
        """
        with self.connect(standby=False) as primary:
            target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        deadline = time.monotonic() + REPLAY_TIMEOUT_SECONDS
        with self.connect(standby=True) as standby:
            while True:
                caught_up = standby.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
                ).fetchone()[0]
                if caught_up:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"standby did not replay up to {target} in time")
                time.sleep(0.05)  # polling interval of a bounded loop, not a hope

    def stop(self) -> None:
        # Throwaway servers: an immediate stop skips the shutdown checkpoint; the data goes.
        for data in (self.standby_data, self.primary_data):
            if (data / "postmaster.pid").exists():
                try:
                    _run("pg_ctl", ["-D", str(data), "-m", "immediate", "-w", "stop"], self.user)
                except (RuntimeError, subprocess.TimeoutExpired):
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


def _start(data: Path, socket_dir: Path, user: str | None) -> None:
    options = f"-h '' -k {socket_dir} -c fsync=off -c full_page_writes=off"
    log = str(data.parent / f"{data.name}.log")
    _run("pg_ctl", ["-D", str(data), "-o", options, "-l", log, "-w", "start"], user)


def start_replica_pair() -> ReplicaPair:
    """initdb a primary, start it, pg_basebackup a standby from it and start the standby.

    The standby is a hot standby in streaming replication (``pg_basebackup -R`` writes
    ``standby.signal`` and ``primary_conninfo``). The caller must call
    :meth:`ReplicaPair.stop`.
    """
    user = server_user()
    # Short paths: a Unix socket path must fit in about 100 bytes.
    root = Path(tempfile.mkdtemp(prefix="ti-repl-"))
    pair = ReplicaPair(root=root, user=user, primary_socket=root / "ps", standby_socket=root / "ss")
    for folder in (pair.primary_socket, pair.standby_socket):
        folder.mkdir()
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        root.chmod(0o755)
        for folder in (root, pair.primary_socket, pair.standby_socket):
            os.chown(folder, entry.pw_uid, entry.pw_gid)
    try:
        _run(
            "initdb",
            ["-D", str(pair.primary_data), "--auth=trust", "-U", "postgres", "--encoding=utf8"],
            user,
        )
        _start(pair.primary_data, pair.primary_socket, user)
        with pair.connect(standby=False, dbname="postgres") as conn:
            conn.execute(f'CREATE DATABASE "{pair.dbname}"')
        _run(
            "pg_basebackup",
            [
                "-D",
                str(pair.standby_data),
                "-h",
                str(pair.primary_socket),
                "-U",
                "postgres",
                "-X",
                "stream",
                "-R",
                "--checkpoint=fast",
            ],
            user,
        )
        _start(pair.standby_data, pair.standby_socket, user)
        with pair.connect(standby=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    except BaseException:
        pair.stop()
        raise
    return pair
