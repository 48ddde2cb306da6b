"""The one exception tree. The library raises these; the CLI prints one line and exits 1."""
from __future__ import annotations


class FkrunbookError(Exception):
    """Base of every error the runbook raises on purpose. str() is one line that says the fix."""

    def _render_traceback_(self):  # IPython: one line, in notebook terms (fkrunbook.display folds the traceback)
        from .display import refusal_line

        return [refusal_line(self)]


class ConfigError(FkrunbookError):
    """fkrunbook.toml is missing or malformed, or ``fkrunbook init`` cannot write it."""

    def __init__(self, message: str, *, path: str | None = None):
        self.path = path
        super().__init__(message)


class SpecError(FkrunbookError):
    """The spec file is missing or malformed."""

    def __init__(self, message: str, *, path: str | None = None):
        self.path = path
        super().__init__(message)


class SpecMismatchError(FkrunbookError):
    """The spec names a table or column that the connected database does not have (or has differently)."""

    def __init__(self, message: str, *, table: str, column: str | None = None, environment: str | None = None):
        self.table, self.column, self.environment = table, column, environment
        super().__init__(message)


class EnvironmentUnknownError(FkrunbookError):
    def __init__(self, name: str, known: list[str]):
        self.name, self.known = name, known
        super().__init__(f"environment {name!r} is not defined; known: {', '.join(known)}")


class EnvironmentConfigError(FkrunbookError):
    """environments.yaml is missing or malformed, or a URL variable is unset or malformed."""

    def __init__(self, message: str, *, environment: str | None = None):
        self.environment = environment
        super().__init__(message)


class ConnectionFailedError(FkrunbookError):
    """The database could not be reached. The message never contains the URL's password."""

    def __init__(self, message: str, *, environment: str):
        self.environment = environment
        super().__init__(message)


class LocalServerError(FkrunbookError):
    """The embedded local PostgreSQL could not be initialised or started."""


class PhaseUnknownError(FkrunbookError):
    def __init__(self, name: str, known: list[str]):
        self.name, self.known = name, known
        super().__init__(f"phase {name!r} does not exist; known, in order: {', '.join(known)}")


class PhaseParameterError(FkrunbookError):
    """A phase parameter that no phase takes, of the wrong type, or for a phase the run leaves out."""


class ProtectedEnvironmentError(FkrunbookError):
    """A protected environment: the change runs only with an approval of the exact plan."""

    def __init__(self, environment: str, action: str, *, phase: str, current_hash: str, approved: str | None = None):
        self.environment, self.action, self.current_hash, self.approved = environment, action, current_hash, approved
        preview = f"fkrunbook run --env {environment} --phase {phase}"
        if approved:
            message = (f"environment {environment!r} is protected and the {action} plan changed since it was approved "
                       f"(approved {approved[:12]}, now {current_hash[:12]}); review it again with `{preview}` "
                       "and approve the new hash")
        else:
            message = (f"environment {environment!r} is protected: {action} needs --approve PLAN_HASH; review the plan "
                       f"with `{preview}` and pass the plan hash it shows")
        super().__init__(message)


class ConcurrentRunError(FkrunbookError):
    """Another operator is changing the same environment right now."""

    def __init__(self, environment: str, holder: str):
        self.environment, self.holder = environment, holder
        super().__init__(f"another fkrunbook apply or clean-up is running on environment {environment!r} ({holder}); "
                         "wait for it to finish, then run again")


class OrphansPresentError(FkrunbookError):
    def __init__(self, counts: dict[str, int]):
        self.counts = counts
        listed = ", ".join(f"{k}: {v}" for k, v in counts.items() if v)
        super().__init__(
            f"orphan rows would violate the new foreign keys ({listed}); "
            "run the orphan_check and orphan_cleanup phases first"
        )


class OrphanCleanupError(FkrunbookError):
    """The database refused the clean-up (a row another table still references through a key with
    no ON DELETE action): nothing was deleted and no quarantine file was written."""

    def __init__(self, message: str, *, table: str | None = None, constraint: str | None = None):
        self.table, self.constraint = table, constraint
        super().__init__(message)


class MigrationError(FkrunbookError):
    """A migration file is missing, altered, or failed to apply."""

    def __init__(self, message: str, *, version: str | None = None):
        self.version = version
        super().__init__(message)


class MigrationFilesError(MigrationError):
    """The migrations folder holds more than one set of a spec's files, or only part of one, or one out of order."""

    def __init__(self, message: str, *, directory: str, files: list[str]):
        self.directory, self.files = directory, files
        super().__init__(message)


class VerificationFailedError(FkrunbookError):
    def __init__(self, message: str, *, failures: list[str]):
        self.failures = failures
        super().__init__(message)


class CascadeValidationError(FkrunbookError):
    def __init__(self, message: str, *, table: str | None = None):
        self.table = table
        super().__init__(message)


class PhaseFailedError(FkrunbookError):
    """A phase notebook failed; its executed copy (with the traceback) is in the run folder."""

    def __init__(self, message: str, *, phase: str, notebook: str, run_id: str, run_dir: str = ""):
        self.phase, self.notebook, self.run_id, self.run_dir = phase, notebook, run_id, run_dir
        super().__init__(message)


