"""squawk on the statements that will really run, not only on the migration files.

squawk cannot see inside a DO block, so a DO-block migration always lints clean. The plan's
statements are linted as they run: each transaction's statement with ``--assume-in-transaction``,
the CONCURRENTLY ones without, and each preceded by the session settings the runbook sets.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from .errors import FkrunbookError
from .plan import MigrationPlan

COLUMNS = ["order", "statement", "rule", "level", "message"]


def squawk_path() -> str:
    found = shutil.which("squawk") or str(Path(sys.executable).parent / "squawk")
    if not Path(found).exists():
        raise FkrunbookError("squawk is not installed; pip install squawk-cli")
    return found


def lint_plan(plan: MigrationPlan, pg_version: str | None = None) -> pd.DataFrame:
    """squawk's findings for each statement of the plan that will run (empty when none)."""
    rows = []
    settings = "".join(f"{s};\n" for s in plan.settings)
    for order, step in enumerate(plan.steps, start=1):
        if step.action != "run":
            continue
        for finding in _squawk(settings + step.statement + ";\n", step.in_transaction, pg_version):
            rows.append((order, step.statement, finding["rule_name"], finding["level"], finding["message"]))
    return pd.DataFrame(rows, columns=COLUMNS)


def lint_files(plan: MigrationPlan, pg_version: str | None = None) -> pd.DataFrame:
    """squawk's findings for the pending migration files as written (blind inside DO blocks)."""
    rows = []
    outside = plan.runbook_files["index"].filename  # CREATE INDEX CONCURRENTLY: the CLI runs it on its own
    for migration in plan.pending:
        for finding in _squawk(migration.path.read_text(), migration.filename != outside, pg_version):
            rows.append((migration.filename, "", finding["rule_name"], finding["level"], finding["message"]))
    return pd.DataFrame(rows, columns=["file", *COLUMNS[1:]]).drop(columns=["statement"])


def _squawk(sql: str, in_transaction: bool, pg_version: str | None) -> list[dict]:
    args = [squawk_path(), "--reporter", "json", "--stdin-filepath", "plan.sql",
            "--assume-in-transaction" if in_transaction else "--no-assume-in-transaction"]
    if pg_version:
        args += ["--pg-version", pg_version]
    result = subprocess.run(args, input=sql, capture_output=True, text=True, timeout=60)
    if result.returncode not in (0, 1) or not result.stdout.strip():
        if result.returncode == 0:
            return []
        raise FkrunbookError(f"squawk failed: {(result.stderr or result.stdout).strip().splitlines()[:1]}")
    return json.loads(result.stdout)
