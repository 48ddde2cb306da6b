"""`fkrunbook lab` (what `make lab` runs): JupyterLab on the walkthrough's working copies, started
headless (as root here, in a container) with a port and a token, then stopped with Ctrl-C: the
process boundary is the point (signals, what is left running), so the console script runs as a
process of its own."""
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import psutil
import pytest

from fkrunbook.lab import wait_for_lab
from fkrunbook.server import server_running

from .conftest import PROJECT
from .test_cli import FKRUNBOOK

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None,
                                reason="JupyterLab is not installed: pip install -e '.[lab]' (make lab does)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _api(port: int, path: str, token: str | None = None, method: str = "GET"):
    headers = {"Authorization": f"token {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers,
                                     data=b"{}" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read() or b"null")


def test_make_lab_runs_fkrunbook_lab_with_its_arguments():
    shown = subprocess.run(["make", "-n", "-o", ".venv/.lab", "lab", "LAB_ARGS=--port 8890 --no-browser"],
                           cwd=PROJECT, capture_output=True, text=True, check=True).stdout
    assert shown.strip().splitlines() == [".venv/bin/fkrunbook lab --port 8890 --no-browser"]


def test_lab_answers_with_its_token_then_ctrl_c_stops_it_its_kernels_and_its_database(project_copy, tmp_path):
    token, port = secrets.token_hex(16), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}  # headless
    env["FKRUNBOOK_LAB_TOKEN"] = token
    data_dir = project_copy / ".fkrunbook" / "local"
    log = tmp_path / "lab.log"  # outside the project: the token must not reach any file in it
    started = time.monotonic()
    with open(log, "wb") as out:
        lab = subprocess.Popen([FKRUNBOOK, "lab", "--port", str(port)], cwd=project_copy, env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    children = []
    try:
        ready = wait_for_lab(port, token, timeout=120)
        print(f"lab answered /api/status {time.monotonic() - started:.1f} s after start ({ready:.1f} s of polling)")
        assert _api(port, "/api/status", token)[0] == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            _api(port, "/api/status")
        assert refused.value.code == 403  # the token is required
        assert server_running(data_dir)  # the local database was started with it
        status, kernel = _api(port, "/api/kernels", token, method="POST")
        assert status == 201
        for _ in range(100):  # the kernel process appears
            children = psutil.Process(lab.pid).children(recursive=True)
            if any("ipykernel" in " ".join(c.cmdline()) for c in children):
                break
            time.sleep(0.2)
        assert any("ipykernel" in " ".join(c.cmdline()) for c in children)
    finally:
        lab.send_signal(signal.SIGINT)  # Ctrl-C
        returncode = lab.wait(60)
    assert returncode == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [" ".join(p.cmdline()) for p in alive]  # JupyterLab and its kernels are gone
    assert not server_running(data_dir)  # the database it started is stopped
    output = log.read_text()
    assert "Walkthrough " in output and "token=..." in output and token not in output
    walkthroughs = list((project_copy / ".fkrunbook" / "lab").iterdir())
    assert len(walkthroughs) == 1 and len(list(walkthroughs[0].glob("*.ipynb"))) == 6
    for path in project_copy.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
