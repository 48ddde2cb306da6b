"""Run phases of the runbook with papermill, in order, keeping every executed notebook as evidence.

``run_phases`` reads like a recipe: check everything first (environment, URL variable, database,
spec, phase names), open the run folder, then execute each phase notebook into it and stop at the
first failure. ``manifest.json`` is rewritten after every step, so a run killed midway still says
how far it got.

SIGINT (Ctrl-C) or SIGTERM while phases run is forwarded to the running kernel as an interrupt (the
kernel runs in a session of its own and gets neither): the running cell stops (apply cancels its
statement on the server, :mod:`fkrunbook.executor`), no later cell or phase runs, and the run is
sealed as ``cancelled`` with the partial notebook. A third signal stops the runner at once (the
kernel is shut down); the run is sealed as cancelled all the same. After a cancelled phase that
changes the database the runner checks the server itself: a statement still running under the
change's advisory lock (a kernel that could not stop it) is cancelled there.
"""
from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import __version__
from .catalog import check_spec
from .config import CONFIG_FILE, Config
from .database import connect
from .environment import get_environment
from .errors import EnvironmentConfigError, PhaseFailedError, PhaseUnknownError, RunCancelledError
from .evidence import git_commit, open_run_folder, plan_hash_of, seal_run, write_manifest
from .ledger import Ledger
from .phase import PHASES, RUNNER_ENV, check_parameters, new_run_id
from .spec import load_spec
from .store import publish_sealed, resolve_store


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


