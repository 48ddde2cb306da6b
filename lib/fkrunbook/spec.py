"""The runbook spec: which foreign keys to add and which organization references have none on purpose.

Everything else (orphan queries, migration SQL, verification, cascade test, docs) is derived
from a :class:`Spec`. Loading validates the shape and the identifiers; checking the spec
against a live database is :func:`fkrunbook.catalog.check_spec`.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import yaml

from .errors import SpecError

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# A key inside a jsonb payload: letters (either case), digits and _, top level or one level nested
# (``organization.id``); the SQL quotes it as a literal, the pattern keeps the spec readable.
JSON_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
MAX_IDENTIFIER = 63
ON_DELETE = {"cascade": "CASCADE", "restrict": "RESTRICT", "no action": "NO ACTION",
             "set null": "SET NULL", "set default": "SET DEFAULT"}
CLASSIFICATIONS = ("oversight", "recommended")
FINDINGS = ("missing_fk", "unindexed_fk", "blocking_delete", "not_valid", "polymorphic")  # the audit's kinds
DURATION = re.compile(r"^[0-9]+(ms|s|min|h)$")
VERSION_FORMAT = "%Y%m%d%H%M%S"  # a Supabase CLI migration version, UTC
TODO = "TODO:"  # how a drafted spec marks a reason the engineer has yet to write


@dataclass(frozen=True)
class Parent:
    """The tenant table every foreign key points at. Its schema may differ from the children's (a
    basejump project keeps ``basejump.accounts`` while the app's tables are in ``public``)."""
    table: str
    column: str
    schema: str


@dataclass(frozen=True)
class ForeignKey:
    table: str
    column: str
    on_delete: str
    classification: str
    reason: str
    constraint: str
    index: str  # the covering index the runbook builds if the column has none
    index_given: bool = True  # named by the spec's `index:`; else a default that an existing index may replace

    @property
    def on_delete_sql(self) -> str:
        return ON_DELETE[self.on_delete]

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class Discriminator:
    column: str
    value: str


@dataclass(frozen=True)
class Payload:
    """Organization ids carried inside a jsonb column, under one key or several
    (``event_data->>'organization_id'``, ``event_data->>'org_id'``); a nested key is written
    ``parent.child`` (``event_data #>> '{organization,id}'``)."""
    column: str
    keys: tuple[str, ...]

    def path(self, key: str) -> tuple[str, ...]:
        """A key as the path of its levels: ``organization.id`` -> ("organization", "id")."""
        return tuple(key.split("."))

    def label(self, table: str, key: str) -> str:
        """How reports name one key: ``domain_events.event_data->organization_id``."""
        return f"{table}.{self.column}->" + "->".join(self.path(key))


