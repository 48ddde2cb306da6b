"""What a phase notebook starts with: the environment, the database, the checked spec, the run folder.

A notebook's first code cell is ``ctx = phase.start("orphan_check", ...)``; every later cell is one
library call on ``ctx``. The last cell is ``ctx.record(...)``: the phase's key results, written
next to the executed notebook for the run's manifest.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from .catalog import check_spec
from .database import Database, connect
from .environment import get_environment
from .spec import Spec, load_spec

# Phase name -> notebook, in the order a full run takes them.
PHASES = {
    "orphan_check": "01_orphan_check.ipynb",
    "orphan_cleanup": "02_orphan_cleanup.ipynb",
    "migration_preview": "03_migration_preview.ipynb",
    "apply": "04_apply.ipynb",
    "cascade_validation": "05_cascade_validation.ipynb",
    "docs_update": "06_docs_update.ipynb",
}


# Phases that only look: their every database transaction is READ ONLY.
READ_ONLY_PHASES = frozenset({"orphan_check", "migration_preview", "docs_update"})


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class PhaseContext:
    phase: str
    db: Database
    spec: Spec
    run_id: str
    run_dir: Path
    migrations_dir: Path
    spec_check: pd.DataFrame
    results: dict = field(default_factory=dict)

    @property
    def overview(self) -> pd.DataFrame:
        frame = self.db.describe()
        extra = pd.DataFrame([
            ("phase", self.phase), ("run id", self.run_id), ("spec", Path(self.spec.path).name),
            ("spec sha256", self.spec.sha256[:16]),
            ("transactions", "READ ONLY" if self.db.read_only_session else "read-write"),
        ], columns=["property", "value"])
        return pd.concat([frame, extra.set_index("property")])

    @property
    def pg_version(self) -> str:
        """The server's major version, e.g. '15', for squawk."""
        return str(self.db.server_version_num() // 10000)

    def record(self, **results) -> pd.DataFrame:
        """Write this phase's key results to ``<run_dir>/<phase>.results.json`` and show them."""
        self.results.update(results)
        path = self.run_dir / f"{self.phase}.results.json"
        path.write_text(json.dumps(self.results, indent=2, sort_keys=True, default=str) + "\n")
        return pd.DataFrame([(k, json.dumps(v, default=str)) for k, v in self.results.items()],
                            columns=["result", "value"]).set_index("result")


def start(phase: str, env: str, spec_path: str, environments_path: str, run_id: str = "",
          audit_dir: str = "../audit", migrations_dir: str = "../supabase/migrations") -> PhaseContext:
    """Load and check everything a phase needs, before it runs anything.

    Fails with one clear error for an unknown environment, an unset URL variable, an unreachable
    database, a missing or malformed spec, or a spec naming what the database lacks.
    """
    spec = load_spec(spec_path)
    environment = get_environment(env, environments_path)
    db = connect(environment, read_only=phase in READ_ONLY_PHASES)
    with db.read_only() as conn:
        spec_check = check_spec(conn, spec, environment.name)
    run_id = run_id or new_run_id()
    run_dir = Path(audit_dir) / environment.name / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    _connect_sql_magic(db)
    _show_progress_logs()
    return PhaseContext(phase, db, spec, run_id, run_dir, Path(migrations_dir), spec_check)


def _show_progress_logs() -> None:
    """The library's progress lines (each lock attempt, each file recorded) go to the cell's stderr."""
    logger = logging.getLogger("fkrunbook")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _connect_sql_magic(db: Database) -> None:
    """Give the notebook's ``%sql`` a READ ONLY connection to the same database, without the URL
    ever being written in the notebook or shown by ipython-sql (which only sees a creator)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return
    shell = get_ipython()
    if shell is None:
        return
    shell.run_line_magic("load_ext", "sql")
    shell.user_ns["_fkrunbook_sql_creator"] = lambda: db.connect_raw(read_only=True)
    shell.run_line_magic("config", "SqlMagic.displaycon = False")
    shell.run_line_magic("config", "SqlMagic.feedback = False")
    shell.run_line_magic("sql", f"postgresql+psycopg:///{db.env.name} --creator _fkrunbook_sql_creator")


def show(frames: dict[str, pd.DataFrame], empty: str = "none") -> None:
    """Display several tables, each under its own heading."""
    for title, frame in frames.items():
        display(Markdown(f"**{title}**: {len(frame)} row(s)"))
        display(frame if len(frame) else Markdown(f"_{empty}_"))
