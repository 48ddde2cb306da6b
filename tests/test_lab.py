"""`fkrunbook lab` (what `make lab` runs): JupyterLab on the walkthrough's working copies, started
headless (as root here, in a container) with a port and a token, a notebook run in it as its Run
All runs one (cells sent to the kernel over the websocket), then stopped with Ctrl-C: the process
boundary is the point (signals, what is left running), so the console script runs as a process of
its own."""
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
from pathlib import Path

import psutil
import pytest

from fkrunbook.evidence import load_runs, verify_archive
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


def _api(port: int, path: str, token: str | None = None, body: dict | None = None):
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST" if body is not None else "GET",
                                     headers=headers, data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read() or b"null")


def run_all(port: int, token: str, folder, name: str) -> list[str]:
    """Run All, as JupyterLab's page does it: open a session for the notebook, then send each code
    cell to its kernel over the websocket and stop at the first error; the errors."""
    import nbformat
    import websocket

    _, session = _api(port, "/api/sessions", token, {"path": name, "type": "notebook", "name": name,
                                                      "kernel": {"name": "python3"}})
    channel = websocket.create_connection(f"ws://127.0.0.1:{port}/api/kernels/{session['kernel']['id']}/channels",
                                          header=[f"Authorization: token {token}"], timeout=300)
    errors, client = [], secrets.token_hex(8)
    try:
        for cell in nbformat.read(folder / name, as_version=4).cells:
            if cell.cell_type != "code" or errors:
                continue
            msg_id = secrets.token_hex(8)
            channel.send(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": client, "username": "",
                           "version": "5.3", "date": ""},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": cell.source, "silent": False, "store_history": True, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True}}))
            while True:
                message = json.loads(channel.recv())
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if message["msg_type"] == "error":
                    errors.append(f"{message['content']['ename']}: {message['content']['evalue']}")
                if message["channel"] == "shell" and message["msg_type"] == "execute_reply":
                    break
    finally:
        channel.close()
    return errors


def test_make_lab_runs_fkrunbook_lab_with_its_arguments():
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}  # under make test
    shown = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.lab", "lab",
                            "LAB_ARGS=--port 8890 --no-browser"],
                           cwd=PROJECT, capture_output=True, text=True, check=True, env=env).stdout
    assert shown.strip().splitlines() == [".venv/bin/fkrunbook lab --port 8890 --no-browser"]


def test_lab_answers_with_its_token_then_ctrl_c_stops_it_its_kernels_and_its_database(project_copy, tmp_path):
    token, port = secrets.token_hex(16), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}  # headless
    env["FKRUNBOOK_LAB_TOKEN"] = token
    env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "user-settings")  # a user who never answered JupyterLab's questions
    data_dir = project_copy / ".fkrunbook" / "local"
    log = tmp_path / "lab.log"  # outside the project: the token must not reach any file in it
    started = time.monotonic()
    with open(log, "wb") as out:
        # started as a script's background job is (SIGINT ignored, inherited): Ctrl-C must stop it all the same
        lab = subprocess.Popen([FKRUNBOOK, "lab", "--port", str(port)], cwd=project_copy, env=env, stdout=out,
                               stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    children, folder = [], None
    try:
        ready = wait_for_lab(port, token, timeout=120)
        print(f"lab answered /api/status {time.monotonic() - started:.1f} s after start ({ready:.1f} s of polling)")
        assert _api(port, "/api/status", token)[0] == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            _api(port, "/api/status")
        assert refused.value.code == 403  # the token is required
        assert server_running(data_dir)  # the local database was started with it
        page = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/lab", headers={
            "Authorization": f"token {token}"}), timeout=30).read().decode()
        config = json.loads(page.split('id="jupyter-config-data"', 1)[1].split(">", 1)[1].split("</script>", 1)[0])
        assert config["news"] == {"disabled": True}  # nothing fetched from the internet
        assert _api(port, "/lab/api/update", token)[1] == {"notification": None}
        notification = _api(port, "/lab/api/settings/@jupyterlab/apputils-extension:notification", token)[1]
        assert notification["settings"]["fetchNews"] == "false"  # and no question about it over the notebook
        (folder,) = (project_copy / ".fkrunbook" / "lab").iterdir()
        ran = time.monotonic()
        assert run_all(port, token, folder, "01_orphan_check.ipynb") == []
        print(f"01_orphan_check run through JupyterLab's kernel in {time.monotonic() - ran:.1f} s")
        children = psutil.Process(lab.pid).children(recursive=True)
        assert any("ipykernel" in " ".join(c.cmdline()) for c in children)  # its kernel, still open
    finally:
        lab.send_signal(signal.SIGINT)  # Ctrl-C
        returncode = lab.wait(60)
    assert returncode == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [" ".join(p.cmdline()) for p in alive]  # JupyterLab and its kernels are gone
    assert not server_running(data_dir)  # the database it started is stopped
    output = log.read_text()
    assert "Walkthrough " in output and "token=..." in output and token not in output
    assert len(list(folder.glob("*.ipynb"))) == 6
    (run,) = load_runs(project_copy / "audit", "local")  # the notebook run in JupyterLab, sealed
    assert (run.run_id, run.mode, run.status) == (folder.name, "interactive", "succeeded")
    assert run.manifest["phases"][0]["results"]["orphans"] and verify_archive(project_copy / "audit") == ([], 1)
    for path in project_copy.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path



def test_the_labs_settings_keep_the_users_own_and_answer_the_news_question_never(tmp_path, monkeypatch):
    from fkrunbook.lab import NOTIFICATION_SETTINGS, user_settings

    mine = tmp_path / "mine"
    (mine / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    themes = Path("@jupyterlab", "apputils-extension", "themes.jupyterlab-settings")
    (mine / themes).write_text('{"theme": "JupyterLab Dark"}')
    (mine / NOTIFICATION_SETTINGS).write_text('{\n    // Notifications\n    "doNotDisturbMode": true\n}')
    monkeypatch.setenv("JUPYTERLAB_SETTINGS_DIR", str(mine))
    lab = user_settings(tmp_path / "lab")
    assert json.loads((lab / themes).read_text()) == {"theme": "JupyterLab Dark"}
    assert json.loads((lab / NOTIFICATION_SETTINGS).read_text()) == {"doNotDisturbMode": True, "fetchNews": "false",
                                                                     "checkForUpdates": False}
    answered = '{\n    // Fetch official Jupyter news\n    "fetchNews": "true"\n}'
    (mine / NOTIFICATION_SETTINGS).write_text(answered)
    assert (user_settings(tmp_path / "lab2") / NOTIFICATION_SETTINGS).read_text() == answered  # the user's answer
