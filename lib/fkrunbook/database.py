"""A connection to one environment's database. The URL stays inside this object: it is never
printed, logged or put in an error message (its password is scrubbed from driver errors)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import psycopg
import psycopg.conninfo
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from .environment import Environment, get_environment
from .errors import ConnectionFailedError

CONNECT_TIMEOUT_S = 10


@dataclass
class Database:
    env: Environment
    _url: str = field(repr=False)
    read_only_session: bool = False  # every connection READ ONLY: for the phases that only look

    def __post_init__(self):
        params = psycopg.conninfo.conninfo_to_dict(self._url)
        self._secrets = [s for s in (params.get("password"),) if s]
        self.database_name = str(params.get("dbname") or params.get("user") or "")
        self.engine = create_engine("postgresql+psycopg://", creator=self.connect_raw, poolclass=NullPool)

    # -- connections ---------------------------------------------------------------------------
    def connect_raw(self, autocommit: bool = False, read_only: bool = False) -> psycopg.Connection:
        """A plain psycopg connection (the engine's creator). Errors come out redacted.
        ``read_only`` makes every transaction on it READ ONLY (for the notebooks' ``%sql``)."""
        read_only = read_only or self.read_only_session
        options = {"options": "-c default_transaction_read_only=on"} if read_only else {}
        try:
            return psycopg.connect(self._url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=autocommit,
                                   application_name="fkrunbook", **options)
        except psycopg.Error as err:
            raise ConnectionFailedError(
                f"cannot connect to environment {self.env.name!r}: {self.redact(_first_line(err))}; "
                f"check that the server is up and {self._where()} is right", environment=self.env.name) from None

    @contextlib.contextmanager
    def read_only(self) -> Connection:
        """A READ ONLY transaction, rolled back at the end: a phase that only looks cannot write."""
        with self.engine.connect() as conn:
            conn.execute(text("SET TRANSACTION READ ONLY"))
            try:
                yield conn
            finally:
                conn.rollback()

    @contextlib.contextmanager
    def transaction(self) -> Connection:
        """A read-write transaction, committed when the block ends without an error."""
        with self.engine.begin() as conn:
            yield conn

    def query(self, sql: str, **params) -> pd.DataFrame:
        """Run one read-only query and return its rows as a DataFrame."""
        with self.read_only() as conn:
            result = conn.execute(text(sql), params)
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

    # -- description, without secrets -----------------------------------------------------------
    def describe(self) -> pd.DataFrame:
        row = self.query("SELECT current_database() AS database, current_user AS \"user\", "
                         "current_setting('server_version') AS server_version, "
                         "pg_is_in_recovery() AS read_replica").iloc[0].to_dict()
        rows = [("environment", self.env.name), ("kind", self.env.kind), ("protected", self.env.protected)]
        rows += list(row.items())
        return pd.DataFrame(rows, columns=["property", "value"]).set_index("property")

    def server_version_num(self) -> int:
        return int(self.query("SHOW server_version_num").iloc[0, 0])

    @property
    def secrets(self) -> list[str]:
        """The connection's secrets, for the last scan of the evidence before it is sealed."""
        return list(self._secrets)

    def redact(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    def _where(self) -> str:
        return self.env.url_env if self.env.kind == "url" else f"the local server in {self.env.data_dir}"


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def connect(env: str | Environment, environments_path: str | Path | None = None, read_only: bool = False) -> Database:
    """Connect to an environment by name (or :class:`Environment`) and check that it answers.

    The local (embedded) environment is started on demand, and its database is created with the
    baseline schema and staging-like sample data the first time. With ``read_only``, every
    transaction on every connection of the returned object is READ ONLY.
    """
    if isinstance(env, str):
        env = get_environment(env, environments_path)
    db = Database(env, env.url() if env.kind == "url" else _local_url(env), read_only)
    db.connect_raw().close()
    return db


def _local_url(env: Environment) -> str:
    from .sample import ensure_local_database
    from .server import ensure_server

    server = ensure_server(env.data_dir, env.bin_dir)
    ensure_local_database(server, env.database)
    return server.url(env.database)
