"""What a phase notebook starts with: the environment, the database, the checked spec, the run folder.

A notebook's first code cell is ``ctx = phase.start("orphan_check", ...)``; every later cell is one
library call on ``ctx``. ``ctx.record(...)`` writes the phase's key results for the run's manifest,
and the last cell, ``ctx.finish()``, seals them.

Who keeps the evidence depends on who drives the kernel. Under ``fkrunbook run`` (papermill) the
runner names its run folder in :data:`RUNNER_ENV`; it keeps the executed notebook and seals the
run, and ``finish()`` does nothing. Anywhere else (JupyterLab, nbclient) the notebook records
itself: ``start()`` records every executed cell and ``finish()`` writes and seals the phase's
evidence into the walkthrough's run (:mod:`fkrunbook.walkthrough`). Outside the runner, a phase
that changes the database runs only on a local environment; elsewhere ``start()`` refuses, naming
the ``fkrunbook run`` command that does it with sealed evidence.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .catalog import check_spec
from .config import CONFIG_FILE, Config, find_config
from .database import Database, connect
from .environment import get_environment
from .errors import InteractiveChangeRefusedError, PhaseParameterError
from .spec import Spec, load_spec

@dataclass(frozen=True)
class Parameter:
    """A parameter of a phase notebook: its name in the ``parameters`` cell, its type and default,
    and the ``fkrunbook run`` flag that sets it."""
    name: str
    type: type
    default: object
    help: str
    flag: str = ""
    cli: bool = True       # False: set by the runner, never by a flag

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Phase:
    """One phase of the runbook, declared once: the CLI's flags, the parameter checks, the
    summary table and the docs derive from this."""
    name: str
    notebook: str
    title: str
    read_only: bool                       # every database transaction of the phase is READ ONLY
    parameters: tuple[Parameter, ...] = ()
    key_results: tuple[str, ...] = ()     # what the summary shows of its results


# Every notebook's parameters cell starts with these; the runner sets them.
COMMON_PARAMETERS = (
    Parameter("env", str, "local", "environment name from the project's environments file"),
    Parameter("project", str, "", "fkrunbook.toml, or the folder holding it; empty: found from the current folder"),
    Parameter("spec", str, "", "runbook spec (a name or path); empty: the project's first"),
    Parameter("run_id", str, "", "run id; empty: a new one (the CLI passes its own)"),
)

_APPROVE = Parameter("approve", str, "", "the hash shown by the preview (apply) or the dry run (orphan_cleanup); "
                                         "refuses to run a different plan", "--approve")

REGISTRY = (
    Phase("orphan_check", "01_orphan_check.ipynb", "Orphan check", True, (
        Parameter("sample_size", int, 5, "orphan_check: orphan rows shown per column"),
        Parameter("fail_on_orphans", bool, False, "orphan_check: fail when any orphan exists (scheduled detection)"),
    ), ("orphans", "orphan_streams", "warnings")),
    Phase("orphan_cleanup", "02_orphan_cleanup.ipynb", "Orphan clean-up", False, (
        Parameter("confirm", bool, False, "orphan_cleanup: really delete the orphans (copies kept)"),
        _APPROVE,
    ), ("rows", "confirmed", "cleanup_hash")),
    Phase("migration_preview", "03_migration_preview.ipynb", "Migration preview", True, (),
          ("statements_to_run", "statements_skipped", "plan_hash", "estimated_s", "statement_timeout_warnings")),
    Phase("apply", "04_apply.ipynb", "Apply", False, (
        _APPROVE,
        Parameter("previewed", str, "", "apply: the plan hash this run's preview showed (the runner sets it); "
                                        "apply refuses a plan that differs", cli=False),
    ), ("statements_applied", "lock_retries", "plan_hash")),
    Phase("cascade_validation", "05_cascade_validation.ipynb", "Cascade validation", False, (
        Parameter("blast_org", str, "", "cascade_validation: organization id or slug for the blast radius"),
    ), ("passed", "blast_radius")),
    Phase("docs_update", "06_docs_update.ipynb", "Docs update", True, (
        Parameter("write", bool, False, "docs_update: write the changed docs instead of only showing the diff",
                  "--write-docs"),
    ), ("files_changed", "written", "stale_lines")),
)

# The runner sets this, for the kernels it starts, to the run folder it keeps: a kernel whose
# run folder it names is driven by the runner; any other kernel records its own evidence.
RUNNER_ENV = "FKRUNBOOK_RUN_DIR"

# Phase name -> its declaration, in the order a full run takes them.
PHASES = {phase.name: phase for phase in REGISTRY}

# Phases that only look: their every database transaction is READ ONLY.
READ_ONLY_PHASES = frozenset(p.name for p in REGISTRY if p.read_only)


def phase_parameters(cli_only: bool = False) -> dict[str, tuple[Parameter, list[str]]]:
    """Every phase parameter once, with the phases that take it (``approve`` is shared)."""
    found: dict[str, tuple[Parameter, list[str]]] = {}
    for phase in REGISTRY:
        for parameter in phase.parameters:
            if cli_only and not parameter.cli:
                continue
            found.setdefault(parameter.name, (parameter, []))[1].append(phase.name)
    return found


def check_parameters(phases: list[str], parameters: dict) -> dict[str, dict]:
    """The parameters each selected phase receives; an unknown name, a wrong type, or a value
    for a phase the run does not include is an error naming the flag and the fix."""
    known = phase_parameters()
    for name, value in parameters.items():
        if name not in known:
            raise PhaseParameterError(f"no phase takes a parameter {name!r}; known: {', '.join(known)}")
        parameter, takers = known[name]
        if not isinstance(value, parameter.type) or (parameter.type is int and isinstance(value, bool)):
            raise PhaseParameterError(f"{parameter.option} must be {parameter.type.__name__}, not "
                                      f"{type(value).__name__}")
        if value != parameter.default and not set(takers) & set(phases):
            takers = sorted(takers)
            raise PhaseParameterError(f"{parameter.option} applies to the {' or '.join(takers)} phase, which this run "
                                      f"does not include; add --phase {takers[0]} or drop {parameter.option}")
    return {name: {p.name: parameters[p.name] for p in PHASES[name].parameters if p.name in parameters}
            for name in phases}


def runner_command(phase: str, env: str, values: dict, spec: str = "", project: str = "") -> str:
    """The ``fkrunbook run`` command that runs ``phase`` with the notebook's parameter ``values``
    (flags from the registry; defaults left out; runner-only parameters never shown)."""
    parts = ["fkrunbook", "run", "--env", env, "--phase", phase]
    for parameter in PHASES[phase].parameters:
        value = values.get(parameter.name, parameter.default)
        if not parameter.cli or value == parameter.default:
            continue
        parts += [parameter.option] if parameter.type is bool else [parameter.option, str(value)]
    parts += ["--spec", spec] if spec else []
    parts += ["--project", project] if project else []
    return " ".join(shlex.quote(part) for part in parts)


def notebook_parameters(phase: str) -> dict:
    """The phase's parameters as the notebook's ``parameters`` cell set them (the kernel's
    globals), each phase parameter's default where the notebook has none."""
    shell = _shell()
    namespace = shell.user_ns if shell is not None else {}
    return {p.name: namespace.get(p.name, p.default) for p in PHASES[phase].parameters}