@dataclass(frozen=True)
class IntentionalException:
    table: str
    column: str
    reason: str
    discriminator: Discriminator | None = None
    payload: Payload | None = None

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class AcceptedFinding:
    """An audit finding the team accepts for now, with why and until when: after ``expires`` the
    audit reports it as undeclared again, so an accepted risk is looked at again, not forgotten."""
    table: str
    column: str
    finding: str
    reason: str
    expires: date

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class LockRetries:
    """The lock-retry schedule, as GitLab's ``with_lock_retries`` has it: one ``(lock_timeout, pause)``
    step per attempt, in milliseconds. An attempt that cannot get its lock within its lock_timeout
    gives up (holding nothing), the runbook pauses, and the next step tries again; short timeouts
    first, so that a writer queued behind a waiting statement waits at most that long.

    ``on_exhaustion`` is what happens after the last step: ``fail`` (nothing of the step done; the
    default, so the writers' bound holds) or ``wait``: one last attempt without lock_timeout, as
    GitLab does, which can stall writers for as long as the lock holder keeps its lock.
    """
    steps: tuple[tuple[int, int], ...]
    on_exhaustion: str = "fail"

    @classmethod
    def rising(cls, attempts: int = 20, lock_timeout: str = "100ms", lock_timeout_max: str = "150ms",
               backoff: str = "50ms", backoff_max: str = "10s", on_exhaustion: str = "fail") -> "LockRetries":
        """``attempts`` steps whose lock_timeout rises evenly from ``lock_timeout`` to ``lock_timeout_max``
        (slowly, so that a lock held for seconds meets the short timeouts) and whose pause doubles from
        ``backoff`` up to ``backoff_max``."""
        def ms(value: str) -> int:
            return round(duration_seconds(value) * 1000)
        low, high = ms(lock_timeout), ms(lock_timeout_max)
        return cls(tuple((round(low + (high - low) * i / max(attempts - 1, 1)), min(ms(backoff) * 2 ** i, ms(backoff_max)))
                         for i in range(attempts)), on_exhaustion)

    @property
    def attempts(self) -> int:
        return len(self.steps)

    @property
    def max_lock_timeout_ms(self) -> int:
        return max(t for t, _ in self.steps)

    @property
    def max_writer_wait_ms(self) -> int | None:
        """The longest a writer can queue behind one lock wait of the runbook; None: unbounded."""
        return None if self.on_exhaustion == "wait" else self.max_lock_timeout_ms

    @property
    def give_up_after_s(self) -> float:
        """Worst-case time spent on one statement's attempts before the step fails (every lock wait
        in full and every pause but the last)."""
        return round((sum(t for t, _ in self.steps) + sum(p for _, p in self.steps[:-1])) / 1000, 3)

    def describe(self) -> str:
        """The schedule in one line, runs of equal steps folded: ``100 ms/50 ms, 150 ms/100 ms ×3, ...``."""
        runs: list[list] = []
        for step in self.steps:
            if runs and runs[-1][0] == step:
                runs[-1][1] += 1
            else:
                runs.append([step, 1])
        text = ", ".join(f"{format_ms(t)}/{format_ms(p)}" + (f" ×{n}" if n > 1 else "") for (t, p), n in runs)
        return text + ("; then one attempt without lock_timeout" if self.on_exhaustion == "wait" else "")

    def as_list(self) -> list[list[int]]:
        return [list(step) for step in self.steps]

    def results(self) -> dict:
        """What the preview's and the apply's results record of the schedule."""
        return {"lock_schedule": self.as_list(), "lock_on_exhaustion": self.on_exhaustion,
                "max_writer_wait_ms": self.max_writer_wait_ms}


def format_ms(ms: int) -> str:
    """200 -> '200 ms', 1500 -> '1.5 s', 60000 -> '60 s'."""
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:g} s"


@dataclass(frozen=True)
class MigrationSettings:
    version: str | None  # the first file's version; None: found in the migrations folder, or chosen when generated
    lock_timeout: str
    statement_timeout: str
    retries: LockRetries = field(default_factory=lambda: DEFAULT_LOCK_RETRIES)
    index_build_workers: int = 0  # max_parallel_maintenance_workers while building indexes


