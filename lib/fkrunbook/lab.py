"""``fkrunbook lab``: JupyterLab on working copies of the phase notebooks, one walkthrough at a time.

:func:`prepare_walkthrough` gives the walkthrough a run id and copies the six notebooks into
``<root>/.fkrunbook/lab/<run-id>/`` (git-ignored) with their ``parameters`` cell filled: the
environment, the project, the spec and that run id, so every notebook run there joins the same
run (:mod:`fkrunbook.walkthrough`). The tracked ``notebooks/*.ipynb`` are never opened: outputs
and edited parameters (``confirm = True``) stay in the copies.

:func:`run_lab` checks what it was given (the environment, a free port, the token, JupyterLab
installed), starts the local database when the environment is local, then runs ``jupyter lab``
in the copies' folder: on 127.0.0.1, ``--allow-root`` as root, no browser when asked or when
there is no display, its token from ``--token``/``FKRUNBOOK_LAB_TOKEN`` (handed over in
JupyterLab's environment, never on its command line or in a file of the project) or else
JupyterLab's own. Its runtime files (which hold the token) and its kernels' connection files go to
a private temporary folder, removed at the end. When JupyterLab exits, or on Ctrl-C or SIGTERM,
it is stopped with its kernels, and the local database is stopped if this command started it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import Config
from .errors import LabError
from .phase import REGISTRY, RUNNER_ENV, new_run_id

LAB_DIR = Path(".fkrunbook") / "lab"
TOKEN_ENV = "FKRUNBOOK_LAB_TOKEN"
MIN_TOKEN = 16
STOP_TIMEOUT_S = 30


@dataclass(frozen=True)
class Walkthrough:
    run_id: str
    folder: Path          # the working copies
    env: str

    @property
    def notebooks(self) -> list[Path]:
        return [self.folder / phase.notebook for phase in REGISTRY]


def prepare_walkthrough(config: Config, env: str, spec: str | Path | None = None,
                        run_id: str | None = None) -> Walkthrough:
    """A new walkthrough: the six phase notebooks copied into ``.fkrunbook/lab/<run-id>/`` with
    their parameters cell set to ``env``, this project, the spec and the walkthrough's run id."""
    import nbformat

    run_id = run_id or new_run_id()
    folder = config.root / LAB_DIR / run_id
    folder.mkdir(parents=True)
    project = os.path.relpath(config.path or config.root, folder)
    values = {"env": env, "project": project, "spec": config.rel(config.resolve_spec(spec)), "run_id": run_id}
    for phase in REGISTRY:
        book = nbformat.read(config.notebooks / phase.notebook, as_version=4)
        cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
        cell.source = fill_parameters(cell.source, values)
        nbformat.write(book, folder / phase.notebook)
    return Walkthrough(run_id, folder, env)


def fill_parameters(source: str, values: dict) -> str:
    """A parameters cell with the given names set to new literal values, comments kept."""
    lines = []
    for line in source.splitlines():
        name, sep, rest = line.partition(" = ")
        if sep and name in values:
            comment = rest[rest.index("  #"):] if "  #" in rest else ""
            value = values[name]
            line = f"{name} = {json.dumps(value) if isinstance(value, str) else repr(value)}{comment}"
        lines.append(line)
    return "\n".join(lines)


