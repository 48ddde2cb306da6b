"""The apply plan: the exact statements the runbook would run against this database now.

Built from the spec and the live catalog, step by step in the order of the migration files:
covering indexes (CONCURRENTLY, outside any transaction; an INVALID leftover of a failed build is
dropped first), then each key NOT VALID, then each VALIDATE in its own transaction. Steps already
in place are listed as skipped. The plan hash (sha256 over the statements to run, the session
settings, the lock-retry schedule and the environment's identity) is shown by the preview and
recomputed by apply, so the evidence shows that what was previewed is what ran. The schedule is in
the hash because it decides how long writers can wait: an approval of a plan whose writers wait
at most 150 ms does not carry over to an environment override that lets them wait 5 s.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from IPython.display import Markdown

from . import history
from .catalog import environment_identity, foreign_key_states, index_states
from .database import Database
from .estimate import Calibration, Estimates, estimate_steps, project_calibration
from .migration import (add_statement, drop_index_statement, index_statement, load_migrations, session_settings,
                        validate_statement)
from .spec import ForeignKey, LockRetries, Spec, format_ms

# What each kind of statement locks, and whether writers wait for it.
LOCKS = {
    "drop_index": ("SHARE UPDATE EXCLUSIVE on the child; waits for transactions that use the index", "no"),
    "index": ("SHARE UPDATE EXCLUSIVE on the child (CONCURRENTLY)", "no"),
    "add": ("SHARE ROW EXCLUSIVE on child and parent", "for an instant, at most {wait} per attempt"),
    "validate": ("SHARE UPDATE EXCLUSIVE on the child, ROW SHARE on the parent", "no"),
}


@dataclass(frozen=True)
class Step:
    file: str
    kind: str                  # drop_index | index | add | validate
    fk: ForeignKey
    statement: str
    action: str                # run | skip
    reason: str

    @property
    def in_transaction(self) -> bool:
        return self.kind in ("add", "validate")

    @property
    def step(self) -> str:
        return "index" if self.kind == "drop_index" else self.kind


@dataclass
class MigrationPlan:
    steps: list[Step]
    files: pd.DataFrame         # file, version, runbook, state
    pending: list[history.MigrationFile]
    identity: dict
    settings: list[str]         # session settings every statement runs under
    runbook_files: dict[str, history.MigrationFile] = field(default_factory=dict)  # step -> file
    spec: Spec | None = None    # the spec with its files' version and covering-index names
    lock_retries: LockRetries | None = None  # how apply takes each statement's locks (spec, or the environment's)
    estimates: Estimates | None = None  # each step's predicted time (fkrunbook.estimate)

    @property
    def to_run(self) -> list[Step]:
        return [s for s in self.steps if s.action == "run"]

    @property
    def statements(self) -> pd.DataFrame:
        frame = pd.DataFrame([{
            "file": s.file, "column": s.fk.label, "statement": s.statement, "action": s.action, "reason": s.reason,
            "transaction": "own transaction" if s.in_transaction else "none (CONCURRENTLY)",
            "locks": LOCKS[s.kind][0], "blocks_writes": LOCKS[s.kind][1].format(wait=self._writer_wait),
            "estimated": self.estimates.shown(s.statement) if self.estimates and s.action == "run" else ""}
            for s in self.steps])
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="order")
        return frame

    @property
    def hash(self) -> str:
        payload = {"identity": self.identity, "settings": self.settings,
                   "statements": [[s.file, s.kind, s.statement] for s in self.to_run]}
        if self.lock_retries is not None:
            payload["lock_retries"] = [self.lock_retries.as_list(), self.lock_retries.on_exhaustion]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def summary(self) -> Markdown:
        return Markdown(f"**Plan hash `{self.hash}`**: {len(self.to_run)} statement(s) to run, "
                        f"{len(self.steps) - len(self.to_run)} already in place, "
                        f"{len(self.pending)} migration file(s) to record, on environment "
                        f"`{self.identity['environment']}` (database `{self.identity['database']}`)."
                        + self._lock_summary()
                        + (f"\n\n{self.estimates.summary()}" if self.estimates else ""))

    @property
    def _writer_wait(self) -> str:
        if self.lock_retries is None:
            return "lock_timeout"
        wait = self.lock_retries.max_writer_wait_ms
        return "unbounded (on_exhaustion: wait)" if wait is None else format_ms(wait)

    def _lock_summary(self) -> str:
        """The lock-retry schedule and what it means for writers, for the preview."""
        r = self.lock_retries
        if r is None:
            return ""
        adds = sum(1 for s in self.to_run if s.kind == "add")
        exhausted = ("then one attempt without lock_timeout" if r.on_exhaustion == "wait" else
                     "then the step fails with nothing of it done")
        wait = (f"**The longest a writer can wait behind any statement: {self._writer_wait}** (the longest "
                f"lock_timeout above), behind the {adds} `ADD ... NOT VALID` to run: each takes SHARE ROW EXCLUSIVE "
                "on the child and the parent, for an instant once it has them (its attempt's statement_timeout is its "
                "lock_timeout, so waiting for the child's lock and then the parent's takes no longer than one)."
                if adds else
                "**No statement to run blocks writers** (no `ADD ... NOT VALID` left to run).")
        return (f"\n\n**Lock retries**: {r.attempts} attempt(s) per statement, each `lock_timeout/pause after it`: "
                f"{r.describe()}; {exhausted} (after {r.give_up_after_s:g} s at worst).\n\n{wait} "
                "`CREATE INDEX CONCURRENTLY` and `VALIDATE` (SHARE UPDATE EXCLUSIVE on the child, ROW SHARE on the "
                "parent) do not block writers. A writer that needs the very row another session holds waits for "
                "that session whatever the runbook does (the lock-holder stall).")

    def show_sql(self) -> Markdown:
        """The full text of each pending file of this runbook, as the Supabase CLI would apply it."""
        if not self.pending:
            return Markdown("_No pending migration file: nothing to apply._")
        return Markdown("\n\n".join(f"**{m.filename}**\n\n```sql\n{m.path.read_text()}```" for m in self.pending))

    def results(self) -> dict:
        return {"plan_hash": self.hash, "statements_to_run": len(self.to_run),
                "statements_skipped": len(self.steps) - len(self.to_run),
                "pending_files": [m.filename for m in self.pending],
                **(self.lock_retries.results() if self.lock_retries else {}),
                **(self.estimates.results() if self.estimates else {})}


def plan_migration(db: Database, spec: Spec, migrations_dir: str | Path, lock_retries: LockRetries | None = None,
                   calibration: Calibration | None = None) -> MigrationPlan:
    """What applying the migration would run against this database now. Read-only. The spec's files
    are found in ``migrations_dir`` as :func:`fkrunbook.migration.load_migrations` finds them. The
    lock-retry schedule is ``lock_retries``, else the environment's override, else the spec's. Each
    step to run gets its predicted time (:mod:`fkrunbook.estimate`) from ``calibration``, by default
    the project's (found from the current folder up) or the built-in rates."""
    migrations = load_migrations(spec, migrations_dir)  # raises when a file is missing or edited
    spec = migrations.spec  # with the files' version and index names
    names = {step: m.filename for step, m in migrations.files.items()}
    expected = set(names.values())
    local = {m.filename: m for m in history.list_local(migrations_dir)}
    with db.read_only() as conn:
        fk_states = foreign_key_states(conn, spec)
        idx_states = index_states(conn, spec)
        remote = set(history.list_remote(conn.connection.driver_connection))
        identity = environment_identity(conn, db.env.name)
    steps = []
    for s in idx_states:
        if s.leftover:
            steps.append(Step(names["index"], "drop_index", s.fk, drop_index_statement(spec, s.fk.index), "run",
                              f"{s.fk.index} is INVALID (a failed CONCURRENTLY build): drop, then rebuild"))
        if s.covering:  # valid, led by the column, holding every row with a value: never an INVALID leftover
            steps.append(Step(names["index"], "index", s.fk, index_statement(spec, s.fk), "skip",
                              f"covered by valid index {s.covering}"))
        else:
            steps.append(Step(names["index"], "index", s.fk, index_statement(spec, s.fk), "run",
                              "rebuild after dropping the INVALID leftover" if s.leftover else "no covering index"))
    for s in fk_states:
        steps.append(Step(names["add"], "add", s.fk, add_statement(spec, s.fk), "skip" if s.exists else "run",
                          f"constraint {s.name} already exists" if s.exists else "no foreign key yet"))
    for s in fk_states:
        done = s.exists and s.validated
        steps.append(Step(names["validate"], "validate", s.fk, validate_statement(spec, s.fk, s.name),
                          "skip" if done else "run",
                          f"constraint {s.name} already validated" if done else
                          f"{s.name} is NOT VALID" if s.exists else "added NOT VALID by the step before"))
    with db.read_only() as conn:
        estimates = estimate_steps(conn, spec, [s for s in steps if s.action == "run"],
                                   calibration or project_calibration())
    files = pd.DataFrame([{"file": m.filename, "version": m.version, "runbook": m.filename in expected,
                           "state": "applied" if m.version in remote else "pending"} for m in local.values()],
                         columns=["file", "version", "runbook", "state"])
    pending = [local[n] for n in names.values() if local[n].version not in remote]
    return MigrationPlan(steps, files, pending, identity, session_settings(spec),
                         {step: local[n] for step, n in names.items()}, spec,
                         lock_retries or db.env.lock_retries or spec.migration.retries, estimates)