class LockUnavailableError(FkrunbookError):
    """A step could not get its lock within lock_timeout on any attempt. Nothing of that step was done."""

    def __init__(self, message: str, *, statement: str, blockers: list[dict], attempts: list[dict]):
        self.statement, self.blockers, self.attempts = statement, blockers, attempts
        super().__init__(message)

    def _render_traceback_(self):  # IPython: show every attempt in the failed cell
        lines = [f"{type(self).__name__}: {self}", "", "Attempts:"]
        lines += [f"  {a['attempt']}: waited {a['waited_s']:.3f} s, {a['outcome']}" for a in self.attempts]
        return lines


class ValidationFailedError(FkrunbookError):
    """VALIDATE CONSTRAINT found rows without a parent (orphans written after the check).
    The constraint stays NOT VALID (new rows are enforced) and its migration file is not recorded."""

    def __init__(self, message: str, *, column: str, rows):
        self.column, self.rows = column, rows
        super().__init__(message)

    def _render_traceback_(self):  # IPython: show the offending rows in the failed cell
        return [f"{type(self).__name__}: {self}", "", f"Offending rows in {self.column}:",
                self.rows.to_string(max_rows=20, max_colwidth=40)]


class PlanChangedError(MigrationError):
    """The plan computed now is not the one previewed (and approved)."""


class OrganizationNotFoundError(FkrunbookError):
    """The organization named for the blast radius is not in the parent table."""


class QuarantineError(FkrunbookError):
    """Quarantined rows cannot be listed or restored as asked; nothing was restored."""


class RowMakerError(FkrunbookError):
    """No test row the table accepts could be made: names the table, the column and the constraint
    (or the error) that refused the last candidate."""

    def __init__(self, message: str, *, table: str | None = None, column: str | None = None,
                 constraint: str | None = None):
        self.table, self.column, self.constraint = table, column, constraint
        super().__init__(message)


class SampleDataError(FkrunbookError):
    """Sample data cannot be made as asked (a negative --rows): refused before anything starts."""


class EvidenceUnwritableError(FkrunbookError):
    """The evidence (run folder, quarantine copy) cannot be written: the change is not attempted."""


class SchemaLoadError(FkrunbookError):
    """A team's migrations or dump could not be loaded into the local database: a file is missing,
    or a statement failed (``file``, ``line`` where it starts, PostgreSQL's ``sqlstate``)."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 sqlstate: str | None = None):
        self.file, self.line, self.sqlstate = file, line, sqlstate
        super().__init__(message)


class DraftError(FkrunbookError):
    """A spec cannot be drafted from the audit as asked (a bad name, nothing to draft, a file in
    the way); nothing was written."""


class InteractiveChangeRefusedError(FkrunbookError):
    """A phase that changes the database, run in a notebook outside the runner, on an environment
    that is not local: it runs only through ``fkrunbook run``, which seals its evidence. Nothing
    was connected to, changed or written. ``command`` is the exact command to run instead."""

    def __init__(self, message: str, *, phase: str, environment: str, command: str):
        self.phase, self.environment, self.command = phase, environment, command
        super().__init__(message)

    def _render_traceback_(self):  # IPython: the one line, without the library's traceback
        return [f"{type(self).__name__}: {self}"]


class LabError(FkrunbookError):
    """``fkrunbook lab`` cannot start as asked (a port in use, a short token, JupyterLab missing);
    nothing was started or written."""


class LedgerError(FkrunbookError):
    """An environment's ledger (``fkrunbook_ledger.runs``) cannot be read to verify against it: it
    does not exist yet, or this role may not read it."""

    def __init__(self, message: str, *, environment: str):
        self.environment = environment
        super().__init__(message)


class StoreError(FkrunbookError):
    """The evidence store cannot be used as asked: an unknown scheme, credentials in a file, a remote
    that cannot be reached, missing credentials, or a run that would overwrite or fork the store's
    evidence. The message never holds a credential; the local evidence is left as it was."""

    def __init__(self, message: str, *, store: str | None = None):
        self.store = store
        super().__init__(message)


class ApplyCancelledError(FkrunbookError):
    """Apply was interrupted (Ctrl-C, SIGINT or SIGTERM; JupyterLab's interrupt): the running statement
    was cancelled on the server and the database was left as a failed step leaves it (an interrupted
    index build leaves an INVALID index, which the next apply drops and rebuilds; keys NOT VALID at
    worst). ``leftovers`` lists what it left, one line each."""

    def __init__(self, message: str, *, statement: str | None, stopped: bool, leftovers: list[str]):
        self.statement, self.stopped, self.leftovers = statement, stopped, leftovers
        super().__init__(message)

    def _render_traceback_(self):  # IPython: the summary, no library traceback
        return [f"{type(self).__name__}: {self}"] + ([""] + [f"  left: {line}" for line in self.leftovers]
                                                     if self.leftovers else [])


class RunCancelledError(PhaseFailedError):
    """``fkrunbook run`` got SIGINT or SIGTERM: the running phase was interrupted and the run sealed
    as ``cancelled`` with its partial notebook; later phases were skipped."""

    def __init__(self, message: str, *, signal: str, **kwargs):
        self.signal = signal
        super().__init__(message, **kwargs)
