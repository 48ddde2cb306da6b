"""Environments: where a runbook runs, and how to reach the database there without a secret in any file."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psycopg.conninfo
import yaml

from .errors import EnvironmentConfigError, EnvironmentUnknownError, SpecError
from .spec import LockRetries, parse_retries

KINDS = ("embedded", "url")


@dataclass(frozen=True)
class Environment:
    name: str
    kind: str
    protected: bool = False
    url_env: str | None = None
    data_dir: Path | None = None
    database: str = "fkrunbook"
    bin_dir: Path | None = None
    lock_retries: LockRetries | None = None  # overrides the spec's migration.lock_retries here

    def url(self) -> str:
        """The libpq URL of a ``url`` environment, read from its variable (see :func:`fkrunbook.database.connect`
        for the embedded kind)."""
        value = os.environ.get(self.url_env or "")
        if not value:
            raise EnvironmentConfigError(
                f"environment variable {self.url_env} is not set; export it with the {self.name} database URL "
                "(postgresql://user:password@host:port/db?sslmode=require)", environment=self.name)
        check_url(value, self)
        return value


def check_url(url: str, env: Environment) -> None:
    """Reject a malformed URL with a message that names the variable, never the URL."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise EnvironmentConfigError(
            f"{env.url_env} is not a PostgreSQL URL; it must start with postgresql:// "
            "(as Supabase and psql write it)", environment=env.name)
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise EnvironmentConfigError(
            f"{env.url_env} is not a valid PostgreSQL URL; check its format "
            "(postgresql://user:password@host:port/db?sslmode=require, password percent-encoded)",
            environment=env.name) from None


def load_environments(path: str | Path) -> dict[str, Environment]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise EnvironmentConfigError(f"environments file {str(path)!r} does not exist; "
                                     "fix [runbook] environments in fkrunbook.toml (fkrunbook init writes one)") from None
    except yaml.YAMLError:
        raise EnvironmentConfigError(f"environments file {str(path)!r} is not valid YAML; fix the syntax") from None
    envs = raw.get("environments") if isinstance(raw, dict) else None
    if not isinstance(envs, dict) or not envs:
        raise EnvironmentConfigError(f"environments file {str(path)!r} has no 'environments' mapping; add one")
    result = {}
    for name, item in envs.items():
        if not isinstance(item, dict) or item.get("kind") not in KINDS:
            raise EnvironmentConfigError(f"environment {name!r} in {str(path)!r} needs kind: one of {', '.join(KINDS)}")
        if "url" in item:
            raise EnvironmentConfigError(f"environment {name!r} in {str(path)!r} has a 'url': never write URLs in a "
                                         "file; name the variable that holds it with url_env", environment=name)
        base = path.parent
        try:
            retries = parse_retries(item["lock_retries"], f"environment {name!r}: lock_retries") \
                if item.get("lock_retries") is not None else None
        except SpecError as err:
            raise EnvironmentConfigError(f"{err} (in {str(path)!r})", environment=name) from None
        if item["kind"] == "embedded":
            if not item.get("data_dir"):
                raise EnvironmentConfigError(f"environment {name!r} in {str(path)!r} needs data_dir", environment=name)
            result[name] = Environment(
                name=name, kind="embedded", protected=bool(item.get("protected", False)),
                data_dir=(base / item["data_dir"]).resolve(), database=str(item.get("database", "fkrunbook")),
                bin_dir=(base / item["bin_dir"]).resolve() if item.get("bin_dir") else None, lock_retries=retries)
        else:
            if not item.get("url_env"):
                raise EnvironmentConfigError(f"environment {name!r} in {str(path)!r} needs url_env: the name of the "
                                             "environment variable holding its URL", environment=name)
            result[name] = Environment(name=name, kind="url", protected=bool(item.get("protected", False)),
                                       url_env=str(item["url_env"]), lock_retries=retries)
    return result


def get_environment(name: str, path: str | Path) -> Environment:
    envs = load_environments(path)
    if name not in envs:
        raise EnvironmentUnknownError(name, list(envs))
    return envs[name]
