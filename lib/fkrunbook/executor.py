"""How the plan is carried out: statement by statement, each lock wait bounded and retried.

Every statement runs with the spec's ``statement_timeout``, and each attempt to take its locks
with the ``lock_timeout`` of its step in the lock-retry schedule (short first, rising per attempt,
a pause after each failed one: GitLab's ``with_lock_retries``); a writer queued behind a waiting
statement therefore waits at most the schedule's longest ``lock_timeout``. Between attempts the
runbook holds no lock.
Index builds run outside any transaction (CONCURRENTLY); a build that fails leaves an INVALID
index, which is dropped before the next attempt. Each NOT VALID and each VALIDATE runs in its
own transaction. A migration file is recorded in ``supabase_migrations.schema_migrations``, as
the Supabase CLI records it, only once all its steps are in place.

Long steps (an index build, a VALIDATE) are watched from a second connection and their progress
logged (:mod:`fkrunbook.progress`). Ctrl-C (SIGINT: the runner forwards it, JupyterLab's interrupt
sends it) or SIGTERM during apply cancels the running statement on the server, makes sure its
backend is idle, and raises :class:`ApplyCancelledError` naming what is left: at worst an INVALID
index (the next apply drops and rebuilds it) and keys NOT VALID (the next apply validates them).
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from IPython.display import Markdown
import psycopg
from psycopg import errors

from . import history, progress
from .catalog import foreign_key_states, index_states
from .database import Database
from .errors import (ApplyCancelledError, LockUnavailableError, MigrationError, OrphansPresentError, PlanChangedError,
                     ValidationFailedError)
from .guard import exclusive_change, require_approval
from .migration import drop_index_statement
from .orphans import orphan_query
from .plan import MigrationPlan, Step, plan_migration
from .spec import LockRetries, Spec, format_ms
from .sqltext import literal, qualified

log = logging.getLogger("fkrunbook.executor")


@dataclass
class ApplyResult:
    plan_hash: str
    steps: pd.DataFrame        # every step: action, attempts, seconds, estimated_s (the preview's prediction)
    attempts: pd.DataFrame     # every attempt of every statement that ran: waited, outcome, blockers
    recorded: list[str]        # migration files recorded in the history
    lock_retries: LockRetries | None = None  # the schedule the attempts followed
    progress: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=progress.SAMPLE_COLUMNS))

    def summary(self) -> Markdown:
        ran = int((self.steps["action"] == "run").sum())
        return Markdown(f"**Applied plan hash `{self.plan_hash}`**: {ran} statement(s) run, "
                        f"{len(self.steps) - ran} already in place; recorded "
                        f"{', '.join(self.recorded) or 'no file (all already recorded)'}.")

    def results(self) -> dict:
        ran = self.steps[self.steps["action"] == "run"]
        return {"plan_hash": self.plan_hash, "statements_applied": len(ran),
                "statements_skipped": len(self.steps) - len(ran), "lock_retries": int(
                    (self.attempts["outcome"] == "lock timeout").sum()) if len(self.attempts) else 0,
                "files_recorded": self.recorded, "progress": self.progress.to_dict("records"),
                **(self.lock_retries.results() if self.lock_retries else {})}


def apply_plan(db: Database, spec: Spec, migrations_dir: str | Path, orphans: dict[str, int],
               retries: LockRetries | None = None, expected_hash: str | None = None,
               previewed_hash: str | None = None, progress_every: float = progress.EVERY_S) -> ApplyResult:
    """Recompute the plan under the advisory lock, then run exactly its statements and record the
    runbook's files.

    Refuses while ``orphans`` (from the orphan check) shows any, and again when a count taken under
    the lock finds any; when ``previewed_hash`` (the plan this run's preview showed) or
    ``expected_hash`` (an approval) is given and is not the plan's hash now; on a protected
    environment, unless ``expected_hash`` approves this exact plan; when an older migration of the
    folder is still pending; and while another operator is applying to the same database (the
    advisory lock is held for the whole apply).

    A step running longer than ``progress_every`` seconds logs its progress that often. An interrupt
    (SIGINT, or SIGTERM, which this sets to interrupt too while it runs) raises
    :class:`ApplyCancelledError` once the server runs nothing of the apply any more.
    """
    if any(orphans.values()):
        raise OrphansPresentError(orphans)
    runner = _Runner(db, spec, retries or db.env.lock_retries or spec.migration.retries, progress_every)
    with _sigterm_interrupts():
        try:
            return _apply(db, spec, migrations_dir, runner, retries, expected_hash, previewed_hash)
        except KeyboardInterrupt as interrupt:  # between steps (a step's own is handled in _Runner.run)
            raise runner.cancelled(interrupt) from None
        except psycopg.Error as err:  # releasing the advisory lock on a connection the cancel ended
            if isinstance(err.__context__, ApplyCancelledError):
                raise err.__context__ from None
            raise


def _apply(db: Database, spec: Spec, migrations_dir, runner: "_Runner", retries: LockRetries | None,
           expected_hash: str | None, previewed_hash: str | None) -> ApplyResult:
    recorded = runner.recorded
    with db.connect_raw(autocommit=True) as conn, exclusive_change(db, conn, spec.name):
        plan = plan_migration(db, spec, migrations_dir, retries)  # under the lock: no one changes it meanwhile
        runner.retries = plan.lock_retries  # the schedule is part of the plan (and its hash)
        log.info("plan hash %s: %d statement(s) to run", plan.hash, len(plan.to_run))
        if previewed_hash and previewed_hash != plan.hash:
            raise PlanChangedError(f"the apply plan changed since this run's preview (previewed {previewed_hash[:12]}, "
                                   f"now {plan.hash[:12]}); nothing was applied: run migration_preview again and "
                                   "review it")
        require_approval(db, "apply", "migration_preview", plan.hash, expected_hash)
        late = _orphan_counts(conn, spec, [s.fk for s in plan.to_run if s.kind == "add"])
        if any(late.values()):  # written since the orphan check: the gate holds under the lock too
            raise OrphansPresentError(late)
        _refuse_out_of_order(plan)
        for setting in plan.settings:
            conn.execute(setting)
        runner.conn, runner.pid, runner.estimates = conn, conn.info.backend_pid, plan.estimates
        runner.spec = plan.spec or spec  # with the index names of the files
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '4s'")  # as the CLI does when it creates the table
            history.ensure_history_table(conn)
        for step_name, migration in plan.runbook_files.items():
            for step in plan.steps:
                if step.file == migration.filename and step.action == "run":
                    runner.run(step)
            if migration in plan.pending:
                with conn.transaction():
                    history.record(conn, migration, migration.statements())
                recorded.append(migration.filename)
                log.info("recorded %s in supabase_migrations.schema_migrations", migration.filename)
    return ApplyResult(plan.hash, runner.step_frame(plan), pd.DataFrame(runner.attempts, columns=ATTEMPT_COLUMNS),
                       recorded, plan.lock_retries, pd.DataFrame(runner.samples, columns=progress.SAMPLE_COLUMNS))


class Terminated(KeyboardInterrupt):
    """SIGTERM during apply, raised like Ctrl-C so that psycopg cancels the running statement."""


@contextlib.contextmanager
def _sigterm_interrupts():
    """While apply runs (in the main thread: a notebook's kernel), SIGTERM interrupts it as SIGINT does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


ATTEMPT_COLUMNS = ["statement", "attempt", "lock_timeout_ms", "waited_s", "outcome", "blockers"]



def _orphan_counts(conn: psycopg.Connection, spec: Spec, fks: list) -> dict[str, int]:
    """Orphans per foreign-key column whose key is still to add, counted on the apply's own connection.
    (Where the key exists NOT VALID, VALIDATE itself finds any orphan and shows the rows.)"""
    return {fk.label: conn.execute(orphan_query(spec, fk, "count(*)")).fetchone()[0] for fk in fks}


def _refuse_out_of_order(plan: MigrationPlan) -> None:
    if not plan.pending:
        return
    first = plan.pending[0].version
    files = plan.files
    older = files[(files["state"] == "pending") & ~files["runbook"] & (files["version"] < first)]
    if len(older):
        raise MigrationError(f"migration {older['file'].iloc[0]} is older than this runbook's and not applied; "
                             "apply it first (supabase db push), then re-run", version=older["version"].iloc[0])


class _Runner:
    def __init__(self, db: Database, spec: Spec, retries: LockRetries, progress_every: float = progress.EVERY_S):
        self.db, self.spec, self.retries = db, spec, retries
        self.conn: psycopg.Connection | None = None
        self.pid: int | None = None          # the apply connection's backend
        self.attempts: list[tuple] = []
        self.timing: dict[str, tuple[int, float]] = {}
        self.progress_every, self.estimates, self.samples = progress_every, None, []
        self.current: Step | None = None     # the step running now, for a cancel's summary
        self.recorded: list[str] = []        # migration files recorded so far

    def run(self, step: Step) -> None:
        started = time.monotonic()
        self.current = step
        try:
            with self._watch(step):
                tries = self._with_lock_retries(step, lambda: self._execute(step))
        except KeyboardInterrupt as interrupt:  # stopped while its connection is still open
            raise self.cancelled(interrupt) from None
        except psycopg.Error as err:  # statement_timeout, a lost connection, ...: never half-done
            raise MigrationError(f"`{_short(step.statement)}` failed: {self.db.redact(_first_line(err))}; nothing of "
                                 "this step was kept; fix the cause and run apply again") from err
        self.timing[step.statement] = (tries, round(time.monotonic() - started, 3))
        self.current = None

    @contextlib.contextmanager
    def _watch(self, step: Step):
        """Log the progress of a step that scans its table (index build, VALIDATE) while it runs."""
        if step.kind not in ("index", "validate") or self.pid is None:
            yield
            return
        estimate = self.estimates.for_statement(step.statement) if self.estimates else None
        watch = progress.StepWatch(self.db, step.statement, step.kind, qualified(self.spec.schema, step.fk.table),
                                   self.pid, self.progress_every, estimate)
        try:
            with watch:
                yield
        finally:
            self.samples.extend(watch.samples)

    def cancelled(self, interrupt: KeyboardInterrupt) -> ApplyCancelledError:
        """After an interrupt: make sure the server runs nothing of the apply (psycopg cancelled the
        statement; a backend still active is cancelled again, then terminated), and say what is left."""
        how = "SIGTERM" if isinstance(interrupt, Terminated) else "an interrupt (SIGINT)"
        step = self.current
        stopped = progress.stop_backend(self.db, self.pid) if self.pid is not None else "not started"
        leftovers = left_behind(self.db, self.spec)
        where = f"during `{_short(step.statement)}`" if step else "between steps"
        state = {"cancelled": "was cancelled on the server", "not started": "had not started"}.get(
            stopped, f"was {stopped}")
        log.warning("apply stopped by %s %s; the statement %s", how, where, state)
        message = (f"apply stopped by {how} {where}: the statement {state} and nothing of that step was kept; "
                   f"recorded before the stop: {', '.join(self.recorded) or 'no migration file'}; left: "
                   f"{'; '.join(leftovers) or 'nothing half-done'}; run apply again to complete it")
        return ApplyCancelledError(message, statement=step.statement if step else None,
                                   stopped=not stopped.startswith("STILL"), leftovers=leftovers)

    def _execute(self, step: Step) -> None:
        conn = self.conn
        if not step.in_transaction:
            try:
                conn.execute(step.statement)
            except psycopg.Error:
                if step.kind == "index":
                    self._drop_leftover(step)
                raise
            return
        try:
            with conn.transaction():
                conn.execute(step.statement)
        except errors.ForeignKeyViolation:
            if step.kind != "validate":
                raise
            rows = self.db.query(orphan_query(self.spec, step.fk) + " LIMIT 20")
            raise ValidationFailedError(
                f"VALIDATE of {step.fk.label} found rows without an organization (written after the orphan check); "
                f"the key stays NOT VALID (new rows are enforced) and its migration is not recorded; "
                "run the orphan_check and orphan_cleanup phases, then apply again", column=step.fk.label,
                rows=rows) from None

    def _drop_leftover(self, step: Step) -> None:
        """A failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind: remove it (itself retried)."""
        drop = drop_index_statement(self.spec, step.fk.index)
        exists = self.conn.execute(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (self.spec.schema, step.fk.index)).fetchone()
        if exists and exists[0]:
            log.info("dropping the INVALID index %s left by the failed build", step.fk.index)
            self._with_lock_retries(step, lambda: self.conn.execute(drop), statement=drop)

    def _with_lock_retries(self, step: Step, action, statement: str | None = None) -> int:
        """Run ``action`` once per step of the schedule, each attempt under that step's lock_timeout,
        pausing after each attempt that found its lock taken; after the last step, fail (or, with
        ``on_exhaustion: wait``, make one attempt without lock_timeout). Every attempt is recorded."""
        statement = statement or step.statement
        schedule = list(self.retries.steps) + ([(0, 0)] if self.retries.on_exhaustion == "wait" else [])
        for attempt, (lock_timeout_ms, pause_ms) in enumerate(schedule, 1):
            # An ADD ... NOT VALID waits for the child's lock, then the parent's, each bounded by lock_timeout:
            # a writer queued on the child could wait for both. It does no work once it has them, so a
            # statement_timeout of the same length bounds the two waits together.
            bounded = step.kind == "add" and statement == step.statement and lock_timeout_ms > 0
            self.conn.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")  # milliseconds; 0: no limit
            if bounded:
                self.conn.execute(f"SET statement_timeout = {int(lock_timeout_ms)}")
            started = time.monotonic()
            try:
                action()
            except (errors.LockNotAvailable, errors.QueryCanceled) as err:
                waited = round(time.monotonic() - started, 3)
                if bounded:
                    self._restore_statement_timeout()
                if isinstance(err, errors.QueryCanceled) and not (bounded and "statement timeout" in str(err)):
                    raise  # a cancel from elsewhere (an operator, a signal), not this attempt's bound
                blockers = self._blockers(step)
                self.attempts.append((statement, attempt, lock_timeout_ms, waited, "lock timeout", _describe(blockers)))
                log.warning("attempt %d/%d of %s: no lock within %s (waited %.3f s); held by %s", attempt,
                            len(schedule), _short(statement), format_ms(lock_timeout_ms), waited,
                            _describe(blockers) or "?")
                if attempt == len(schedule):
                    raise LockUnavailableError(
                        f"could not get the lock for `{_short(statement)}` in {len(schedule)} attempts of lock_timeout "
                        f"{_timeout_range(schedule)}: held by {_describe(blockers) or 'a session that has since ended'}"
                        "; nothing of this step was done; re-run apply once that session ends",
                        statement=statement, blockers=blockers,
                        attempts=[dict(zip(ATTEMPT_COLUMNS, a)) for a in self.attempts if a[0] == statement]) from None
                time.sleep(pause_ms / 1000)
                continue
            waited = round(time.monotonic() - started, 3)
            if bounded:
                self._restore_statement_timeout()
            self.attempts.append((statement, attempt, lock_timeout_ms, waited, "done", ""))
            log.info("attempt %d of %s: done in %.3f s", attempt, _short(statement), waited)
            self.conn.execute(f"SET lock_timeout = {literal(self.spec.migration.lock_timeout)}")  # the plan's setting
            return attempt
        raise AssertionError("unreachable")

    def _restore_statement_timeout(self) -> None:
        if not self.conn.closed and not self.conn.broken:
            self.conn.execute(f"SET statement_timeout = {literal(self.spec.migration.statement_timeout)}")

    def _blockers(self, step: Step) -> list[dict]:
        """Sessions holding a lock on the step's tables (never their query text: it may hold data)."""
        tables = [qualified(self.spec.schema, step.fk.table)]
        if step.kind == "add":
            tables.append(qualified(self.spec.parent.schema, self.spec.parent.table))
        rows = self.conn.execute(
            "SELECT a.pid, coalesce(nullif(a.application_name, ''), a.backend_type) AS application, a.usename, a.state, "
            "round(extract(epoch FROM now() - a.xact_start))::int AS transaction_s, l.mode, l.relation::regclass::text "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.granted AND l.locktype = 'relation' AND l.relation = ANY(%s::regclass[]) "
            "AND a.pid <> pg_backend_pid() ORDER BY a.xact_start NULLS LAST",
            (tables,)).fetchall()
        keys = ["pid", "application", "user", "state", "transaction_s", "mode", "relation"]
        return [dict(zip(keys, r)) for r in rows]

    def step_frame(self, plan: MigrationPlan) -> pd.DataFrame:
        frame = plan.statements[["file", "column", "statement", "action"]].copy()
        frame["attempts"] = [self.timing.get(s, (0, 0.0))[0] for s in frame["statement"]]
        frame["seconds"] = [self.timing.get(s, (0, 0.0))[1] for s in frame["statement"]]
        frame["estimated_s"] = [self.estimates.for_statement(s) if self.estimates else None for s in frame["statement"]]
        return frame


def left_behind(db: Database, spec: Spec) -> list[str]:
    """What an interrupted apply leaves of the spec, one line each: INVALID covering indexes (a
    cancelled CONCURRENTLY build; the next apply drops and rebuilds them) and keys NOT VALID (new
    rows enforced; the next apply validates them)."""
    with db.read_only() as conn:
        indexes, keys = index_states(conn, spec), foreign_key_states(conn, spec)
    lines = [f"INVALID index {s.fk.index} on {s.fk.table} (an interrupted CONCURRENTLY build: the next apply drops "
             "and rebuilds it)" for s in indexes if s.leftover]
    lines += [f"key {s.name} on {s.fk.label} NOT VALID (new rows are enforced; the next apply validates it)"
              for s in keys if s.exists and not s.validated]
    return lines


def _describe(blockers: list[dict]) -> str:
    return "; ".join(f"pid {b['pid']} ({b['application'] or 'unknown'}, user {b['user']}, {b['state']}, "
                     f"transaction open {b['transaction_s']} s, {b['mode']} on {b['relation']})" for b in blockers)


def _timeout_range(schedule: list[tuple[int, int]]) -> str:
    """'150ms', or '100ms to 150ms' when the attempts' lock_timeouts differ; ', then none' for a last
    attempt without lock_timeout."""
    limited = [t for t, _ in schedule if t]
    low, high = min(limited), max(limited)
    return (f"{low}ms" if low == high else f"{low}ms to {high}ms") + (", then none" if 0 in (t for t, _ in schedule) else "")


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _short(statement: str) -> str:
    return statement if len(statement) <= 90 else statement[:87] + "..."