def check_port(port: int) -> None:
    """The port must be free on 127.0.0.1, or JupyterLab would quietly take another."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise LabError(f"port {port} is in use on 127.0.0.1; choose another with --port, or leave --port out "
                           "for a free one") from None


def check_token(token: str) -> None:
    if len(token) < MIN_TOKEN:
        raise LabError(f"the JupyterLab token is {len(token)} characters long; use at least {MIN_TOKEN} (e.g. "
                       "`python -c 'import secrets; print(secrets.token_hex(16))'`), or leave it out for JupyterLab's "
                       "own")


def check_jupyterlab() -> None:
    import importlib.util

    if importlib.util.find_spec("jupyterlab") is None:
        raise LabError("JupyterLab is not installed here; install it with `pip install 'fkrunbook[lab]'` "
                       "(`make lab` does)")


NOTIFICATION_SETTINGS = Path("@jupyterlab", "apputils-extension", "notification.jupyterlab-settings")


def user_settings(target: Path) -> Path:
    """JupyterLab's user settings for the lab: a copy of the user's own (theme, keyboard, ...), with
    the news question answered "never" unless the user answered it: JupyterLab would otherwise ask,
    on its first start, whether to fetch news from the internet, over the walkthrough."""
    from jupyterlab.commands import get_user_settings_dir

    source = Path(get_user_settings_dir())
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    notification = target / NOTIFICATION_SETTINGS
    try:  # JupyterLab writes these files with whole-line // comments
        chosen = json.loads("\n".join(line for line in notification.read_text().splitlines()
                                      if not line.lstrip().startswith("//"))) if notification.exists() else {}
    except ValueError:  # JSON5 beyond that: the user's own file, kept as it is
        return target
    if chosen.get("fetchNews") in (None, "none"):
        notification.parent.mkdir(parents=True, exist_ok=True)
        notification.write_text(json.dumps({**chosen, "fetchNews": "false", "checkForUpdates": False}, indent=2))
    return target


def headless() -> bool:
    """No display to open a browser on (a container, a server, an SSH session)."""
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def lab_command(walkthrough: Walkthrough, port: int, open_browser: bool) -> list[str]:
    command = [sys.executable, "-m", "jupyterlab", "--ip", "127.0.0.1", "--port", str(port),
               "--ServerApp.port_retries=0", f"--ServerApp.root_dir={walkthrough.folder}",
               # nothing fetched from the internet (a machine that can reach production need not reach GitHub),
               # and no question about it on first start
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if not open_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return command


@dataclass
class LabResult:
    walkthrough: Walkthrough
    returncode: int
    stopped_database: bool


def run_lab(config: Config, env: str = "local", *, spec: str | None = None, port: int | None = None,
            token: str | None = None, open_browser: bool = True,
            on_event: Callable[[str, dict], None] | None = None) -> LabResult:
    """Run JupyterLab on a new walkthrough until it exits (or Ctrl-C / SIGTERM); see the module."""
    from .database import connect
    from .environment import get_environment
    from .server import server_running, stop_server
    from .spec import load_spec

    notify = on_event or (lambda kind, info: None)
    environment = get_environment(env, config.environments)
    load_spec(config.resolve_spec(spec))
    if port is not None:
        check_port(port)
    if token:
        check_token(token)
    check_jupyterlab()
    embedded = environment.kind == "embedded"
    was_running = embedded and server_running(environment.data_dir, environment.bin_dir)
    started_database = False
    runtime = Path(tempfile.mkdtemp(prefix="fkrunbook-lab-"))
    try:
        if embedded:
            notify("local_starting", {"data_dir": environment.data_dir})
        started_database = embedded and not was_running
        connect(environment).describe()  # local: started (sample data the first time); remote: reachable
        walkthrough = prepare_walkthrough(config, environment.name, spec)
        port = port or _free_port()
        child_env = {k: v for k, v in os.environ.items() if k not in (RUNNER_ENV, TOKEN_ENV, "JUPYTER_TOKEN")}
        child_env["JUPYTER_RUNTIME_DIR"] = str(runtime)
        # A walkthrough opens on its own notebooks: not the tabs of an earlier session (~/.jupyter).
        child_env["JUPYTERLAB_WORKSPACES_DIR"] = str(runtime / "workspaces")
        child_env["JUPYTERLAB_SETTINGS_DIR"] = str(user_settings(runtime / "user-settings"))
        if token:
            child_env["JUPYTER_TOKEN"] = token
        notify("lab_starting", {"walkthrough": walkthrough, "port": port, "token_given": bool(token),
                                "evidence": config.evidence / environment.name / walkthrough.run_id})
        returncode = _run_until_stopped(lab_command(walkthrough, port, open_browser and not headless()),
                                        walkthrough.folder, child_env, runtime)
    finally:
        if started_database:
            stop_server(environment.data_dir, environment.bin_dir)
        shutil.rmtree(runtime, ignore_errors=True)
    notify("lab_stopped", {"walkthrough": walkthrough, "stopped_database": started_database})
    return LabResult(walkthrough, returncode, started_database)


class _Stop(Exception):
    pass


def _run_until_stopped(command: list[str], cwd: Path, env: dict, runtime: Path) -> int:
    """Run JupyterLab in a session of its own (so a terminal's Ctrl-C reaches only this process,
    which then stops it without JupyterLab's "Shut down? (y/n)" prompt) until it exits; SIGINT,
    SIGTERM and SIGHUP stop it cleanly (SIGTERM: it shuts its kernels down), then anything of it
    left (its process group, kernels whose connection file is in ``runtime``) is killed."""
    def stop(signum, frame):
        raise _Stop()

    # SIGINT too: a process started in the background of a script inherits SIGINT ignored, and Python
    # then raises no KeyboardInterrupt; Ctrl-C must stop the lab however it was started.
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    process = subprocess.Popen(command, cwd=cwd, env=env, preexec_fn=_own_session_ending_with_parent)
    try:
        return process.wait()
    except _Stop:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # anything JupyterLab left in its session
        _stop_kernels(runtime)


def _own_session_ending_with_parent() -> None:
    """In the child, before JupyterLab starts: a session of its own, and (Linux) SIGTERM when this
    process dies, even killed outright, so JupyterLab never outlives ``fkrunbook lab``."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop_kernels(runtime: Path) -> None:
    """Kernels run in sessions of their own; one that outlived JupyterLab is found by its
    connection file in this lab's runtime folder (Linux: /proc), and stopped."""
    marker = str(runtime).encode()
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_lab(port: int, token: str, timeout: float = 60) -> float:
    """Seconds until JupyterLab answers ``/api/status`` on ``port`` with ``token`` (for tests and
    scripts); raises TimeoutError."""
    import urllib.error
    import urllib.request

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status",
                                         headers={"Authorization": f"token {token}"})
        with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError):
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"JupyterLab did not answer on port {port} within {timeout} s")
