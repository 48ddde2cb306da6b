"""Real PostgreSQL for every test: one embedded server per session, a fresh database per test
(cloned from a template holding the baseline schema and sample data)."""
from __future__ import annotations

import contextlib
import shutil
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql

from fkrunbook import Spec, connect, load_spec
from fkrunbook.config import Config, load_config
from fkrunbook.environment import get_environment
from fkrunbook.sample import generate_data, load_baseline
from fkrunbook.server import LocalServer, ensure_server, stop_server
from fkrunbook.spec import parse_spec

from .majors import bin_dir, missing

PROJECT = Path(__file__).resolve().parents[1]
SPEC = PROJECT / "runbooks" / "add_missing_org_fk_constraints.yaml"
TEMPLATE = "fkrunbook_template"
ROWS = 400

pytest_plugins = ["tests.leftovers"]  # the run fails if a server or kernel started by a test is still running


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> LocalServer:
    data_dir = tmp_path_factory.mktemp("pg") / "embedded"
    try:
        srv = ensure_server(data_dir)
        with psycopg.connect(srv.url(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        with psycopg.connect(srv.url(TEMPLATE)) as conn:
            load_baseline(conn)
            srv_data = generate_data(conn, rows=ROWS)
        srv.__dict__["sample"] = srv_data  # frozen dataclass: attach the expected counts for tests
        yield srv
    finally:  # stopped even when the setup above fails half-way
        stop_server(data_dir)


def create_database(srv: LocalServer, prefix: str = "t") -> str:
    """A new, empty database on ``srv``; its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(srv.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(srv: LocalServer, name: str) -> None:
    with psycopg.connect(srv.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def made_database(srv: LocalServer, make=create_database):
    """The URL of a database ``make(srv)`` creates (and names), dropped afterwards."""
    name = make(srv)
    try:
        yield srv.url(name)
    finally:
        drop_database(srv, name)


@pytest.fixture(scope="module")
def pg_servers(request, tmp_path_factory):
    """``pg_servers(major)``: a running server of that major (see tests/majors.py): the session's
    embedded server for 18, else one started on first use and stopped with the module. A major
    whose binaries are not installed skips the test, naming the install command."""
    started: dict[str, tuple[Path, LocalServer]] = {}

    def get(major: str) -> LocalServer:
        if major == "18":
            return request.getfixturevalue("server")
        reason = missing(major)
        if reason:
            pytest.skip(reason)
        if major not in started:
            data_dir = tmp_path_factory.mktemp(f"pg{major}") / "data"
            started[major] = (data_dir, None)
            started[major] = (data_dir, ensure_server(data_dir, bin_dir(major)))
        return started[major][1]

    try:
        yield get
    finally:  # stopped even when a start failed half-way
        for major, (data_dir, _) in started.items():
            stop_server(data_dir, bin_dir(major))


@dataclass
class TestDatabase:
    """A fresh database and an environments file that reaches it through an environment variable."""
    name: str
    url: str
    environments: Path
    env: str = "test"

    def connect(self, env: str | None = None):
        return connect(get_environment(env or self.env, self.environments))

    def sql(self, statement: str, params=None):
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else None


ENVIRONMENTS_YAML = """environments:
  test:
    kind: url
    url_env: FKRUNBOOK_TEST_URL
  guarded:
    kind: url
    url_env: FKRUNBOOK_TEST_URL
    protected: true
  unset:
    kind: url
    url_env: FKRUNBOOK_NEVER_SET_URL
"""


@pytest.fixture
def database(server, tmp_path, monkeypatch) -> TestDatabase:
    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(TEMPLATE)))
    envs = tmp_path / "environments.yaml"
    envs.write_text(ENVIRONMENTS_YAML)
    url = server.url(name)
    monkeypatch.setenv("FKRUNBOOK_TEST_URL", url)
    monkeypatch.delenv("FKRUNBOOK_NEVER_SET_URL", raising=False)
    yield TestDatabase(name, url, envs)
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def spec():
    return load_spec(SPEC)


def team_spec(folder: Path) -> Spec:
    """The project's spec as a team would write it: no migration.version and no `index:` names
    (written to ``folder``, under the same file name)."""
    raw = yaml.safe_load(SPEC.read_text())
    raw["migration"].pop("version")
    for fk in raw["foreign_keys"]:
        fk.pop("index", None)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC.name).write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_spec(folder / SPEC.name)


# A tenant table in another schema than its children (a basejump project's basejump.accounts), and a
# decoy public.accounts holding the ids the orphans carry: a query that looked for the parent in the
# children's schema would find them there and see no orphan.
CROSS_SCHEMA = """
CREATE SCHEMA basejump;
CREATE TABLE basejump.accounts (id uuid PRIMARY KEY, slug text UNIQUE);
CREATE TABLE public.accounts (id uuid PRIMARY KEY, slug text);
INSERT INTO basejump.accounts VALUES ('00000000-0000-0000-0000-00000000000a', 'acme'),
                                     ('00000000-0000-0000-0000-00000000000b', 'globex');
INSERT INTO public.accounts VALUES ('00000000-0000-0000-0000-0000000000d1', 'gone-1'),
                                   ('00000000-0000-0000-0000-0000000000d2', 'gone-2');
CREATE TABLE public.projects (id serial PRIMARY KEY, account_id uuid NOT NULL, name text NOT NULL);
INSERT INTO public.projects (account_id, name) VALUES
    ('00000000-0000-0000-0000-00000000000a', 'a1'), ('00000000-0000-0000-0000-00000000000a', 'a2'),
    ('00000000-0000-0000-0000-00000000000b', 'b1'),
    ('00000000-0000-0000-0000-0000000000d1', 'orphan 1'), ('00000000-0000-0000-0000-0000000000d2', 'orphan 2');
CREATE TABLE public.activity_log (id serial PRIMARY KEY, account_id uuid NOT NULL, subject_type text NOT NULL,
    subject_id uuid);
INSERT INTO public.activity_log (account_id, subject_type, subject_id) VALUES
    ('00000000-0000-0000-0000-00000000000a', 'account', '00000000-0000-0000-0000-00000000000a'),
    ('00000000-0000-0000-0000-00000000000a', 'account', '00000000-0000-0000-0000-0000000000d1'),
    ('00000000-0000-0000-0000-00000000000b', 'project', '00000000-0000-0000-0000-0000000000d2');
"""


def cross_schema_spec(**parent) -> Spec:
    """A spec whose parent is basejump.accounts, its children public.projects and public.activity_log
    (``parent`` overrides the parent's fields)."""
    return parse_spec({
        "name": "add_missing_account_fk_constraints", "schema": "public",
        "parent": {"schema": "basejump", "table": "accounts", "column": "id", **parent},
        "migration": {"version": "20260301120000"},
        "foreign_keys": [{"table": "projects", "column": "account_id", "on_delete": "cascade",
                          "classification": "oversight", "reason": "A project belongs to one account."}],
        "intentional_exceptions": [{"table": "activity_log", "column": "subject_id",
                                    "discriminator": {"column": "subject_type", "value": "account"},
                                    "reason": "Polymorphic: subject_type says what subject_id names."}],
    }, "cross_schema.yaml")


@pytest.fixture
def sample(server):
    return server.sample


def copy_project(dest: Path) -> Path:
    """A copy of the project's runbook files (fkrunbook.toml, runbooks, migrations) at ``dest``."""
    for part in ("runbooks", "supabase"):
        shutil.copytree(PROJECT / part, dest / part, ignore=shutil.ignore_patterns(".temp"))
    shutil.copy(PROJECT / "fkrunbook.toml", dest / "fkrunbook.toml")
    return dest


def project_config(project: Path, environments: Path | None = None, evidence: Path | None = None) -> Config:
    """The copied project's configuration, reaching the test database through ``environments``."""
    config = load_config(project / "fkrunbook.toml")
    return replace(config, environments=environments or config.environments, evidence=evidence or config.evidence)


def write_config(config: Config, folder: Path) -> Path:
    """``config`` as a fkrunbook.toml in ``folder`` (for code that finds the project by its file)."""
    path = folder / "fkrunbook.toml"
    path.write_text(config.to_toml(folder))
    return path


@pytest.fixture
def project_copy(tmp_path) -> Path:
    return copy_project(tmp_path / "project")


def schema_state(db_url: str) -> dict:
    """Everything a failed command must leave untouched: constraints, indexes, row counts, history."""
    with psycopg.connect(db_url) as conn:
        fks = conn.execute("SELECT conrelid::regclass::text, conname, convalidated FROM pg_constraint "
                           "WHERE contype = 'f' ORDER BY 1, 2").fetchall()
        counts = {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                  for t in ("organizations_projection", "impersonation_sessions_projection",
                            "cross_tenant_access_grants_projection", "domain_events", "workflow_queue_projection")}
        indexes = conn.execute("SELECT indexrelid::regclass::text, indisvalid FROM pg_index i JOIN pg_class c "
                               "ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE n.nspname = 'public' ORDER BY 1").fetchall()
        history = conn.execute("SELECT to_regclass('supabase_migrations.schema_migrations') IS NOT NULL").fetchone()[0]
        versions = conn.execute("SELECT version FROM supabase_migrations.schema_migrations ORDER BY 1").fetchall() \
            if history else []
    return {"fks": fks, "indexes": indexes, "counts": counts, "versions": versions}


# The files that take longest start first, so the parallel workers (xdist, whole files per worker)
# do not end with one of them alone on a long file.
SLOW_FIRST = ("test_install.py", "test_walkthrough.py", "test_soak.py", "test_team_repository.py",
              "test_notebooks.py", "test_supabase_cli.py", "test_kill.py", "test_failures.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
