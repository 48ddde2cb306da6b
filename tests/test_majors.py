"""The same change on a second PostgreSQL major: Debian's PostgreSQL 15 (Supabase projects run 15 or 17).

Skipped, with the reason, only where Debian's postgresql-15 is not installed (.ci/run installs it).
"""
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from fkrunbook.cascade import validate_cascade
from fkrunbook.database import Database
from fkrunbook.environment import Environment
from fkrunbook.history import list_local
from fkrunbook.executor import apply_plan
from fkrunbook.plan import plan_migration
from fkrunbook.verify import verify_constraints
from fkrunbook.orphans import clean_up_orphans, find_orphans
from fkrunbook.sample import generate_data, load_baseline
from fkrunbook.server import embedded_bin_dir, ensure_server, stop_server

from .test_migration import MIGRATIONS

PG15 = Path("/usr/lib/postgresql/15/bin")
pytestmark = pytest.mark.skipif(not (PG15 / "initdb").exists(),
                                reason="Debian's postgresql-15 is not installed (apt-get install postgresql-15)")


@pytest.fixture(scope="module")
def pg15(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("pg15") / "data"
    try:
        yield ensure_server(data_dir, PG15)
    finally:
        stop_server(data_dir, PG15)


@pytest.fixture
def db15(pg15, monkeypatch):
    name = f"m_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg15.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(pg15.url(name)) as conn:
        load_baseline(conn)
        sample = generate_data(conn, rows=300)
    monkeypatch.setenv("FKRUNBOOK_PG15_URL", pg15.url(name))
    db = Database(Environment("pg15", "url", url_env="FKRUNBOOK_PG15_URL"), pg15.url(name))
    yield db, sample, pg15.url(name)


def test_server_is_postgresql_15(db15):
    db, _, _ = db15
    assert db.server_version_num() // 10000 == 15


def test_whole_change_on_postgresql_15(db15, spec, tmp_path):
    db, sample, url = db15
    assert find_orphans(db, spec).fk_orphans == sample.orphans
    clean_up_orphans(db, spec, tmp_path, "r15", confirm=True)
    assert len(plan_migration(db, spec, MIGRATIONS).to_run) == 8  # the first index already exists
    apply_plan(db, spec, MIGRATIONS, find_orphans(db, spec).fk_orphans)
    assert verify_constraints(db, spec)["ok"].all()
    assert validate_cascade(db, spec).passed
    for migration in list_local(MIGRATIONS):  # idempotent on 15 too
        result = subprocess.run([str(embedded_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
                                 "-f", str(migration.path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
