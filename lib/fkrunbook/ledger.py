"""The ledger: each environment's own record of its sealed runs, kept in its database.

The evidence folder lives on whichever machine ran the runbook; the ledger lives where the
change happened. Each sealed run appends one entry to ``fkrunbook_ledger.runs`` (run id, phases
and outcomes, mode, the manifest's sha256 and its place in the chain, operator, host, git commit,
spec, config and plan hashes, times), and each entry carries the sha256 of the entry before it
(a hash chain over entries, per environment). The database refuses UPDATE, DELETE and TRUNCATE
there (triggers, and the writer's own privileges revoked); the schema is revoked from PUBLIC,
``anon``, ``authenticated`` and ``service_role`` and has row level security on, so Supabase's
APIs never see it.

Writing happens while a run is sealed (:func:`fkrunbook.evidence.seal_run` takes a
:class:`Ledger`), in one short transaction of its own under an advisory lock with a short
``lock_timeout``: the run's place in the chain comes from the ledger's last entry (a second
operator's checkout, or a CI job with an empty evidence folder, continues the same chain), the
manifest is written, then its entry is appended. Where the ledger cannot be written (a read-only
role, an unreachable database, a lock held too long) the run is sealed in the local folder's chain
as before and its manifest says why (``ledger.skipped``): the run still succeeds.

:func:`verify_ledger` checks the runs it is given (from a local folder, or any store) against the
entries: a run missing (the newest included), a manifest altered, an entry altered or removed.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg

from .database import Database
from .errors import ConnectionFailedError, EvidenceUnwritableError, LedgerError
from .guard import lock_key
from .sqltext import qualified

SCHEMA = "fkrunbook_ledger"
TABLE = "runs"
QUALIFIED = qualified(SCHEMA, TABLE)
LOCK_TIMEOUT = "3s"          # another writer holding the ledger longer than this: the run skips it
STATEMENT_TIMEOUT = "15s"
API_ROLES = ("anon", "authenticated", "service_role")  # Supabase's API roles: never see the ledger

# The fields of an entry that its hash covers, in this order (recorded_at, the server's clock, is not).
FIELDS = ("environment", "entry", "run_id", "sequence", "mode", "status", "phases", "manifest_sha256",
          "previous_manifest_sha256", "operator", "host", "git_commit", "spec_sha256", "config_sha256",
          "plan_hash", "started_at", "ended_at", "sealed_at", "previous_entry_sha256")

CREATE = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE {QUALIFIED} (
    environment text NOT NULL,
    entry integer NOT NULL CHECK (entry > 0),
    run_id text NOT NULL,
    sequence integer NOT NULL,
    mode text NOT NULL,
    status text NOT NULL,
    phases jsonb NOT NULL,
    manifest_sha256 text NOT NULL,
    previous_manifest_sha256 text,
    operator text,
    host text,
    git_commit text,
    spec_sha256 text,
    config_sha256 text,
    plan_hash text,
    started_at text,
    ended_at text,
    sealed_at text,
    previous_entry_sha256 text,
    entry_sha256 text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment, entry)
);
COMMENT ON TABLE {QUALIFIED} IS 'fkrunbook: one entry per sealed run, append-only, hash-chained per environment';
CREATE FUNCTION {SCHEMA}.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{SCHEMA}.{TABLE} is append-only: % refused', TG_OP
        USING HINT = 'the ledger of sealed runs is never changed; a new run appends its own entry';
END $$;
CREATE TRIGGER refuse_update_delete BEFORE UPDATE OR DELETE ON {QUALIFIED}
    FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.refuse_change();
CREATE TRIGGER refuse_truncate BEFORE TRUNCATE ON {QUALIFIED}
    FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.refuse_change();
ALTER TABLE {QUALIFIED} ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC;
REVOKE ALL ON TABLE {QUALIFIED} FROM PUBLIC;
REVOKE ALL ON FUNCTION {SCHEMA}.refuse_change() FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON TABLE {QUALIFIED} FROM CURRENT_USER;
"""


