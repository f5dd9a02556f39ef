"""A throwaway PostgreSQL cluster for the tests: ``initdb`` + ``pg_ctl`` on 127.0.0.1 and a
free port, data in a temporary folder, run as the unprivileged ``postgres`` user when the
tests run as root (PostgreSQL refuses to run as root). Debian installs the binaries outside
PATH, in /usr/lib/postgresql/<version>/bin.

Roles: ``postgres`` (the superuser, no password from 127.0.0.1: trust) and ``secretuser``
(password ``SECRET_PASSWORD``, scram-sha-256), for the password tests.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SECRET_USER = "secretuser"
SECRET_PASSWORD = "s3cr3t-Pg-Passw0rd"


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One running cluster; ``url(db)`` for a database on it, ``new_database()`` a fresh one."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="syncctl-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                user = None
            if user is None:
                raise RuntimeError("running as root and there is no postgres user to run the server as")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self._count = 0

    def _run(self, *args: str) -> None:
        subprocess.run([*self.run_as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        hba = self.data / "pg_hba.conf"
        text = (f"local all all trust\nhost all {SECRET_USER} 127.0.0.1/32 scram-sha-256\n"
                "host all all 127.0.0.1/32 trust\n")
        self._run("sh", "-c", f"printf '%s' '{text}' > {hba}")
        self.pg_ctl("start")
        self.admin(f"CREATE ROLE {SECRET_USER} LOGIN SUPERUSER PASSWORD '{SECRET_PASSWORD}'")

    def pg_ctl(self, action: str, *extra: str) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
                   " -c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", action, *extra)

    def stop(self) -> None:
        try:
            self.pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str, database: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def new_database(self) -> str:
        self._count += 1
        name = f"t{os.getpid()}_{self._count}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE template0")
        return name