def run_phases(config: Config, env: str, phases: list[str] | None = None, *, spec: str | Path | None = None,
               parameters: dict | None = None, run_id: str | None = None, cell_timeout: int | None = 1800,
               on_event: Callable[[str, dict], None] | None = None) -> RunResult:
    """Execute the phases of the project ``config`` against ``env``; raise :class:`PhaseFailedError`
    after writing the evidence of the first phase that fails. Nothing runs when a preflight check
    fails. ``parameters`` are phase parameters by name (see :data:`fkrunbook.phase.REGISTRY`)."""

    notify = on_event or (lambda kind, info: None)
    # Preflight: every error a person is likely to make surfaces here, before any notebook runs.
    selected = resolve_phases(phases)
    per_phase = check_parameters(selected, dict(parameters or {}))
    loaded = load_spec(config.resolve_spec(spec))
    environment = get_environment(env, config.environments)
    store = resolve_store(config)  # a misspelt FKRUNBOOK_STORE fails here, before anything runs
    db = connect(environment)
    with db.read_only() as conn:
        check_spec(conn, loaded, environment.name)

    run_id = run_id or new_run_id()
    run_dir = config.evidence / environment.name / run_id
    if run_dir.exists():
        raise EnvironmentConfigError(f"run id {run_id!r} already exists in {config.rel(run_dir.parent)}; evidence is "
                                     "never overwritten: choose another --run-id or leave it out")
    open_run_folder(run_dir)
    # The configuration this run used is kept in the run folder; the notebooks load it from there.
    (run_dir / CONFIG_FILE).write_text(config.to_toml(run_dir))
    base_parameters = {"env": environment.name, "project": config.rel(run_dir / CONFIG_FILE),
                       "spec": config.rel(Path(loaded.path)), "run_id": run_id}
    manifest = {
        "run_id": run_id, "environment": environment.name, "status": "running", "mode": "runner",
        "started_at": _now(), "ended_at": None, "operator": getpass.getuser(), "host": socket.gethostname(),
        "git_commit": git_commit(config.root), "fkrunbook_version": __version__,
        "config": {"file": config.rel(config.path) if config.path else None, "sha256": config.sha256},
        "spec": {"file": config.rel(Path(loaded.path)), "sha256": loaded.sha256}, "plan_hash": None,
        "parameters": {**base_parameters, **{k: v for p in per_phase.values() for k, v in p.items()}},
        "phases": [{"name": name, "status": "pending", "notebook": PHASES[name].notebook} for name in selected],
    }
    write_manifest(run_dir, manifest)
    failure = None
    cancel = _Cancel()
    try:
        cancel.install()
        for index, entry in enumerate(manifest["phases"], start=1):
            name = entry["name"]
            entry.update(status="running", started_at=_now())
            write_manifest(run_dir, manifest)
            notify("phase_started", {"index": index, "total": len(selected), "phase": name})
            started = time.monotonic()
            error = _execute_phase(config, run_dir, name, {**base_parameters, **per_phase[name]},
                                   cell_timeout, lambda cell, total: notify("cell_started", {
                                       "index": index, "total": len(selected), "phase": name, "cell": cell,
                                       "cells": total, "elapsed_s": time.monotonic() - started}), cancel)
            cancelled = bool(cancel.signal and error)  # the phase did not finish: stopped part-way
            if cancelled:
                _mark_cancelled(entry, cancel.signal, db, loaded, config)
            entry.update(status="cancelled" if cancelled else "failed" if error else "succeeded", ended_at=_now(),
                         duration_s=round(time.monotonic() - started, 2), results=_results(run_dir, name))
            if name == "migration_preview" and "apply" in per_phase and not error:
                per_phase["apply"]["previewed"] = entry["results"].get("plan_hash", "")  # apply runs exactly this
            if error:
                entry["error"] = db.redact(error)
            notify("phase_finished", {"index": index, "total": len(selected), "phase": name, **entry})
            if error or cancel.signal:
                for later in manifest["phases"][index:]:
                    later["status"] = "skipped"
                notebook = run_dir / PHASES[name].notebook
                if cancel.signal:
                    left = "; ".join(entry.get("cancelled", {}).get("left", [])) or "nothing half-done"
                    where = (f"during phase {name}; left: {left}; the partial notebook is {config.rel(notebook)}; "
                             "run the phase again to complete it") if cancelled else (
                        f"after phase {name} completed; the later phases were not run")
                    failure = RunCancelledError(f"run cancelled by {cancel.signal} {where}", signal=cancel.signal,
                        phase=name, notebook=str(notebook), run_id=run_id, run_dir=str(run_dir))
                    break
                failure = PhaseFailedError(f"phase {name} failed: {entry['error']}; see {config.rel(notebook)}",
                                           phase=name, notebook=str(notebook), run_id=run_id, run_dir=str(run_dir))
                break
            write_manifest(run_dir, manifest)
    finally:
        cancel.uninstall()
        manifest.update(status="cancelled" if cancel.signal else "failed" if failure else "succeeded", ended_at=_now(),
                        plan_hash=plan_hash_of(manifest))
        for entry in manifest["phases"]:
            if entry["status"] in ("pending", "running") and cancel.signal:  # stopped at once (a third signal)
                if entry["status"] == "running" and not PHASES[entry["name"]].read_only:
                    _mark_cancelled(entry, cancel.signal, db, loaded, config)
                entry["status"] = "cancelled" if entry["status"] == "running" else "skipped"
        if any(p["status"] in ("pending", "running") for p in manifest["phases"]):
            manifest["status"] = "failed"  # interrupted (e.g. Ctrl-C): sealed as it stands
        seal_run(run_dir, manifest, db.secrets, ledger=Ledger(db, environment.name))
    published = publish_sealed(config, environment, run_dir)  # failed runs too; never raises
    if published:
        notify("published", {"ok": published[0], "line": published[1], "store": store.shown})
    if failure:
        raise failure
    return RunResult(run_id, run_dir, manifest)


@dataclass
class DemoResult:
    run: RunResult
    docs_root: Path


