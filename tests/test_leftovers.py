"""The session-end check of tests/leftovers.py fails a run that leaves a server or a kernel running,
names them, and stops them: shown on a real pytest session that forgets both."""
import json
import os
import subprocess
import sys

import psutil

from .conftest import PROJECT

FORGETFUL_TEST = '''
import json, os
from jupyter_client import KernelManager
from fkrunbook.server import ensure_server

KEPT = []

def test_forgets_its_server_and_its_kernel(tmp_path):
    server = ensure_server(tmp_path / "forgotten")
    kernel = KernelManager(kernel_name="python3")
    kernel.start_kernel()
    KEPT.append(kernel)
    postmaster = int((server.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    with open(os.environ["LEFT_PIDS"], "w") as out:
        json.dump({"postgres": postmaster, "kernel": kernel.provisioner.pid}, out)
'''


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_session_that_leaves_a_server_and_a_kernel_running_fails_and_stops_them(tmp_path):
    (tmp_path / "test_forgetful.py").write_text(FORGETFUL_TEST)
    pids_file = tmp_path / "pids.json"
    env = {**os.environ, "LEFT_PIDS": str(pids_file),
           "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.leftovers", "-p", "no:cacheprovider",
                             "-p", "no:xdist", "--basetemp", str(tmp_path / "basetemp"), "test_forgetful.py"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    pids = json.loads(pids_file.read_text())
    still_running = [pid for pid in pids.values() if not _gone(pid)]
    for pid in still_running:  # had the check not stopped them, this test must not leak them either
        psutil.Process(pid).kill()
    assert "1 passed" in result.stdout, result.stdout + result.stderr  # the test itself passed ...
    assert result.returncode == 1, result.stdout  # ... and the run failed
    assert "left running by the tests" in result.stdout
    assert f"postgres (pid {pids['postgres']}, data folder {tmp_path / 'basetemp'}" in result.stdout
    assert f"kernel (pid {pids['kernel']}: " in result.stdout
    assert still_running == []  # the check stopped both
