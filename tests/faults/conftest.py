"""Helpers for the fault-injection suite: real processes, real signals, a real server."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest

FKRUNBOOK = str(Path(sys.executable).parent / "fkrunbook")
_STARTED: list[subprocess.Popen] = []


def start_cli(project, database, *args):
    """`fkrunbook ...` in the background, as an operator would start it (stopped at the test's
    teardown, with its kernel, if the test did not see it end)."""
    env = {**os.environ, "STAGING_DATABASE_URL": database.url}
    with open(project / "cli.log", "w") as log:
        proc = subprocess.Popen([FKRUNBOOK, *args], cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    _STARTED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _background_cli_stopped():
    """A test that fails half-way (a statement never seen, a wait that timed out) leaves no runbook running."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            kill_everything(proc)


def wait_for_statement(url, prefix, timeout=90):
    """Block until a session of fkrunbook runs a statement starting with ``prefix``."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            found = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fkrunbook' "
                                 "AND state = 'active' AND query LIKE %s", (prefix + "%",)).fetchone()[0]
            if found:
                return
            time.sleep(0.05)
    pytest.fail(f"no fkrunbook session ran {prefix!r} within {timeout} s")


def kill_everything(proc):
    """SIGKILL the runbook: the CLI and every process it started (the notebook kernel included)."""
    family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    for pid in family:
        try:
            psutil.Process(pid).wait(timeout=30)
        except psutil.NoSuchProcess:
            pass


def kernels_of(proc):
    return [c for c in psutil.Process(proc.pid).children(recursive=True)
            if any("ipykernel" in part for part in c.cmdline())]


def hold_lock(url, table, mode):
    """Another session with an open transaction holding ``mode`` on ``table``."""
    conn = psycopg.connect(url, application_name="fault-blocker")
    conn.execute(f"LOCK TABLE {table} IN {mode} MODE")
    return conn


def wait_until_gone(url, timeout=30):
    """Until no fkrunbook session is left on the server (a killed client's backend ends too)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fkrunbook'"
                                ).fetchone()[0]:
                return
            time.sleep(0.1)
    pytest.fail("fkrunbook sessions are still on the server")
