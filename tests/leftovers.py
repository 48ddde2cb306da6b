"""Nothing left running: a pytest plugin (loaded by tests/conftest.py) that fails the run when a
PostgreSQL server or a notebook kernel started by the tests is still alive when the session ends.

Every process the tests start inherits ``FKRUNBOOK_TEST_RUN``, an id made fresh for each run (the
xdist workers share their controller's): postgres started through pg_ctl, kernels started by
papermill, nbclient or JupyterLab, JupyterLab itself (``fkrunbook lab``), the ``fkrunbook``
processes of CLI tests. A PostgreSQL server is also known
by its data folder under the run's base temp folder. The check runs once, in the controller (or
the only process), after every worker has torn down its fixtures; whatever it finds, it stops,
lists and turns into a failed run.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import psutil
import pytest

MARKER = "FKRUNBOOK_TEST_RUN"
GRACE_S = 3  # a kernel or a server being shut down gets this long to go, then it is stopped
LEFTOVERS = pytest.StashKey[list]()


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # a worker keeps the id it inherited from its controller
        os.environ[MARKER] = uuid.uuid4().hex


def _data_dir(proc: psutil.Process) -> Path | None:
    """A postmaster's data folder (``-D``), or None for anything else."""
    cmd = proc.cmdline()
    if not cmd or os.path.basename(cmd[0]) != "postgres" or "-D" not in cmd[:-1]:
        return None
    return Path(cmd[cmd.index("-D") + 1])


def _kind(proc: psutil.Process) -> str | None:
    cmd = proc.cmdline()
    if _data_dir(proc):
        return "postgres"
    if any("ipykernel" in part for part in cmd):
        return "kernel"
    if any(os.path.basename(part) in ("jupyterlab", "jupyter-lab") for part in cmd[:3]):
        return "jupyter"
    if any(os.path.basename(part) == "fkrunbook" for part in cmd[:2]):
        return "fkrunbook"
    return None


def _started_by_this_run(proc: psutil.Process, marker: str, basetemp: Path | None) -> bool:
    data_dir = _data_dir(proc)
    if data_dir and basetemp and data_dir.resolve().is_relative_to(basetemp):
        return True
    try:
        return proc.environ().get(MARKER) == marker
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return False


def find_leftovers(marker: str, basetemp: Path | None) -> list[psutil.Process]:
    """Postmasters, kernels and fkrunbook processes this run started that are still alive."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if _kind(proc) and _started_by_this_run(proc, marker, basetemp):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def describe(proc: psutil.Process) -> str:
    try:
        kind = _kind(proc)
        if kind == "postgres":
            return f"postgres (pid {proc.pid}, data folder {_data_dir(proc)})"
        return f"{kind} (pid {proc.pid}: {' '.join(proc.cmdline())[:160]})"
    except psutil.Error:
        return f"process {proc.pid}"


def stop(procs: list[psutil.Process]) -> None:
    """A fast shutdown for a server (SIGINT), SIGTERM for the rest; SIGKILL for what is left after the grace."""
    for proc in procs:
        try:
            proc.send_signal(2 if _kind(proc) == "postgres" else 15)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)


def _basetemp(config) -> Path | None:
    factory = getattr(config, "_tmp_path_factory", None)
    return factory.getbasetemp().resolve() if factory else None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if hasattr(config, "workerinput") or MARKER not in os.environ:
        return
    marker, basetemp = os.environ[MARKER], _basetemp(config)
    deadline = time.monotonic() + GRACE_S
    leftovers = find_leftovers(marker, basetemp)
    while leftovers and time.monotonic() < deadline:  # give shutdowns in flight time to finish
        time.sleep(0.5)
        leftovers = [p for p in find_leftovers(marker, basetemp) if p.is_running()]
    if not leftovers:
        return
    config.stash[LEFTOVERS] = [describe(p) for p in leftovers]
    stop(leftovers)
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):  # keep 2 (interrupted) etc.
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    found = config.stash.get(LEFTOVERS, [])
    if found:
        terminalreporter.section("left running by the tests", sep="=", red=True, bold=True)
        for line in found:
            terminalreporter.line(f"still running at the end of the session, now stopped: {line}", red=True)
        terminalreporter.line("a test or fixture started these and did not stop them at teardown: the run fails",
                              red=True)
