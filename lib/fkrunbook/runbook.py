"""Run phases of the runbook with papermill, in order, keeping every executed notebook as evidence.

``run_phases`` reads like a recipe: check everything first (environment, URL variable, database,
spec, phase names), open the run folder, then execute each phase notebook into it and stop at the
first failure. ``manifest.json`` is rewritten after every step, so a run killed midway still says
how far it got.
"""
from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import __version__
from .catalog import check_spec
from .database import connect
from .environment import get_environment
from .errors import EnvironmentConfigError, PhaseFailedError, PhaseUnknownError
from .evidence import git_commit, open_run_folder, seal_run, write_manifest
from .phase import PHASES, new_run_id
from .spec import load_spec

SPEC_FILE = "runbooks/add_missing_org_fk_constraints.yaml"
ENVIRONMENTS_FILE = "runbooks/environments.yaml"


@dataclass(frozen=True)
class Project:
    """Where the runbook's files are: notebooks/, runbooks/, supabase/migrations/, audit/."""
    root: Path

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def spec(self) -> Path:
        return self.root / SPEC_FILE

    @property
    def environments(self) -> Path:
        return self.root / ENVIRONMENTS_FILE

    @property
    def migrations(self) -> Path:
        return self.root / "supabase" / "migrations"

    @property
    def audit(self) -> Path:
        return self.root / "audit"


def find_project(start: str | Path | None = None) -> Project:
    """The nearest folder at or above ``start`` holding notebooks/ and runbooks/environments.yaml."""
    here = Path(start or os.getcwd()).resolve()
    for folder in [here, *here.parents]:
        if (folder / ENVIRONMENTS_FILE).is_file() and (folder / "notebooks").is_dir():
            return Project(folder)
    raise EnvironmentConfigError(f"no fkrunbook project at or above {here} (a folder with notebooks/ and "
                                 f"{ENVIRONMENTS_FILE}); run from the project folder or pass --project")


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    manifest: dict

    @property
    def succeeded(self) -> bool:
        return self.manifest["status"] == "succeeded"


def resolve_phases(names: list[str] | None) -> list[str]:
    if not names:
        return list(PHASES)
    for name in names:
        if name not in PHASES:
            raise PhaseUnknownError(name, list(PHASES))
    return [p for p in PHASES if p in names]  # always in runbook order


def run_phases(project: Project, env: str, phases: list[str] | None = None, *, spec_path: str | Path | None = None,
               environments_path: str | Path | None = None, audit_dir: str | Path | None = None,
               parameters: dict | None = None, run_id: str | None = None, cell_timeout: int | None = 1800,
               on_event: Callable[[str, dict], None] | None = None) -> RunResult:
    """Execute the phases against ``env``; raise :class:`PhaseFailedError` after writing the evidence
    of the first phase that fails. Nothing runs when a preflight check fails."""

    notify = on_event or (lambda kind, info: None)
    # Preflight: every error a person is likely to make surfaces here, before any notebook runs.
    selected = resolve_phases(phases)
    spec = load_spec(spec_path or project.spec)
    environment = get_environment(env, environments_path or project.environments)
    spec_path = Path(spec.path).resolve()
    environments_path = Path(environments_path or project.environments).resolve()
    audit_dir = Path(audit_dir or project.audit).resolve()
    db = connect(environment)
    with db.read_only() as conn:
        check_spec(conn, spec, environment.name)

    if parameters and parameters.get("docs_dir") and not Path(parameters["docs_dir"]).is_dir():
        raise EnvironmentConfigError(f"docs folder {str(parameters['docs_dir'])!r} does not exist; pass --docs-dir with "
                                     "the team's docs folder (it must exist)")
    run_id = run_id or new_run_id()
    run_dir = audit_dir / environment.name / run_id
    if run_dir.exists():
        raise EnvironmentConfigError(f"run id {run_id!r} already exists in {audit_dir / environment.name}; evidence is "
                                     "never overwritten: choose another --run-id or leave it out")
    open_run_folder(run_dir)
    rel = lambda p: os.path.relpath(p, project.notebooks)  # noqa: E731 - paths as the notebooks see them
    parameters = dict(parameters or {})
    if parameters.get("docs_dir"):
        parameters["docs_dir"] = rel(Path(parameters["docs_dir"]).resolve())
    base_parameters = {"env": environment.name, "run_id": run_id, "spec_path": rel(spec_path),
                       "environments_path": rel(environments_path), "audit_dir": rel(audit_dir),
                       "migrations_dir": rel(project.migrations)}
    manifest = {
        "run_id": run_id, "environment": environment.name, "status": "running",
        "started_at": _now(), "ended_at": None, "operator": getpass.getuser(), "host": socket.gethostname(),
        "git_commit": git_commit(project.root), "fkrunbook_version": __version__,
        "spec": {"file": spec_path.name, "sha256": spec.sha256}, "plan_hash": None,
        "parameters": {**base_parameters, **parameters},
        "phases": [{"name": name, "status": "pending", "notebook": PHASES[name]} for name in selected],
    }
    write_manifest(run_dir, manifest)
    failure = None
    try:
        for index, entry in enumerate(manifest["phases"], start=1):
            name = entry["name"]
            entry.update(status="running", started_at=_now())
            write_manifest(run_dir, manifest)
            notify("phase_started", {"index": index, "total": len(selected), "phase": name})
            started = time.monotonic()
            error = _execute_phase(project, run_dir, name, {**base_parameters, **_phase_parameters(name, parameters)},
                                   cell_timeout, lambda cell, total: notify("cell_started", {
                                       "index": index, "total": len(selected), "phase": name, "cell": cell,
                                       "cells": total, "elapsed_s": time.monotonic() - started}))
            entry.update(status="failed" if error else "succeeded", ended_at=_now(),
                         duration_s=round(time.monotonic() - started, 2), results=_results(run_dir, name))
            if error:
                entry["error"] = db.redact(error)
            notify("phase_finished", {"index": index, "total": len(selected), "phase": name, **entry})
            if error:
                for later in manifest["phases"][index:]:
                    later["status"] = "skipped"
                failure = PhaseFailedError(f"phase {name} failed: {entry['error']}; see {run_dir / PHASES[name]}",
                                           phase=name, notebook=str(run_dir / PHASES[name]), run_id=run_id)
                break
            write_manifest(run_dir, manifest)
    finally:
        manifest.update(status="failed" if failure else "succeeded", ended_at=_now(), plan_hash=_plan_hash(manifest))
        if any(p["status"] in ("pending", "running") for p in manifest["phases"]):
            manifest["status"] = "failed"  # interrupted (e.g. Ctrl-C): sealed as it stands
        seal_run(run_dir, manifest, db.secrets)
    if failure:
        raise failure
    return RunResult(run_id, run_dir, manifest)


