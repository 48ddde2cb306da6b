"""How long each apply step will take, predicted from the table's size and a local calibration.

The two steps that scan a table are the covering index build (``CREATE INDEX CONCURRENTLY``: a scan
and a sort, twice the scan for CONCURRENTLY) and ``VALIDATE CONSTRAINT`` (an anti-join of the child
with the parent); ``ADD ... NOT VALID`` and dropping an INVALID leftover are catalog changes,
about instant once their lock is granted. A step's time is predicted from the child table's
catalog statistics (``pg_class.reltuples`` rows, ``pg_relation_size`` bytes of heap) with two rates
per step, seconds per million rows and seconds per GB of heap, whichever predicts longer (a narrow
table is bound by its rows, a wide one by its bytes).

The rates come from a calibration measured on the local environment (``fkrunbook calibrate --env
local``: a scratch table of known size, built, indexed and validated, then dropped), kept in the
project's git-ignored ``.fkrunbook/calibration.json``; without one, built-in rates several times
slower than a 2-core laptop measures are used, labelled as such. Production runs on other
hardware under load, so a step "may take" up to :data:`SAFETY` times its estimate: when that is
longer than the spec's ``migration.statement_timeout``, the step would be cancelled half-way, and
the preview warns and suggests a value.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from .errors import ConfigError, EnvironmentConfigError
from .progress import format_bytes, format_seconds
from .spec import Spec, duration_seconds
from .sqltext import qualified

CALIBRATION_FILE = Path(".fkrunbook") / "calibration.json"
SAFETY = 3            # a step "may take" up to this many times its estimate (other hardware, load)
CALIBRATION_ROWS = 1_000_000
GB = 1024 ** 3
INSTANT = {"add": "about instant once its lock is granted (a catalog change)",
           "drop_index": "about instant; waits for transactions still using the index"}


@dataclass(frozen=True)
class Calibration:
    """Seconds per million rows and per GB of heap for an index build and for a VALIDATE."""
    index_s_per_mrow: float
    index_s_per_gb: float
    validate_s_per_mrow: float
    validate_s_per_gb: float
    measured_at: str | None = None    # None: the built-in default
    environment: str | None = None
    server_version: str | None = None
    rows: int | None = None

    @property
    def measured(self) -> bool:
        return self.measured_at is not None

    @property
    def label(self) -> str:
        if not self.measured:
            return ("the built-in default rates (conservative; measure this machine's with `fkrunbook calibrate "
                    "--env local`)")
        return (f"the calibration measured on {self.environment} (PostgreSQL {self.server_version}, "
                f"{self.rows:,} rows) at {self.measured_at}")

    def seconds(self, kind: str, rows: float, heap_bytes: int) -> float:
        """The predicted time of one step of ``kind`` on a table of ``rows`` rows and ``heap_bytes``."""
        if kind not in ("index", "validate"):
            return 0.0
        per_mrow, per_gb = ((self.index_s_per_mrow, self.index_s_per_gb) if kind == "index"
                            else (self.validate_s_per_mrow, self.validate_s_per_gb))
        return max(per_mrow * max(rows, 0) / 1e6, per_gb * heap_bytes / GB)


# Several times slower than `calibrate` measured on 2 shared cores with PostgreSQL 18 at 1M rows of
# ~100 bytes (index 0.79 s per million rows, 7.8 s per GB; validate 0.12 s and 1.2 s): conservative.
DEFAULT = Calibration(index_s_per_mrow=5.0, index_s_per_gb=40.0, validate_s_per_mrow=2.0, validate_s_per_gb=15.0)


def calibration_path(root: str | Path) -> Path:
    """Where a project keeps its calibration: ``<root>/.fkrunbook/calibration.json`` (git-ignored)."""
    return Path(root) / CALIBRATION_FILE


def load_calibration(root: str | Path | None) -> Calibration:
    """The project's measured calibration, or :data:`DEFAULT` when it has none."""
    if root is None:
        return DEFAULT
    path = calibration_path(root)
    if not path.is_file():
        return DEFAULT
    try:
        raw = json.loads(path.read_text())
        return Calibration(**{k: raw[k] for k in Calibration.__dataclass_fields__ if k in raw})
    except (ValueError, TypeError, KeyError):
        raise ConfigError(f"the calibration file {path} is not readable; delete it (the built-in rates are used) or "
                          "measure again with `fkrunbook calibrate --env local`", path=str(path)) from None