@dataclass(frozen=True)
class Spec:
    name: str
    schema: str
    parent: Parent
    migration: MigrationSettings
    foreign_keys: tuple[ForeignKey, ...]
    exceptions: tuple[IntentionalException, ...]
    accepted: tuple[AcceptedFinding, ...] = ()
    path: str = ""
    sha256: str = field(default="", compare=False)

    @property
    def parent_name(self) -> str:
        """The parent table as messages, comments and docs name it: bare in the spec's schema (as
        they always have), schema-qualified in another one."""
        p = self.parent
        return p.table if p.schema == self.schema else f"{p.schema}.{p.table}"

    @property
    def child_tables(self) -> list[str]:
        """Tables that get a foreign key, in spec order, without repeats."""
        return list(dict.fromkeys(fk.table for fk in self.foreign_keys))


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file; raise :class:`SpecError` naming the first problem."""
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"spec file {str(path)!r} does not exist; pass --spec with the path of a runbook spec "
                        "(e.g. runbooks/add_missing_org_fk_constraints.yaml)", path=str(path)) from None
    except OSError as err:
        raise SpecError(f"spec file {str(path)!r} cannot be read ({err.strerror}); check its permissions",
                        path=str(path)) from None
    try:
        raw = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecError(f"spec file {str(path)!r} is not valid YAML{where}; fix the syntax", path=str(path)) from None
    spec = parse_spec(raw, source=str(path))
    return Spec(**{**spec.__dict__, "path": str(path), "sha256": hashlib.sha256(raw_bytes).hexdigest()})


def parse_spec(raw: object, source: str = "<spec>") -> Spec:
    """Build a :class:`Spec` from already-parsed YAML, validating every field."""
    p = _Parser(source)
    doc = p.mapping(raw, "the document")
    schema = p.identifier(doc, "schema", "the document", default="public")
    parent_raw = p.mapping(p.required(doc, "parent", "the document"), "parent")
    parent = Parent(table=p.identifier(parent_raw, "table", "parent"),
                    column=p.identifier(parent_raw, "column", "parent", default="id"),
                    schema=p.identifier(parent_raw, "schema", "parent", default=schema))
    mig_raw = p.mapping(p.required(doc, "migration", "the document"), "migration")
    version = mig_raw.get("version")
    if version not in (None, ""):
        version = str(version)
        if not re.fullmatch(r"[0-9]{14}", version):
            p.fail(f"migration.version {version!r} must be 14 digits, YYYYMMDDHHMMSS (quote it in YAML)")
        try:
            datetime.strptime(version, VERSION_FORMAT)
        except ValueError:
            p.fail(f"migration.version {version!r} is not a date and time YYYYMMDDHHMMSS; fix it or remove it "
                   "to have one chosen when the files are generated")
    else:
        version = None
    migration = MigrationSettings(
        version=version,
        lock_timeout=p.duration(mig_raw, "lock_timeout", "migration", "1s"),
        statement_timeout=p.duration(mig_raw, "statement_timeout", "migration", "15min"),
        retries=parse_retries(mig_raw.get("lock_retries"), "migration.lock_retries", p),
        index_build_workers=p.count(mig_raw, "index_build_workers", "migration", 0, 64),
    )
    fks = []
    for i, item in enumerate(p.sequence(p.required(doc, "foreign_keys", "the document"), "foreign_keys")):
        where = f"foreign_keys[{i}]"
        item = p.mapping(item, where)
        table, column = p.identifier(item, "table", where), p.identifier(item, "column", where)
        on_delete = str(p.required(item, "on_delete", where)).lower()
        if on_delete not in ON_DELETE:
            p.fail(f"{where}.on_delete {on_delete!r} is not one of: {', '.join(ON_DELETE)}")
        classification = str(p.required(item, "classification", where))
        if classification not in CLASSIFICATIONS:
            p.fail(f"{where}.classification {classification!r} is not one of: {', '.join(CLASSIFICATIONS)}")
        default_name = f"{table}_{column}_fkey"
        constraint = p.identifier(item, "constraint", where, default=default_name[:MAX_IDENTIFIER])
        index = p.identifier(item, "index", where, default=f"{table}_{column}_idx"[:MAX_IDENTIFIER])
        reason = p.text(item, "reason", where)
        if reason.upper().startswith(TODO.rstrip(":")):
            p.fail(f"{where}.reason for {table}.{column} is not written yet (it still starts with TODO); write why "
                   "the key is needed, then run again")
        fks.append(ForeignKey(table, column, on_delete, classification, reason, constraint,
                              index, index_given=item.get("index") not in (None, "")))
    if not fks:
        p.fail("foreign_keys is empty; list at least one foreign key to add")
    exceptions = []
    for i, item in enumerate(p.sequence(doc.get("intentional_exceptions") or [], "intentional_exceptions")):
        where = f"intentional_exceptions[{i}]"
        item = p.mapping(item, where)
        disc = None
        if item.get("discriminator") is not None:
            d = p.mapping(item["discriminator"], f"{where}.discriminator")
            disc = Discriminator(p.identifier(d, "column", f"{where}.discriminator"),
                                 str(p.required(d, "value", f"{where}.discriminator")))
        payload = None
        if item.get("payload") is not None:
            payload = p.payload(item["payload"], f"{where}.payload")
        exceptions.append(IntentionalException(p.identifier(item, "table", where), p.identifier(item, "column", where),
                                               p.text(item, "reason", where), disc, payload))
    labels = [fk.label for fk in fks] + [e.label for e in exceptions]
    for label in labels:
        if labels.count(label) > 1:
            p.fail(f"{label} is listed twice; each column appears once, as a foreign key or as an exception")
    names = [fk.constraint for fk in fks]
    for name in names:
        if names.count(name) > 1:
            p.fail(f"constraint name {name!r} is used twice; give one of them a distinct 'constraint:'")
    accepted = []
    for i, item in enumerate(p.sequence(doc.get("accepted_findings") or [], "accepted_findings")):
        where = f"accepted_findings[{i}]"
        item = p.mapping(item, where)
        finding = str(p.required(item, "finding", where))
        if finding not in FINDINGS:
            p.fail(f"{where}.finding {finding!r} is not one of the audit's findings: {', '.join(FINDINGS)}")
        expires = p.required(item, "expires", where)
        if isinstance(expires, datetime) or not isinstance(expires, date):
            try:
                expires = date.fromisoformat(str(expires))
            except ValueError:
                p.fail(f"{where}.expires {str(expires)!r} is not a date YYYY-MM-DD; write when the finding must be "
                       "looked at again")
        accepted.append(AcceptedFinding(p.identifier(item, "table", where), p.identifier(item, "column", where),
                                        finding, p.text(item, "reason", where), expires))
    name = p.identifier(doc, "name", "the document")
    return Spec(name=name, schema=schema, parent=parent, migration=migration,
                foreign_keys=tuple(fks), exceptions=tuple(exceptions), accepted=tuple(accepted), path=source)


RISING_KEYS = ("attempts", "lock_timeout", "lock_timeout_max", "backoff", "backoff_max")
RETRY_KEYS = ("schedule", "on_exhaustion") + RISING_KEYS
EXHAUSTION = ("fail", "wait")


def parse_retries(raw, where: str, parser: "_Parser | None" = None) -> LockRetries:
    """The lock-retry schedule from the spec (or an environment's override). Either listed step by
    step, ``schedule: [[100ms, 50ms], [100ms, 1s], [150ms, 2s]]`` (lock_timeout, then the pause after
    a failed attempt), or generated, ``{attempts: 20, lock_timeout: 100ms, lock_timeout_max: 150ms,
    backoff: 50ms, backoff_max: 10s}`` (see :meth:`LockRetries.rising`; absent keys keep these
    defaults, so specs that only set attempts/backoff/backoff_max still load)."""
    p = parser or _Parser(where, within_spec=False)  # an environment's override: the message names it
    if raw is None:
        return DEFAULT_LOCK_RETRIES
    raw = p.mapping(raw, where)
    unknown = [k for k in raw if k not in RETRY_KEYS]
    if unknown:
        p.fail(f"{where} has an unknown key {str(unknown[0])!r}; known: {', '.join(RETRY_KEYS)}")
    on_exhaustion = str(raw.get("on_exhaustion", "fail"))
    if on_exhaustion not in EXHAUSTION:
        p.fail(f"{where}.on_exhaustion {on_exhaustion!r} must be fail (give up, writers' wait stays bounded) or "
               "wait (one last attempt without lock_timeout)")
    if "schedule" in raw:
        both = [k for k in RISING_KEYS if k in raw]
        if both:
            p.fail(f"{where} has both 'schedule' and {both[0]!r}; list the steps in schedule or generate them with "
                   f"{', '.join(RISING_KEYS)}, not both")
        steps = p.sequence(raw["schedule"], f"{where}.schedule")
        if not steps or len(steps) > 1000:
            p.fail(f"{where}.schedule must list 1 to 1000 steps [lock_timeout, pause], e.g. [[100ms, 50ms], [150ms, 1s]]")
        parsed = []
        for i, step in enumerate(steps):
            if not isinstance(step, list) or len(step) != 2:
                p.fail(f"{where}.schedule[{i}] {step!r} must be a pair [lock_timeout, pause], e.g. [100ms, 1s]")
            timeout, pause = (p.milliseconds(v, f"{where}.schedule[{i}]") for v in step)
            if timeout == 0:
                p.fail(f"{where}.schedule[{i}] has lock_timeout 0, which waits forever; give it a duration like 100ms")
            parsed.append((timeout, pause))
        return LockRetries(tuple(parsed), on_exhaustion)
    default = dict(zip(RISING_KEYS, (20, "100ms", "150ms", "50ms", "10s")))
    attempts = raw.get("attempts", default["attempts"])
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 1000:
        p.fail(f"{where}.attempts {attempts!r} must be a whole number from 1 to 1000")
    values = {k: p.duration(raw, k, where, default[k]) for k in RISING_KEYS[1:]}
    if duration_seconds(values["lock_timeout"]) == 0:
        p.fail(f"{where}.lock_timeout 0 waits forever; give it a duration like 100ms")
    if duration_seconds(values["lock_timeout_max"]) < duration_seconds(values["lock_timeout"]):
        p.fail(f"{where}.lock_timeout_max {values['lock_timeout_max']} is shorter than lock_timeout "
               f"{values['lock_timeout']}; raise it (the timeout rises per attempt up to it)")
    return LockRetries.rising(attempts, on_exhaustion=on_exhaustion, **values)


def duration_seconds(value: str) -> float:
    """'500ms', '3s', '15min', '1h' in seconds."""
    number, unit = re.fullmatch(r"([0-9]+)(ms|s|min|h)", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "min": 60, "h": 3600}[unit]


class _Parser:
    def __init__(self, source: str, within_spec: bool = True):
        self.source, self.within_spec = source, within_spec

    def fail(self, message: str):
        raise SpecError(f"spec {self.source}: {message}" if self.within_spec else message, path=self.source)

    def mapping(self, value, where):
        if not isinstance(value, dict):
            self.fail(f"{where} must be a mapping of keys to values, not {type(value).__name__}")
        return value

    def sequence(self, value, where):
        if not isinstance(value, list):
            self.fail(f"{where} must be a list, not {type(value).__name__}")
        return value

    def required(self, mapping, key, where):
        if mapping.get(key) in (None, ""):
            self.fail(f"{where} has no {key!r}; add it")
        return mapping[key]

    def identifier(self, mapping, key, where, default=None):
        value = mapping.get(key, default)
        if value in (None, ""):
            self.fail(f"{where} has no {key!r}; add it")
        value = str(value)
        if not IDENTIFIER.fullmatch(value) or len(value) > MAX_IDENTIFIER:
            self.fail(f"{where}.{key} {value!r} is not a plain PostgreSQL identifier "
                      f"(lower-case letters, digits and _, at most {MAX_IDENTIFIER} characters)")
        return value

    def payload(self, raw, where) -> Payload:
        """``{column, key: k}`` (one key, as specs have always written it) or ``{column, keys: [k, ...]}``."""
        raw = self.mapping(raw, where)
        column = self.identifier(raw, "column", where)
        if "key" in raw and "keys" in raw:
            self.fail(f"{where} has both 'key' and 'keys'; write keys: [a, b] for several keys")
        if raw.get("keys") is not None:
            keys = self.sequence(raw["keys"], f"{where}.keys")
            if not keys:
                self.fail(f"{where}.keys is empty; list at least one key that holds an organization id "
                          "(e.g. keys: [organization_id])")
            named = [(f"{where}.keys[{i}]", key) for i, key in enumerate(keys)]
        elif raw.get("key") not in (None, ""):
            named = [(f"{where}.key", raw["key"])]
        else:
            self.fail(f"{where} has no 'keys'; add keys: [organization_id] (or key: organization_id)")
        for place, key in named:
            if not isinstance(key, str) or not JSON_KEY.fullmatch(key):
                self.fail(f"{place} {key!r} is not a plain JSON key (letters, digits and _, not starting with a "
                          "digit; one level nested as parent.child)")
        keys = [key for _, key in named]
        for key in keys:
            if keys.count(key) > 1:
                self.fail(f"{where}.keys lists {key!r} twice; list each key once")
        return Payload(column, tuple(keys))

    def text(self, mapping, key, where):
        value = self.required(mapping, key, where)
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{where}.{key} must be a non-empty text")
        return " ".join(value.split())

    def count(self, mapping, key, where, default, most):
        value = mapping.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
            self.fail(f"{where}.{key} {value!r} must be a whole number from 0 to {most}")
        return value

    def milliseconds(self, value, where) -> int:
        if not isinstance(value, str) or not DURATION.fullmatch(value):
            self.fail(f"{where} {value!r} must be a duration like 100ms, 2s or 1min")
        return round(duration_seconds(value) * 1000)

    def duration(self, mapping, key, where, default):
        value = str(mapping.get(key, default))
        if not DURATION.fullmatch(value):
            self.fail(f"{where}.{key} {value!r} must be a PostgreSQL duration like 3s, 500ms or 15min")
        return value


DEFAULT_LOCK_RETRIES = LockRetries.rising()  # 100 ms rising to 150 ms over 20 attempts; pauses 50 ms doubling to 10 s