def _execute_phase(project: Project, run_dir: Path, name: str, parameters: dict, cell_timeout: int | None,
                   on_cell: Callable[[int, int], None]) -> str | None:
    """Run one phase notebook into the run folder; return the error (one line) or None."""
    import papermill

    total = {}

    def cell_started(cell, cell_index, **_):
        on_cell(cell_index + 1, total.setdefault("cells", _cell_count(run_dir / PHASES[name])))

    # papermill's and nbclient's own messages (a timeout, a dead kernel) go to the run's runner.log,
    # not the operator's terminal: the one-line error says what happened, the log keeps the detail.
    runner_log = logging.FileHandler(run_dir / "runner.log")
    papermill_logger = logging.getLogger("papermill")
    papermill_logger.addHandler(runner_log)
    propagate, papermill_logger.propagate = papermill_logger.propagate, False
    try:
        with open(run_dir / "kernel.log", "ab") as kernel_log:
            papermill.execute_notebook(
                str(project.notebooks / PHASES[name]), str(run_dir / PHASES[name]), parameters=parameters,
                cwd=str(project.notebooks), kernel_name="python3", progress_bar=False,
                execution_timeout=cell_timeout, report_mode=False,
                kernel_manager_class=_kernel_manager(kernel_log), on_cell_start=cell_started)
    except papermill.PapermillExecutionError as err:
        return f"{err.ename}: {err.evalue}"
    except Exception as err:  # kernel death, cell timeout: the notebook may be partly written
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    finally:
        papermill_logger.removeHandler(runner_log)
        papermill_logger.propagate = propagate
        runner_log.close()
    return None


def _cell_count(notebook: Path) -> int:
    try:
        return sum(1 for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")
    except (OSError, ValueError, KeyError):
        return 0


# Which extra parameters each notebook declares (so papermill does not warn about unknown ones).
PHASE_PARAMETERS = {
    "orphan_check": ("sample_size", "fail_on_orphans"),
    "orphan_cleanup": ("confirm", "approve"),
    "apply": ("approve",),
    "cascade_validation": ("blast_org",),
    "docs_update": ("docs_dir", "write"),
}


def _phase_parameters(name: str, parameters: dict) -> dict:
    return {k: v for k, v in parameters.items() if k in PHASE_PARAMETERS.get(name, ())}


def _kernel_manager(stderr):
    """Kernels talk to the runner over local IPC sockets (not unencrypted TCP), and their own
    stderr goes to the run's kernel.log instead of the operator's terminal."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    class RunbookKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        async def start_kernel(self, **kw):
            kw.setdefault("stderr", stderr)
            return await super().start_kernel(**kw)

    return RunbookKernelManager


def _plan_hash(manifest: dict) -> str | None:
    """The hash of the plan applied in this run, else of the plan previewed."""
    found = {p["name"]: (p.get("results") or {}).get("plan_hash") for p in manifest["phases"]}
    return found.get("apply") or found.get("migration_preview")


def _results(run_dir: Path, phase: str) -> dict:
    path = run_dir / f"{phase}.results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