def save_calibration(root: str | Path, calibration: Calibration) -> Path:
    path = calibration_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(calibration), indent=2) + "\n")
    return path


def project_calibration() -> Calibration:
    """The calibration of the project found from the current folder up (as every command finds
    ``fkrunbook.toml``; a notebook runs in the project or in a folder below it), else the default."""
    from .config import find_config

    try:
        return load_calibration(find_config().root)
    except ConfigError as err:
        if err.path and Path(err.path).name == CALIBRATION_FILE.name:
            raise
        return DEFAULT


def check_calibration(env, rows: int) -> None:
    """Refuse, before anything connects, a calibration on a protected environment or of too few rows."""
    if env.protected:
        raise EnvironmentConfigError(f"calibrate writes a scratch table of {rows} rows and never runs on the protected "
                                     f"environment {env.name!r}; run `fkrunbook calibrate --env local`",
                                     environment=env.name)
    if rows < 10_000:
        raise EnvironmentConfigError(f"--rows {rows} is too few to measure a rate; use at least 10000",
                                     environment=env.name)


def calibrate(db, rows: int = CALIBRATION_ROWS) -> Calibration:
    """Measure this server's rates on a scratch table of ``rows`` rows (a uuid key column among a
    few others, about 100 bytes a row) in a schema of its own, dropped afterwards: the time of
    ``CREATE INDEX CONCURRENTLY`` on the key column and of ``VALIDATE CONSTRAINT`` of a key to a
    parent of 1,000 rows, under the settings apply uses. Meant for the local environment (a staging
    server on production-like hardware measures closer to production); refused on a protected one."""
    env = db.env
    check_calibration(env, rows)
    schema = "fkrunbook_calibration"
    with db.connect_raw(autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(f"CREATE TABLE {schema}.parent (id uuid PRIMARY KEY)")
            conn.execute(f"INSERT INTO {schema}.parent SELECT gen_random_uuid() FROM generate_series(1, 1000)")
            conn.execute(f"CREATE TABLE {schema}.child (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                         "org_id uuid, status text, created_at timestamptz NOT NULL DEFAULT now(), note text)")
            conn.execute(f"INSERT INTO {schema}.child (org_id, status, note) SELECT p.ids[1 + i %% 1000], "
                         "(ARRAY['active','ended','expired'])[1 + i %% 3], md5(i::text) "
                         f"FROM generate_series(1, %s) i, (SELECT array_agg(id) AS ids FROM {schema}.parent) p",
                         (rows,))
            conn.execute(f"VACUUM ANALYZE {schema}.child")
            conn.execute("SET max_parallel_maintenance_workers = 0")  # as apply runs it by default
            heap = conn.execute(f"SELECT pg_relation_size('{schema}.child')").fetchone()[0]
            started = time.monotonic()
            conn.execute(f"CREATE INDEX CONCURRENTLY child_org_id ON {schema}.child (org_id)")
            index_s = time.monotonic() - started
            conn.execute(f"ALTER TABLE {schema}.child ADD CONSTRAINT child_org_fk FOREIGN KEY (org_id) "
                         f"REFERENCES {schema}.parent (id) NOT VALID")
            started = time.monotonic()
            conn.execute(f"ALTER TABLE {schema}.child VALIDATE CONSTRAINT child_org_fk")
            validate_s = time.monotonic() - started
            version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        finally:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    mrows, gb = rows / 1e6, heap / GB
    return Calibration(index_s_per_mrow=round(index_s / mrows, 3), index_s_per_gb=round(index_s / gb, 3),
                       validate_s_per_mrow=round(validate_s / mrows, 3), validate_s_per_gb=round(validate_s / gb, 3),
                       measured_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       environment=env.name, server_version=version, rows=rows)


# -- the estimates of a plan ----------------------------------------------------------------------
@dataclass
class Estimates:
    """Every step's predicted time, and the steps that may outlast ``statement_timeout``."""
    frame: pd.DataFrame        # per step: statement, kind, table, rows, table_bytes, estimate_s, may_take_s
    calibration: Calibration
    statement_timeout: str
    warnings: list[str] = field(default_factory=list)
    suggested_timeout: str | None = None

    @property
    def total_s(self) -> float:
        return float(self.frame["estimate_s"].sum()) if len(self.frame) else 0.0

    def for_statement(self, statement: str) -> float | None:
        found = self.frame[self.frame["statement"] == statement]
        return float(found["estimate_s"].iloc[0]) if len(found) else None

    def shown(self, statement: str) -> str:
        """The statements table's ``estimated`` cell: ``~40 s (12,000,000 rows, 1.2 GB)``."""
        found = self.frame[self.frame["statement"] == statement]
        if not len(found):
            return ""
        row = found.iloc[0]
        if row["kind"] in INSTANT:
            return "instant"
        rows = "rows unknown (never analyzed)" if row["rows"] < 0 else f"{int(row['rows']):,} rows"
        return f"~{format_seconds(row['estimate_s'])} ({rows}, {format_bytes(int(row['table_bytes']))})"

    def summary(self) -> str:
        """A paragraph for the preview's summary: the total, the longest step, the timeout warnings."""
        running = self.frame[self.frame["estimate_s"] > 0]
        text = f"Estimated time: ~{format_seconds(self.total_s)} in all"
        if len(running):
            longest = running.loc[running["estimate_s"].idxmax()]
            text += (f"; longest step ~{format_seconds(longest['estimate_s'])} ({longest['kind']} on "
                     f"{longest['table']})")
        text += f", from {self.calibration.label}."
        for warning in self.warnings:
            text += f"\n\n**Warning:** {warning}"
        return text

    def results(self) -> dict:
        return {"estimated_s": round(self.total_s, 1), "estimate_calibration": "measured" if self.calibration.measured
                else "built-in default", "statement_timeout_warnings": self.warnings,
                "suggested_statement_timeout": self.suggested_timeout}


ESTIMATE_COLUMNS = ["statement", "kind", "table", "rows", "table_bytes", "estimate_s", "may_take_s"]


def estimate_steps(conn, spec: Spec, steps: list, calibration: Calibration) -> Estimates:
    """Predict each step to run (``steps``: :class:`fkrunbook.plan.Step`) from the live catalog
    statistics of its table, read on ``conn`` (an open SQLAlchemy connection)."""
    from sqlalchemy import text

    stats = {}
    for table in dict.fromkeys(s.fk.table for s in steps):
        stats[table] = conn.execute(text(
            "SELECT c.reltuples, pg_relation_size(c.oid), pg_total_relation_size(c.oid) FROM pg_class c "
            "WHERE c.oid = CAST(:name AS regclass)"), {"name": qualified(spec.schema, table)}).fetchone()
    timeout = duration_seconds(spec.migration.statement_timeout)
    rows, warnings, longest = [], [], 0.0
    for step in steps:
        reltuples, heap, total = stats[step.fk.table]
        seconds = calibration.seconds(step.kind, float(reltuples), int(heap))
        may_take = seconds * SAFETY
        rows.append((step.statement, step.kind, step.fk.table, float(reltuples), int(total), round(seconds, 1),
                     round(may_take, 1)))
        if timeout and may_take > timeout:
            longest = max(longest, may_take)
            warnings.append(f"`{_short(step.statement)}` may take up to ~{format_seconds(may_take)} ({SAFETY} × its "
                            f"estimate of ~{format_seconds(seconds)}), longer than statement_timeout "
                            f"{spec.migration.statement_timeout}: it would be cancelled part-way; set "
                            f"migration.statement_timeout to {suggest_timeout(may_take)} in the spec")
    return Estimates(pd.DataFrame(rows, columns=ESTIMATE_COLUMNS), calibration, spec.migration.statement_timeout,
                     warnings, suggest_timeout(longest) if warnings else None)


def suggest_timeout(seconds: float) -> str:
    """A ``statement_timeout`` at least ``seconds``, rounded up: whole minutes, in fives from 15."""
    minutes = max(15, 5 * math.ceil(seconds / 300))
    return f"{minutes}min"


def _short(statement: str) -> str:
    return statement if len(statement) <= 90 else statement[:87] + "..."