def driven_by_runner(run_dir: Path) -> bool:
    """Whether ``fkrunbook run`` started this kernel for ``run_dir`` (see :data:`RUNNER_ENV`)."""
    given = os.environ.get(RUNNER_ENV)
    return bool(given) and Path(given).resolve() == Path(run_dir).resolve()


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class PhaseContext:
    phase: str
    config: Config
    db: Database
    spec: Spec
    run_id: str
    run_dir: Path
    spec_check: pd.DataFrame
    results: dict = field(default_factory=dict)
    recording: object = None   # interactive: the walkthrough's recording (fkrunbook.walkthrough.PhaseRecording)

    @property
    def mode(self) -> str:
        return "runner" if self.recording is None else "interactive"

    @property
    def migrations_dir(self) -> Path:
        return self.config.migrations

    @property
    def docs(self):
        return self.config.docs

    @property
    def overview(self) -> pd.DataFrame:
        frame = self.db.describe()
        extra = pd.DataFrame([
            ("phase", self.phase), ("run id", self.run_id), ("project", str(self.config.root.name)),
            ("supabase migrations", self.config.rel(self.config.migrations)),
            ("spec", self.config.rel(Path(self.spec.path))), ("spec sha256", self.spec.sha256[:16]),
            ("transactions", "READ ONLY" if self.db.read_only_session else "read-write"),
        ], columns=["property", "value"])
        return pd.concat([frame, extra.set_index("property")])

    @property
    def pg_version(self) -> str:
        """The server's major version, e.g. '15', for squawk."""
        return str(self.db.server_version_num() // 10000)

    def record(self, **results) -> pd.DataFrame:
        """Write this phase's key results to ``<run_dir>/<phase>.results.json`` and show them."""
        if self.recording is not None and self.recording.finished:
            from .errors import EvidenceUnwritableError

            raise EvidenceUnwritableError(f"this {self.phase} run is sealed already; to record another, run the "
                                          "notebook again from the top")
        self.results.update(results)
        path = self.run_dir / f"{self.phase}.results.json"
        path.write_text(json.dumps(self.results, indent=2, sort_keys=True, default=str) + "\n")
        return pd.DataFrame([(k, json.dumps(v, default=str)) for k, v in self.results.items()],
                            columns=["result", "value"]).set_index("result")

    @property
    def verdict(self):
        """GO, NO-GO or DONE, and why, from the results recorded so far (:func:`fkrunbook.display.verdict`)."""
        from .display import verdict

        return verdict(self.phase, self.results)

    def finish(self):
        """The notebook's last cell: the phase's verdict, in one bold line, and where its evidence is.
        Under the runner the evidence is the runner's (it keeps this notebook and seals the run).
        Interactively: the cells run so far become this phase's executed notebook, written with
        its report and results into the walkthrough's run folder and sealed."""
        from .display import Closing

        if self.recording is None:
            return Closing(self.verdict, f"Evidence: kept by `fkrunbook run` in `{self.config.rel(self.run_dir)}` and "
                                         "sealed when the run ends.")
        return self.recording.finish(headline=self.verdict)


def start(phase: str, env: str, project: str = "", spec: str = "", run_id: str = "") -> PhaseContext:
    """Load the project configuration and check everything a phase needs, before it runs anything.

    ``project`` is the fkrunbook.toml (or its folder; empty: found from the current folder up);
    ``spec`` a spec listed there (by name) or a path relative to the project root (empty: the
    first listed). Fails with one clear error for an unknown environment, an unset URL variable,
    an unreachable database, a missing or malformed spec, or a spec naming what the database lacks.
    Outside the runner, a phase that changes the database is refused on any environment but a
    local one, before anything connects; otherwise the phase's cells are recorded from here on.
    """
    _show_refusals_in_one_line()
    config = find_config(project or None)
    spec_path = config.resolve_spec(spec, base=config.root)
    loaded = load_spec(spec_path)
    environment = get_environment(env, config.environments)
    run_id = run_id or new_run_id()
    run_dir = config.evidence / environment.name / run_id
    interactive = not driven_by_runner(run_dir)
    values = notebook_parameters(phase)
    if interactive:
        _refuse_change_outside_local(phase, environment, config, spec_path, values)
    db = connect(environment, read_only=PHASES[phase].read_only)
    with db.read_only() as conn:
        spec_check = check_spec(conn, loaded, environment.name)
    if not interactive:
        run_dir.mkdir(parents=True, exist_ok=True)
    _connect_sql_magic(db)
    _show_progress_logs()
    ctx = PhaseContext(phase, config, db, loaded, run_id, run_dir, spec_check)
    if interactive:
        from .walkthrough import record_phase

        base = {"env": environment.name, "project": project, "spec": config.rel(Path(loaded.path)), "run_id": run_id}
        record_phase(ctx, {**base, **values})  # ctx.run_dir becomes the phase's folder until finish()
    return ctx


def _refuse_change_outside_local(phase: str, environment, config: Config, spec_path: Path, values: dict) -> None:
    """A notebook outside the runner changes only a local database (kind ``embedded``, not
    protected): a remote one changes only through ``fkrunbook run``, which seals the evidence."""
    if PHASES[phase].read_only or (environment.kind == "embedded" and not environment.protected):
        return
    spec = "" if Path(spec_path).resolve() == config.spec.resolve() else config.rel(Path(spec_path))
    here = Path.cwd().resolve()
    found = next((folder / CONFIG_FILE for folder in (here, *here.parents) if (folder / CONFIG_FILE).is_file()), None)
    project = "" if found and config.path and found.resolve() == config.path.resolve() else str(config.path or config.root)
    command = runner_command(phase, environment.name, values, spec, project)
    raise InteractiveChangeRefusedError(
        f"{phase} changes the database, and a notebook changes only a local one; nothing was changed. On "
        f"{environment.name!r} run it through the runner, which seals its evidence: {command}",
        phase=phase, environment=environment.name, command=command)


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    return get_ipython()


def _show_refusals_in_one_line() -> None:
    """fkrunbook's own errors show as one line in notebook terms, the traceback folded away
    (:func:`fkrunbook.display.handle_refusal`); the cell still fails."""
    from .display import register_refusals

    register_refusals(_shell())


def _show_progress_logs() -> None:
    """The library's progress lines (each lock attempt, each file recorded) go to the cell's
    stdout: a normal log is not an error, and a notebook shows stderr in red."""
    logger = logging.getLogger("fkrunbook")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _connect_sql_magic(db: Database) -> None:
    """Give the notebook's ``%sql`` a READ ONLY connection to the same database, without the URL
    ever being written in the notebook or shown by ipython-sql (which only sees a creator)."""
    shell = _shell()
    if shell is None:
        return
    if "sql" not in shell.extension_manager.loaded:  # loaded once per kernel: no %reload_ext notice
        shell.run_line_magic("load_ext", "sql")
    shell.user_ns["_fkrunbook_sql_creator"] = lambda: db.connect_raw(read_only=True)
    shell.run_line_magic("config", "SqlMagic.displaycon = False")
    shell.run_line_magic("config", "SqlMagic.feedback = False")
    shell.run_line_magic("sql", f"postgresql+psycopg:///{db.env.name} --creator _fkrunbook_sql_creator")


def show(frames: dict[str, pd.DataFrame], empty: str = "none"):
    """Several tables, each under its own caption, every row up to the display limit with the
    total (:func:`fkrunbook.display.tables`)."""
    from .display import tables

    return tables(frames, empty=empty)