@dataclass(frozen=True)
class Entry:
    """One row of the ledger."""
    environment: str
    entry: int
    run_id: str
    sequence: int
    mode: str
    status: str
    phases: list
    manifest_sha256: str
    previous_manifest_sha256: str | None
    operator: str | None
    host: str | None
    git_commit: str | None
    spec_sha256: str | None
    config_sha256: str | None
    plan_hash: str | None
    started_at: str | None
    ended_at: str | None
    sealed_at: str | None
    previous_entry_sha256: str | None
    entry_sha256: str

    def computed_sha256(self) -> str:
        return entry_hash({f: getattr(self, f) for f in FIELDS})


def entry_hash(fields: dict) -> str:
    """The sha256 of an entry's fields, as canonical JSON (sorted keys, no spaces)."""
    body = json.dumps({f: fields.get(f) for f in FIELDS}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


# -- writing: while a run is sealed ------------------------------------------------------------------
class Ledger:
    """The ledger of ``db``'s environment, as :func:`fkrunbook.evidence.seal_run` uses it.

    ``with ledger.link(run_dir, manifest):`` around writing the manifest: on entry, one
    transaction takes the ledger's advisory lock, creates the table the first time, and places the
    run after the ledger's last entry (``sequence``, ``previous_manifest_sha256`` and ``ledger`` in
    the manifest); on exit the entry is appended and the transaction committed. When the ledger
    cannot be written, the manifest keeps the local folder's place and says why
    (``ledger.skipped``; :func:`ledger_line` is the one line to show)."""

    def __init__(self, db: Database, environment: str | None = None):
        # A read-only phase's connection is READ ONLY; the ledger is evidence, written on its own.
        self.db = replace(db, read_only_session=False) if db.read_only_session else db
        self.environment = environment or db.env.name
        self._conn: psycopg.Connection | None = None

    def link(self, run_dir: Path, manifest: dict):
        return _Link(self, Path(run_dir), manifest)

    def placement(self, run_dir: Path, manifest: dict) -> dict:
        """A copy of ``manifest`` placed where :meth:`link` would place it now, read without the
        ledger's lock: the reports' headers are rendered with it before the short transaction, and
        made again in the rare case another run was sealed in between."""
        placed = dict(manifest)
        if "first_sealed_at" not in manifest:  # a sealed run keeps its place
            head = self._peek()
            if head is not False:  # unreadable: link() will say why it skips
                _place(placed, head, Path(run_dir))
        return placed

    def head_run_id(self) -> str | None:
        """The run of the ledger's last entry for this environment, or None (empty or unreachable)."""
        head = self._peek()
        return head.run_id if head else None

    def _peek(self) -> "Entry | None | bool":
        """The ledger's last entry for this environment, read without its lock: None when the ledger
        is empty or absent, False when it cannot be read."""
        try:
            with self.db.connect_raw(autocommit=True) as conn:
                return _last_entry(conn, self.environment) if _exists(conn) else None
        except (psycopg.Error, ConnectionFailedError):
            return False

    # the transaction, step by step
    def _open(self) -> Entry | None:
        """Begin, lock, create the table the first time, check this role may append; the last entry."""
        conn = self._conn = self.db.connect_raw()
        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        conn.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", lock_key(f"ledger:{SCHEMA}"))
        if not _exists(conn):
            conn.execute(CREATE)
            for role in API_ROLES:
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(f'REVOKE ALL ON SCHEMA {SCHEMA} FROM "{role}"')
                    conn.execute(f'REVOKE ALL ON TABLE {QUALIFIED} FROM "{role}"')
        elif not conn.execute("SELECT has_schema_privilege(%s, 'USAGE') AND has_table_privilege(%s, 'INSERT') "
                              "AND has_table_privilege(%s, 'SELECT')", (SCHEMA, QUALIFIED, QUALIFIED)).fetchone()[0]:
            raise _Skip(f"role {self._role()!r} cannot write {SCHEMA}.{TABLE} (a read-only role); "
                        f"grant it USAGE on schema {SCHEMA} and SELECT, INSERT on the table to record runs there")
        return _last_entry(conn, self.environment)

    def _append(self, manifest: dict, manifest_sha256: str, head: Entry | None) -> int:
        fields = entry_fields(manifest, manifest_sha256, self.environment)
        fields.update(entry=head.entry + 1 if head else 1, previous_entry_sha256=head.entry_sha256 if head else None)
        columns = list(FIELDS) + ["entry_sha256"]
        values = {**fields, "phases": json.dumps(fields["phases"]), "entry_sha256": entry_hash(fields)}
        self._conn.execute(f"INSERT INTO {QUALIFIED} ({', '.join(columns)}) VALUES "
                           f"({', '.join('%(' + c + ')s' for c in columns)})", values)
        self._conn.commit()
        return fields["entry"]

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def _role(self) -> str:
        try:
            return self._conn.execute("SELECT current_user").fetchone()[0]
        except psycopg.Error:
            return "?"


class _Skip(Exception):
    """The ledger cannot be written here; the message says why (one line)."""


def _skip_reason(err: Exception) -> str:
    """Why the ledger cannot be written, in a few words (never the URL: connection errors come redacted)."""
    if isinstance(err, (_Skip, ConnectionFailedError)):
        return str(err)
    if isinstance(err, psycopg.errors.LockNotAvailable):
        return f"another writer held the ledger for more than {LOCK_TIMEOUT}"
    if isinstance(err, (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
        return f"this role cannot create or write {SCHEMA}.{TABLE}, a read-only role ({_first_line(err)})"
    return f"{type(err).__name__}: {_first_line(err)}"


class _Link:
    """The context of :meth:`Ledger.link` (see there)."""

    def __init__(self, ledger: Ledger, run_dir: Path, manifest: dict):
        self.ledger, self.run_dir, self.manifest = ledger, run_dir, manifest
        self.head: Entry | None = None
        self.active = False

    def __enter__(self):
        ledger, manifest = self.ledger, self.manifest
        mark = manifest.get("ledger") or {}
        resealing = "first_sealed_at" in manifest  # seal_run keeps a sealed run's place: see there
        if resealing and not mark.get("entry"):
            self._skip("this run was first sealed without the ledger")  # it stays where it was placed
            return self
        try:
            head = self.head = ledger._open()
        except (_Skip, ConnectionFailedError, psycopg.Error) as err:
            reason = _skip_reason(err)
            ledger._close()
            if resealing:  # its entry names the manifest as it was: sealing it again without the ledger would
                raise EvidenceUnwritableError(  # make the ledger call it altered
                    f"run {manifest['run_id']!r} is recorded in the ledger and cannot be sealed again without it "
                    f"({reason}): start another run") from None
            self._skip(reason)
            return self
        if resealing:
            if head is None or head.run_id != manifest["run_id"]:
                ledger._close()
                raise EvidenceUnwritableError(
                    f"run {manifest['run_id']!r} is no longer the newest run in the ledger of {ledger.environment!r} "
                    "(another run was sealed after it, here or on another machine); it cannot be sealed again: "
                    "start another run")
            manifest["ledger"] = {**mark, "entry": head.entry + 1}
        else:
            _place(manifest, head, self.run_dir)
        self.active = True
        return self

    def __exit__(self, kind, value, traceback):
        ledger = self.ledger
        if not self.active:
            return False
        try:
            if kind is not None:
                return False
            from .evidence import MANIFEST, write_manifest

            digest = hashlib.sha256((self.run_dir / MANIFEST).read_bytes()).hexdigest()
            try:
                ledger._append(self.manifest, digest, self.head)
            except psycopg.Error as err:  # the manifest already names an entry that was not written
                self._skip(f"the entry could not be appended ({type(err).__name__}: {_first_line(err)})")
                write_manifest(self.run_dir, self.manifest)
                return False
            return False
        finally:
            ledger._close()

    def _skip(self, reason: str) -> None:
        self.ledger._close()
        self.manifest["ledger"] = {"schema": SCHEMA, "skipped": reason}


def ledger_line(manifest: dict) -> str | None:
    """One line on where a sealed run is recorded: its ledger entry, or why the ledger was skipped."""
    mark = manifest.get("ledger") or {}
    if mark.get("skipped"):
        return f"ledger: skipped: {mark['skipped']}; the run is sealed in this folder's chain only"
    if mark.get("entry"):
        after = f", after {mark['previous_run_id']}" if mark.get("previous_run_id") else ""
        after += " (sealed elsewhere)" if mark.get("previous_here") is False else ""
        return f"ledger: entry {mark['entry']} of {SCHEMA}.{TABLE}, chain #{manifest.get('sequence')}{after}"
    return None


def entry_fields(manifest: dict, manifest_sha256: str, environment: str) -> dict:
    """What an entry records of a sealed manifest (without its place among the entries)."""
    return {
        "environment": environment, "run_id": manifest["run_id"], "sequence": int(manifest["sequence"]),
        "mode": manifest.get("mode", "runner"), "status": manifest.get("status", "unknown"),
        "phases": [{"name": p.get("name"), "status": p.get("status")} for p in manifest.get("phases", [])],
        "manifest_sha256": manifest_sha256, "previous_manifest_sha256": manifest.get("previous_manifest_sha256"),
        "operator": manifest.get("operator"), "host": manifest.get("host"), "git_commit": manifest.get("git_commit"),
        "spec_sha256": (manifest.get("spec") or {}).get("sha256"),
        "config_sha256": (manifest.get("config") or {}).get("sha256"), "plan_hash": manifest.get("plan_hash"),
        "started_at": manifest.get("started_at"), "ended_at": manifest.get("ended_at"),
        "sealed_at": manifest.get("sealed_at"),
    }


def _place(manifest: dict, head: Entry | None, run_dir: Path) -> None:
    """Place a new run after the ledger's last entry ``head`` (its sequence and previous manifest)."""
    previous_run, here = None, True
    if head is not None and head.sequence >= manifest["sequence"] - 1:
        # The ledger is at least as far along as this folder: the run continues the ledger's chain,
        # whose last run may have been sealed on another machine (then the folder has a gap there).
        manifest["sequence"], manifest["previous_manifest_sha256"] = head.sequence + 1, head.manifest_sha256
        previous_run, here = head.run_id, _sealed_here(run_dir.parent, head)
    manifest["ledger"] = {"schema": SCHEMA, "entry": head.entry + 1 if head else 1,
                          "previous_run_id": previous_run, "previous_here": here}


def _sealed_here(env_dir: Path, head: Entry) -> bool:
    """Whether the ledger's last run is in this folder, with the manifest the ledger recorded."""
    from .evidence import load_runs

    return any(r.run_id == head.run_id and r.manifest_sha256 == head.manifest_sha256
               for r in load_runs(env_dir.parent, env_dir.name))


def _last_entry(conn: psycopg.Connection, environment: str) -> Entry | None:
    row = conn.execute(f"SELECT {', '.join(FIELDS)}, entry_sha256 FROM {QUALIFIED} WHERE environment = %s "
                       "ORDER BY entry DESC LIMIT 1", (environment,)).fetchone()
    return Entry(*row) if row else None


def _exists(conn: psycopg.Connection) -> bool:
    """Whether the ledger table exists (from the catalog: a role without USAGE on the schema sees it too)."""
    return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s AND c.relname = %s)", (SCHEMA, TABLE)).fetchone()[0]


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


# -- reading and verifying -------------------------------------------------------------------------
def read_ledger(db: Database, environment: str | None = None) -> list[Entry]:
    """Every entry of the environment's ledger, oldest first (read-only)."""
    environment = environment or db.env.name
    try:
        with db.connect_raw(read_only=True) as conn:
            if not _exists(conn):
                raise LedgerError(f"environment {environment!r} has no ledger ({SCHEMA}.{TABLE} does not exist): "
                                  f"no run has been sealed against it yet; run `fkrunbook run --env {environment} --phase "
                                  "orphan_check` to start it", environment=environment)
            rows = conn.execute(f"SELECT {', '.join(FIELDS)}, entry_sha256 FROM {QUALIFIED} WHERE environment = %s "
                                "ORDER BY entry", (environment,)).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        raise LedgerError(f"this role cannot read {SCHEMA}.{TABLE} in environment {environment!r}; connect as the "
                          "role that writes the runs (or grant it USAGE on the schema and SELECT on the table)",
                          environment=environment) from None
    except psycopg.Error as err:
        raise LedgerError(f"cannot read the ledger of {environment!r}: {db.redact(_first_line(err))}",
                          environment=environment) from None
    return [Entry(*row) for row in rows]


@dataclass
class LedgerCheck:
    problems: list[str]
    runs: int            # runs in the ledger
    found: int           # of them, with their evidence reachable and matching
    off_ledger: list[str]  # sealed runs reachable that were sealed without the ledger (skipped)


def verify_ledger(entries: list[Entry], runs: list, where: str) -> LedgerCheck:
    """Check ``runs`` (sealed :class:`fkrunbook.evidence.Run`\\ s of one environment, from wherever
    they could be read: ``where`` says where, for the messages) against the ledger's ``entries``.

    Problems, one line each: an entry altered or removed (its hash, the link to the entry before,
    a gap in the numbering); a run of the ledger whose evidence is not among ``runs`` (missing,
    the newest included); a manifest whose sha256 is not the one the ledger recorded (altered); a
    run whose manifest names an entry the ledger does not hold. A run sealed again (a walkthrough)
    has an entry per seal: the last one counts."""
    problems: list[str] = []
    previous: Entry | None = None
    for entry in entries:
        label = f"{entry.environment}: ledger entry {entry.entry} ({entry.run_id})"
        if entry.entry != (previous.entry + 1 if previous else 1):
            problems.append(f"{label}: follows entry {previous.entry if previous else 'nothing'}: an entry was removed "
                            "from the ledger")
        if entry.computed_sha256() != entry.entry_sha256:
            problems.append(f"{label}: its contents do not match its entry_sha256: the entry was altered")
        elif entry.previous_entry_sha256 != (previous.entry_sha256 if previous else None):
            problems.append(f"{label}: previous_entry_sha256 does not match entry "
                            f"{previous.entry if previous else '(none)'}: the ledger's chain is broken")
        previous = entry
    latest = {e.run_id: e for e in entries}   # a run sealed again: its last entry
    by_id = {r.run_id: r for r in runs if r.sealed}
    found = 0
    for run_id, entry in sorted(latest.items(), key=lambda item: item[1].entry):
        run = by_id.get(run_id)
        if run is None:
            problems.append(f"{entry.environment}/{run_id}: in the ledger (entry {entry.entry}, chain "
                            f"#{entry.sequence}, sealed {entry.sealed_at} by {entry.operator} on {entry.host}) but not in {where}: its "
                            "evidence is missing")
        elif run.manifest_sha256 != entry.manifest_sha256:
            problems.append(f"{entry.environment}/{run_id}: manifest.json is not the one the ledger recorded (sha256 "
                            f"{entry.manifest_sha256[:16]} in entry {entry.entry}, {run.manifest_sha256[:16]} in "
                            f"{where}): the manifest was altered")
        else:
            found += 1
    off_ledger = []
    for run in sorted(by_id.values(), key=lambda r: (r.sequence, r.run_id)):
        mark = run.manifest.get("ledger") or {}
        if run.run_id in latest:
            continue
        if mark.get("entry"):
            problems.append(f"{run.env}/{run.run_id}: its manifest names ledger entry {mark['entry']}, which the "
                            f"ledger does not hold for this run: it was not sealed against this database, or the "
                            "entry is gone")
        else:
            off_ledger.append(run.run_id)
    return LedgerCheck(problems, len(latest), found, off_ledger)