def run_demo(config: Config, rows: int | None = None, on_event: Callable[[str, dict], None] | None = None, *,
             migrations_dir: str | Path | None = None, dump: str | Path | None = None,
             spec: str | Path | None = None) -> DemoResult:
    """The whole runbook on a fresh local database with planted orphans: reset the local (embedded)
    database, then run all six phases with the clean-up confirmed and the docs written into a copy
    of the project's docs layout under the local data folder (the project's own docs stay as they
    are). ``on_event("sample_loaded", ...)`` reports the server and the sample before the run.

    With ``migrations_dir`` or ``dump``, the local database is the team's schema instead, built by
    :func:`fkrunbook.rehearsal.reset_local_from` with ``rows`` of sample data for ``spec`` (the
    project's spec by default); ``on_event("team_loaded", {"load": ...})`` reports it, and the
    team's own docs for the spec's tables, index and procedures are what the copy starts from."""
    import shutil

    from .sample import check_rows, ensure_local_database, seed_demo_docs
    from .server import ensure_server

    notify = on_event or (lambda kind, info: None)
    team = migrations_dir is not None or dump is not None
    if team:
        from .rehearsal import reset_local_from
        from .teamdata import TEAM_ROWS, check_team_rows

        rows = TEAM_ROWS if rows is None else rows
        check_team_rows(rows)
        loaded = load_spec(config.resolve_spec(spec))
    else:
        rows = 2000 if rows is None else rows
        check_rows(rows)
    env = get_environment("local", config.environments)
    notify("local_starting", {"data_dir": env.data_dir})
    if team:
        load = reset_local_from(env, migrations_dir, dump, rows=rows, spec=loaded)
        notify("team_loaded", {"load": load})
    else:
        server = ensure_server(env.data_dir, env.bin_dir)
        data = ensure_local_database(server, env.database, rows=rows, reset=True)
        notify("sample_loaded", {"server": server, "database": env.database, "sample": data})
    docs_root = env.data_dir.parent / "demo-docs"  # stands in for the team's repository
    shutil.rmtree(docs_root, ignore_errors=True)
    demo_config = config.with_docs_under(docs_root)
    if team:
        copy_docs(config, demo_config, [loaded.parent.table, *loaded.child_tables])
    else:
        seed_demo_docs(demo_config)
    result = run_phases(demo_config, "local", None, spec=spec, parameters={"confirm": True, "write": True},
                        on_event=on_event)
    return DemoResult(result, docs_root)


