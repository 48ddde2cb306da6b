"""The same change on the other PostgreSQL majors Supabase runs: 15 (Debian's) and 17 (npm's); the
rest of the suite runs on the embedded 18. See tests/majors.py; a major not installed is skipped
with the command that installs it (.ci/run installs both).
"""
import subprocess
import uuid

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
from fkrunbook.server import embedded_bin_dir

from .test_migration import MIGRATIONS



@pytest.fixture(params=["15", "17"])
def db_major(request, pg_servers, monkeypatch):
    srv = pg_servers(request.param)
    name = f"m_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(srv.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(srv.url(name)) as conn:
        load_baseline(conn)
        sample = generate_data(conn, rows=300)
    monkeypatch.setenv("FKRUNBOOK_MAJOR_URL", srv.url(name))
    db = Database(Environment(f"pg{request.param}", "url", url_env="FKRUNBOOK_MAJOR_URL"), srv.url(name))
    yield request.param, db, sample, srv.url(name)


def test_server_is_the_major_asked_for(db_major):
    major, db, _, _ = db_major
    assert db.server_version_num() // 10000 == int(major)


def test_whole_change_on_the_other_majors(db_major, spec, tmp_path):
    major, db, sample, url = db_major
    assert find_orphans(db, spec).fk_orphans == sample.orphans
    clean_up_orphans(db, spec, tmp_path, "r15", confirm=True)
    assert len(plan_migration(db, spec, MIGRATIONS).to_run) == 8  # the first index already exists
    apply_plan(db, spec, MIGRATIONS, find_orphans(db, spec).fk_orphans)
    assert verify_constraints(db, spec)["ok"].all()
    assert validate_cascade(db, spec).passed
    for migration in list_local(MIGRATIONS):  # idempotent on this major too
        result = subprocess.run([str(embedded_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
                                 "-f", str(migration.path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
