"""Predicted step durations on real tables of known size: they scale with the table, warn when a
step may outlast statement_timeout, and use the calibration `fkrunbook calibrate` measures."""
import json
from dataclasses import replace

import pytest

from fkrunbook.estimate import DEFAULT, SAFETY, Calibration, calibration_path, load_calibration, suggest_timeout
from fkrunbook.errors import ConfigError
from fkrunbook.migration import write_migrations
from fkrunbook.orphans import clean_up_orphans
from fkrunbook.plan import plan_migration
from fkrunbook.progress import format_seconds

from .conftest import project_config, schema_state, write_config
from .test_cli import invoke
from .test_migration import MIGRATIONS

TABLE = "impersonation_sessions_projection"
# Rates of a very slow server, so that the small tables of a test take seconds
ROWS_ONLY = Calibration(index_s_per_mrow=10_000.0, index_s_per_gb=0.0, validate_s_per_mrow=4_000.0,
                        validate_s_per_gb=0.0)
BYTES_ONLY = Calibration(index_s_per_mrow=0.0, index_s_per_gb=1e6, validate_s_per_mrow=0.0, validate_s_per_gb=5e5)


def grow(database, table: str, copies: int) -> int:
    """Add ``copies`` copies of every row of ``table`` (fresh ids, unique values made unique), ANALYZE
    it, and return its row count."""
    columns = database.sql(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
        "AND attnum > 0 AND NOT attisdropped AND attidentity = '' AND attgenerated = '' ORDER BY attnum", (table,))
    unique = {name for (name,) in database.sql(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = %s::regclass AND i.indisunique", (table,))}
    chosen = [f"gen_random_uuid()::text::{kind}" if name in unique else name for name, kind in columns]
    names = ", ".join(name for name, _ in columns)
    database.sql(f"INSERT INTO {table} ({names}) SELECT {', '.join(chosen)} FROM {table}, generate_series(1, {copies})")
    database.sql(f"ANALYZE {table}")
    return database.sql(f"SELECT count(*) FROM {table}")[0][0]


def _estimate(plan, kind: str, table: str) -> float:
    frame = plan.estimates.frame
    return float(frame[(frame["kind"] == kind) & (frame["table"] == table)]["estimate_s"].iloc[0])


def test_estimates_scale_with_the_tables_rows_and_bytes(database, spec):
    db = database.connect()
    database.sql(f"ANALYZE {TABLE}")
    small_rows = database.sql(f"SELECT count(*) FROM {TABLE}")[0][0]
    small = plan_migration(db, spec, MIGRATIONS, calibration=ROWS_ONLY)
    big_rows = grow(database, TABLE, 49)
    big = plan_migration(db, spec, MIGRATIONS, calibration=ROWS_ONLY)
    assert big_rows == 50 * small_rows
    # seconds = rate x million rows from pg_class.reltuples, exact after ANALYZE on a table this small
    assert _estimate(small, "validate", TABLE) == pytest.approx(4000 * small_rows / 1e6, rel=0.01)
    assert _estimate(big, "validate", TABLE) == pytest.approx(4000 * big_rows / 1e6, rel=0.01)
    heap = database.sql(f"SELECT pg_relation_size('{TABLE}')")[0][0]
    by_bytes = plan_migration(db, spec, MIGRATIONS, calibration=BYTES_ONLY)
    assert _estimate(by_bytes, "validate", TABLE) == pytest.approx(5e5 * heap / 1024 ** 3, rel=0.01)
    assert _estimate(big, "add", TABLE) == 0  # NOT VALID: a catalog change
    shown = big.statements.set_index("statement")["estimated"]
    assert shown[next(s.statement for s in big.to_run if s.kind == "validate" and s.fk.table == TABLE)].startswith(
        f"~{format_seconds(_estimate(big, 'validate', TABLE))} ({big_rows:,} rows, ")
    assert shown[next(s.statement for s in big.to_run if s.kind == "add")] == "instant"
    assert plan_migration(db, spec, MIGRATIONS).estimates.calibration == DEFAULT  # no calibration file here
    assert "Estimated time: ~" in big.summary().data and "built-in default rates" in big.summary().data


def test_a_step_that_may_outlast_statement_timeout_is_warned_with_a_suggested_value(database, spec, tmp_path):
    tight = replace(spec, migration=replace(spec.migration, statement_timeout="1min"))
    migrations = tmp_path / "migrations"
    write_migrations(tight, migrations)
    rows = grow(database, TABLE, 99)  # about 40,000 rows: VALIDATE ~160 s at these rates, up to 3x that
    db = database.connect()
    plan = plan_migration(db, tight, migrations, calibration=ROWS_ONLY)
    validate = next(s for s in plan.to_run if s.kind == "validate" and s.fk.table == TABLE)
    assert 60 < 4000 * rows / 1e6 * SAFETY < 15 * 60
    (warning,) = [w for w in plan.estimates.warnings if TABLE in w and "VALIDATE" in w]
    assert warning.startswith(f"`{validate.statement[:87]}")
    assert "longer than statement_timeout 1min" in warning and "set migration.statement_timeout to 15min" in warning
    assert "**Warning:**" in plan.summary().data
    results = plan.results()
    assert results["suggested_statement_timeout"] == "15min" and warning in results["statement_timeout_warnings"]
    plenty = plan_migration(db, spec, MIGRATIONS, calibration=ROWS_ONLY)
    assert plenty.estimates.warnings == []  # the spec's 15min is plenty
    assert suggest_timeout(3 * 3600) == "180min" and suggest_timeout(16 * 60 + 1) == "20min"


def test_calibrate_writes_the_calibration_and_the_preview_uses_it(project_copy, database, spec):
    write_config(project_config(project_copy, database.environments), project_copy)
    result = invoke("calibrate", "--env", "test", "--rows", "20000", cwd=project_copy)
    assert result.exit_code == 0, result.output
    saved = json.loads(calibration_path(project_copy).read_text())
    assert saved["rows"] == 20000 and saved["environment"] == "test" and saved["index_s_per_mrow"] > 0
    assert "saved to .fkrunbook/calibration.json" in result.output
    assert database.sql("SELECT count(*) FROM pg_namespace WHERE nspname = 'fkrunbook_calibration'") == [(0,)]
    measured = load_calibration(project_copy)
    assert measured.measured and measured.validate_s_per_gb == saved["validate_s_per_gb"]

    import contextlib

    with contextlib.chdir(project_copy):  # found as every command finds fkrunbook.toml
        plan = plan_migration(database.connect(), spec, project_copy / "supabase" / "migrations")
    assert plan.estimates.calibration == measured
    assert "measured on test (PostgreSQL " in plan.summary().data
    assert plan.results()["estimate_calibration"] == "measured"

    calibration_path(project_copy).write_text("{not json")
    with contextlib.chdir(project_copy), pytest.raises(ConfigError, match="calibration file .* is not readable; "
                                                                          "delete it"):
        plan_migration(database.connect(), spec, project_copy / "supabase" / "migrations")


@pytest.mark.parametrize("args, message", [
    (["--env", "guarded"], "never runs on the protected environment 'guarded'"),
    (["--env", "test", "--rows", "5"], "--rows 5 is too few to measure a rate; use at least 10000"),
], ids=["protected", "too-few-rows"])
def test_calibrate_refuses_bad_input_in_one_line_and_changes_nothing(project_copy, database, args, message):
    write_config(project_config(project_copy, database.environments), project_copy)
    before = schema_state(database.url)
    result = invoke("calibrate", *args, cwd=project_copy)
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not calibration_path(project_copy).exists() and schema_state(database.url) == before


def test_progress_of_an_index_build_is_logged_and_kept_in_the_results(database, spec, tmp_path, caplog):
    import threading

    import psycopg

    from fkrunbook.executor import apply_plan
    from fkrunbook.spec import LockRetries

    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    table = "cross_tenant_access_grants_projection"
    rows = grow(database, table, 250_000 // database.sql(f"SELECT count(*) FROM {table}")[0][0])
    assert rows > 200_000  # a build long enough to be sampled a few times
    writer = psycopg.connect(database.url)  # an open write transaction: the build waits for it first
    writer.execute(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")
    threading.Timer(0.7, writer.close).start()  # ends within the 2 s lock_timeout below, which bounds that wait too
    with caplog.at_level("INFO", logger="fkrunbook"):
        result = apply_plan(database.connect(), spec, MIGRATIONS, {}, retries=LockRetries(((2000, 100),)),
                            progress_every=0.2)
    progress = result.progress
    builds = progress[progress["statement"].str.startswith("CREATE INDEX CONCURRENTLY")]
    assert len(builds) >= 3
    waiting = builds[builds["phase"].str.startswith("waiting for writers")]
    assert len(waiting) and (waiting["unit"] == "transactions").all() and (waiting["total"] >= 1).all()
    assert (builds["table_bytes"] > 10_000_000).all()
    assert all(b["elapsed_s"].is_monotonic_increasing for _, b in builds.groupby("statement"))
    assert set(builds["phase"]) <= {"initializing", "waiting for writers before build",
                                    "building index: scanning table",
                                    "building index: sorting live tuples", "building index: loading tuples in tree",
                                    "waiting for writers before validation", "index validation: scanning index",
                                    "index validation: sorting tuples", "index validation: scanning table",
                                    "waiting for old snapshots", "waiting for readers before marking dead",
                                    "waiting for readers before dropping"}
    assert any(b.startswith("building index") for b in builds["phase"])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress of CREATE INDEX")]
    assert len(lines) == len(builds) and "transactions" in lines[0] and "s elapsed (estimated ~" in lines[0]
    ran = result.steps[result.steps["action"] == "run"]
    assert ran["estimated_s"].notna().all()  # the preview's prediction beside each step's measured seconds
    kept = result.results()["progress"]
    assert len(kept) == len(progress) and {"phase", "done", "total", "elapsed_s"} <= set(kept[0])


def test_progress_of_a_validate_shows_its_wait_and_the_tables_size(database, spec, tmp_path):
    import threading

    from fkrunbook.executor import apply_plan
    from fkrunbook.history import list_local

    from .test_migration import psql

    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    for migration in list_local(MIGRATIONS)[:2]:  # indexes and keys NOT VALID in place: VALIDATE is next
        assert psql(database.url, migration.path).returncode == 0
    import psycopg

    holder = psycopg.connect(database.url)  # VALIDATE waits for this lock (within one lock_timeout)
    holder.execute(f"LOCK TABLE {TABLE} IN SHARE UPDATE EXCLUSIVE MODE")
    threading.Timer(0.8, holder.close).start()
    result = apply_plan(database.connect(), spec, MIGRATIONS, {}, progress_every=0.2)
    samples = result.progress[result.progress["statement"].str.contains(f'"{TABLE}" VALIDATE')]
    assert len(samples) >= 2 and set(samples["phase"]) == {"validating"}
    assert samples["waiting_for"].iloc[0] == "Lock:relation"
    assert (samples["table_bytes"] == database.sql(f"SELECT pg_total_relation_size('{TABLE}')")[0][0]).all()