def copy_docs(config: Config, into: Config, tables: list[str]) -> list[Path]:
    """The project's own docs that the docs phase reads (the tables' docs, the keyword index, the
    clean-up procedures) copied to the same places in ``into``'s docs layout."""
    import shutil

    docs = config.docs
    found = [docs.table_doc(t) for t in tables] + ([docs.index] if docs.index else []) + docs.procedure_files()
    copied = []
    for path in dict.fromkeys(p for p in found if p.is_file()):
        target = into.docs.root / os.path.relpath(path, docs.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied.append(target)
    return copied


def _mark_cancelled(entry: dict, signal_name: str, db, spec, config: Config) -> None:
    """A phase stopped part-way: for one that changes the database, cancel on the server whatever
    still runs under its advisory lock; record the signal and what was left."""
    stopped = None if PHASES[entry["name"]].read_only else _stop_change(db, spec)
    entry["cancelled"] = {"signal": signal_name, "left": _left_behind(db, spec, config),
                          **({"stopped_by_runner": stopped} if stopped else {})}


class _Cancel:
    """SIGINT and SIGTERM while the phases run: the first (and second) is remembered and forwarded to
    the kernels as an interrupt; the third stops the runner at once (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal: str | None = None
        self.count = 0
        self.kernels: list[int] = []   # pids of the kernels started for this run
        self._previous: dict = {}

    def install(self) -> None:
        if _in_main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        self.signal = self.signal or signal.Signals(signum).name
        self.count += 1
        if self.count >= 3:
            raise KeyboardInterrupt(self.signal)
        for pid in self.kernels:
            try:
                os.killpg(os.getpgid(pid), signal.SIGINT)  # as Jupyter interrupts a kernel
            except (ProcessLookupError, PermissionError):
                pass

    def check(self) -> None:
        """Before each cell: a phase asked to stop runs no further cell."""
        if self.signal:
            raise _Stopped(self.signal)


class _Stopped(Exception):
    """Raised before a cell when the run was asked to stop: papermill keeps the notebook as it stands."""


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _stop_change(db, spec) -> str | None:
    """The runner's own check after a cancelled phase that changes the database: the session holding
    the change's advisory lock (apply's, a clean-up's) must run nothing any more. Normally the kernel
    has stopped its statement and closed it; a kernel that could not (frozen, killed at once) leaves
    a backend still running, which is cancelled here (:func:`fkrunbook.progress.stop_backend`)."""
    from .guard import lock_key
    from .progress import stop_backend

    try:
        with db.connect_raw(autocommit=True) as conn:
            row = conn.execute(
                "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                "AND l.granted AND l.classid::bigint = %s AND l.objid::bigint = %s AND a.state = 'active' "
                "AND a.application_name = 'fkrunbook'", lock_key(spec.name)).fetchone()
        return f"pid {row[0]}: {stop_backend(db, row[0])}" if row else None
    except Exception as err:  # the database may be unreachable: say so, the seal goes on
        return f"not checked ({type(err).__name__})"


def _left_behind(db, spec, config: Config) -> list[str]:
    """What a cancelled phase left of the spec's keys (see :func:`fkrunbook.executor.left_behind`)."""
    from .executor import left_behind
    from .migration import load_migrations

    try:
        spec = load_migrations(spec, config.migrations).spec  # the index names the files give
    except Exception:
        pass
    try:
        return left_behind(db, spec)
    except Exception as err:  # the database may be unreachable: say so, the seal goes on
        return [f"not known ({type(err).__name__}: check with the migration_preview phase)"]


def _execute_phase(config: Config, run_dir: Path, name: str, parameters: dict, cell_timeout: int | None,
                   on_cell: Callable[[int, int], None], cancel: _Cancel | None = None) -> str | None:
    """Run one phase notebook into the run folder; return the error (one line) or None."""
    import papermill

    total = {}
    notebook = PHASES[name].notebook
    cancel = cancel or _Cancel()

    def cell_started(cell, cell_index, **_):
        cancel.check()
        on_cell(cell_index + 1, total.setdefault("cells", _cell_count(run_dir / notebook)))

    # papermill's and nbclient's own messages (a timeout, a dead kernel) go to the run's runner.log,
    # not the operator's terminal: the one-line error says what happened, the log keeps the detail.
    runner_log = logging.FileHandler(run_dir / "runner.log")
    papermill_logger = logging.getLogger("papermill")
    papermill_logger.addHandler(runner_log)
    propagate, papermill_logger.propagate = papermill_logger.propagate, False
    try:
        with open(run_dir / "kernel.log", "ab") as kernel_log:
            papermill.execute_notebook(
                str(config.notebooks / notebook), str(run_dir / notebook), parameters=parameters,
                cwd=str(config.root), kernel_name="python3", progress_bar=False,
                execution_timeout=cell_timeout, report_mode=False,
                kernel_manager_class=_kernel_manager(kernel_log, run_dir, cancel.kernels),
                on_cell_start=cell_started)
    except papermill.PapermillExecutionError as err:
        return f"{err.ename}: {err.evalue}"
    except Exception as err:  # kernel death, cell timeout: the notebook may be partly written
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    finally:
        cancel.kernels.clear()  # ended with the phase: its pid must never be signalled again
        papermill_logger.removeHandler(runner_log)
        papermill_logger.propagate = propagate
        runner_log.close()
    return None


def _cell_count(notebook: Path) -> int:
    try:
        return sum(1 for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")
    except (OSError, ValueError, KeyError):
        return 0


def _kernel_manager(stderr, run_dir: Path, pids: list[int] | None = None):
    """Kernels talk to the runner over local IPC sockets (not unencrypted TCP), and their own
    stderr goes to the run's kernel.log instead of the operator's terminal. The kernel is told
    which run folder the runner keeps (:data:`fkrunbook.phase.RUNNER_ENV`): there ``phase.start``
    leaves the evidence to the runner; anywhere else (JupyterLab) the notebook records its own."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    class RunbookKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        async def start_kernel(self, **kw):
            kw.setdefault("stderr", stderr)
            kw["env"] = {**(kw.get("env") or os.environ), RUNNER_ENV: str(run_dir.resolve())}
            started = await super().start_kernel(**kw)
            if pids is not None and getattr(self.provisioner, "pid", None):
                pids.append(self.provisioner.pid)  # for the runner's signal handler to interrupt it
            return started

    return RunbookKernelManager


def _results(run_dir: Path, phase: str) -> dict:
    path = run_dir / f"{phase}.results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
