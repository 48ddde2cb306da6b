"""Interactive runs: a phase notebook run in JupyterLab (or by nbclient) leaves the evidence the
runner leaves, sealed into the same chain.

``phase.start()`` outside the runner calls :func:`record_phase`: from then on a
:class:`CellRecorder` (one per kernel, on IPython's ``pre_run_cell``/``post_run_cell`` events)
keeps every executed cell: its source and, in order, what it printed, displayed, returned or
raised. The phase's own files (its ``*.results.json``, a clean-up's quarantine copies) go to a
pending folder, ``<evidence>/<env>/<walkthrough>.pending.<phase>.<n>``, whose unsealed manifest
lists it as incomplete until the phase ends. ``ctx.finish()`` (the notebook's last cell), or the
first cell that fails (sealed as ``cancelled`` when JupyterLab's interrupt stopped it), ends it: the recorded cells become the executed notebook (the notebook's
markdown put back before the cells they introduce), and under the environment's chain lock the
notebook, its HTML report and the pending files join the walkthrough's run folder
``<evidence>/<env>/<walkthrough>/``, whose manifest gets the phase (``mode: interactive``) and is
sealed.

One walkthrough is one run while it stays the chain head: a sealed run is sealed again only
while no run has been linked after it and every file it sealed is unchanged
(:func:`fkrunbook.evidence.is_chain_head`), so the chain stays valid. When another run was
sealed in between, when the walkthrough's run already holds this phase (a clean-up dry run, then
the confirmed one), or when one of its files changed, the phase opens the walkthrough's next run
folder, ``<walkthrough>.2``, ``.3``... (same ``walkthrough`` in the manifest): each run folder
holds each phase once, as a runner's does.
"""
from __future__ import annotations

import ast
import base64
import datetime as dt
import getpass
import json
import os
import secrets
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from IPython.display import Markdown, display

from . import __version__
from .config import CONFIG_FILE
from .errors import EvidenceUnwritableError
from .evidence import (MANIFEST, chain_lock, git_commit, is_chain_head, load_runs, open_run_folder, plan_hash_of,
                       seal_run, write_index, write_manifest)
from .ledger import Ledger, ledger_line
from .phase import PHASES

PENDING = ".pending."


# -- recording the cells of a kernel ----------------------------------------------------------------
class CellRecorder:
    """Every cell this kernel executes, as notebook cells with their outputs, in execution order.

    Streams are teed at ``write`` (as IPython itself does for its history), displays at the
    display publisher, the cell's value and error at ``post_run_cell``; nothing the engineer sees
    changes. Cells executed before the recorder existed are taken from IPython's history (their
    source and value)."""

    def __init__(self, shell):
        self.shell = shell
        self.cells: list[dict] = []
        self.current: dict | None = None
        self.active: PhaseRecording | None = None
        self._restore: list[tuple[object, object]] = []
        history, out = shell.history_manager.input_hist_raw, shell.user_ns.get("Out", {})
        for count in range(1, len(history) - 1):  # the last one is the cell running now
            outputs = [_result(shell, out[count], count)] if count in out else []
            self.cells.append({"source": history[count], "count": count, "outputs": outputs})
        publish = shell.display_pub.publish

        def tee_publish(data, metadata=None, *args, **kwargs):
            if self.current is not None and not kwargs.get("update"):
                self.current["outputs"].append({"output_type": "display_data", "data": _bundle(data),
                                                "metadata": _bundle(metadata or {})})
            return publish(data, metadata, *args, **kwargs)

        shell.display_pub.publish = tee_publish
        shell.events.register("pre_run_cell", self.pre_run_cell)
        shell.events.register("post_run_cell", self.post_run_cell)

    def pre_run_cell(self, info) -> None:
        self.current = {"source": info.raw_cell, "count": None, "outputs": []}  # counted once it runs
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            write = stream.write
            try:
                stream.write = self._tee(name, write)
            except AttributeError:  # a stream that takes no attribute: its text is not recorded
                continue
            self._restore.append((stream, write))

    def _tee(self, name: str, write):
        def tee(text, *args, **kwargs):
            cell = self.current
            if cell is not None and text:
                outputs = cell["outputs"]
                if outputs and outputs[-1]["output_type"] == "stream" and outputs[-1]["name"] == name:
                    outputs[-1]["text"] += text
                else:
                    outputs.append({"output_type": "stream", "name": name, "text": str(text)})
            return write(text, *args, **kwargs)
        return tee

    def post_run_cell(self, result) -> None:
        while self._restore:
            stream, write = self._restore.pop()
            stream.write = write
        cell, self.current = self.current, None
        if cell is None:  # the cell that made the recorder: its value and error only
            cell = {"source": result.info.raw_cell, "count": None, "outputs": []}
        cell["count"] = result.execution_count or cell["count"]
        if result.result is not None:
            cell["outputs"].append(_result(self.shell, result.result, cell["count"]))
        error = result.error_before_exec or result.error_in_exec
        if error is not None:
            cell["outputs"].append(_error(self.shell, error))
        self.cells.append(cell)
        if error is not None and self.active is not None and not self.active.finishing:
            self.active.failed(error)

    def take(self) -> tuple[list[dict], dict | None]:
        """The cells recorded so far, the running one last (also returned alone; None outside a
        cell), and a fresh start: the running cell's value is no longer recorded."""
        running = self.current
        if running is not None:  # stored in the history as it started: the last entry
            running["count"] = len(self.shell.history_manager.input_hist_raw) - 1
        cells = self.cells + ([running] if running is not None else [])
        self.cells, self.current = [], None
        return cells, running


_RECORDERS: dict[int, CellRecorder] = {}


def _recorder(shell) -> CellRecorder | None:
    if shell is None:
        return None
    if id(shell) not in _RECORDERS:
        _RECORDERS[id(shell)] = CellRecorder(shell)
    return _RECORDERS[id(shell)]


def _bundle(value):
    """A mime bundle as JSON can hold it (images as base64 text)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _bundle(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_bundle(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _result(shell, value, count) -> dict:
    data, metadata = shell.display_formatter.format(value)
    return {"output_type": "execute_result", "data": _bundle(data), "metadata": _bundle(metadata),
            "execution_count": count}


def _error(shell, error: BaseException) -> dict:
    try:
        if hasattr(error, "_render_traceback_"):
            lines = list(error._render_traceback_())
        else:
            lines = shell.InteractiveTB.structured_traceback(type(error), error, error.__traceback__)
    except Exception:  # never lose the error for want of its traceback
        lines = [f"{type(error).__name__}: {error}"]
    return {"output_type": "error", "ename": type(error).__name__, "evalue": str(error), "traceback": lines}


# -- one phase, from start() to its sealed evidence -----------------------------------------------
@dataclass
class PhaseRecording:
    """A phase run interactively: its context, its pending folder and what the manifest needs."""
    ctx: object                      # the phase's PhaseContext
    recorder: CellRecorder | None
    pending: Path
    parameters: dict
    started_at: str
    started: float
    commit: str | None
    finishing: bool = False
    headline: object = None          # the phase's verdict, shown above the evidence line
    sealed_in: Path | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.sealed_in is not None

    def finish(self, error: BaseException | None = None, headline=None):
        """Write and seal this phase's evidence (once); return what the notebook shows: the
        phase's verdict (``headline``, a :class:`fkrunbook.display.Verdict`) above the line
        saying where the evidence is."""
        if self.finished:
            return Markdown(f"**Already sealed** in `{self._shown(self.sealed_in)}`. To record another run of this "
                            "phase, run the notebook again from the top.")
        self.finishing, self.headline = True, headline
        try:
            self._seal(error)
        finally:
            self.finishing = False
        from .store import publish_sealed

        published = publish_sealed(self.ctx.config, self.ctx.db.env, self.sealed_in)  # never raises
        if published:
            ok, line = published
            self.messages[-1] += f" {line[0].upper()}{line[1:]}." if ok else f" **Warning**: {line}."
        return self._shown_last()

    def _shown_last(self):
        if self.headline is None:
            return Markdown(self.messages[-1])
        from .display import Closing

        return Closing(self.headline, self.messages[-1])

    def failed(self, error: BaseException) -> None:
        """A cell failed: the phase ends here, as it would under the runner, and is sealed as failed."""
        try:
            self.finish(error)
            display(Markdown(self.messages[-1]))
        except Exception as err:  # the hook must not break the kernel
            print(f"fkrunbook: the evidence of this phase could not be sealed: {type(err).__name__}: {err}",
                  file=sys.stderr)

    def _seal(self, error: BaseException | None) -> None:
        ctx = self.ctx
        phase = PHASES[ctx.phase]
        env_dir = self.pending.parent
        cells, running = self.recorder.take() if self.recorder is not None else ([], None)
        status = "succeeded" if error is None else "cancelled" if _interrupted(error) else "failed"
        ledger = Ledger(ctx.db)
        with chain_lock(env_dir):
            run_dir, manifest = _run_for(env_dir, ctx.run_id, ctx.phase, ledger.head_run_id())
            self.messages.append(
                f"**Phase {ctx.phase} {status}; its evidence is sealed** in `{self._shown(run_dir)}` (interactive run "
                f"of walkthrough `{ctx.run_id}`; `fkrunbook archive list` shows it)."
                + (" To record another run of this phase, run the notebook again from the top." if error else ""))
            if running is not None and error is None:  # the running ctx.finish() cell shows the line it returns
                shown = self._shown_last()
                data = shown.bundle() if hasattr(shown, "bundle") else {"text/markdown": self.messages[-1],
                                                                       "text/plain": self.messages[-1]}
                running["outputs"].append({"output_type": "execute_result", "execution_count": running["count"],
                                           "data": data, "metadata": {}})
            if manifest is None:
                run_dir.mkdir(parents=True)
                (run_dir / CONFIG_FILE).write_text(ctx.config.to_toml(run_dir))
                manifest = self._new_manifest(run_dir.name)
            for path in sorted(p for p in self.pending.rglob("*") if p.is_file() and p.name != MANIFEST):
                target = run_dir / path.relative_to(self.pending)
                if target.exists():
                    raise EvidenceUnwritableError(f"{target} exists already; the phase's files stay in {self.pending}")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
            import nbformat

            nbformat.write(build_notebook(ctx.config.notebooks / phase.notebook, cells, {
                "mode": "interactive", "phase": ctx.phase, "run_id": run_dir.name, "walkthrough": ctx.run_id}),
                run_dir / phase.notebook)
            results_file = run_dir / f"{ctx.phase}.results.json"
            entry = {"name": ctx.phase, "status": status, "notebook": phase.notebook, "mode": "interactive",
                     "started_at": self.started_at, "ended_at": _now(),
                     "duration_s": round(time.monotonic() - self.started, 2),
                     "parameters": {k: v for k, v in self.parameters.items() if k in {p.name for p in phase.parameters}},
                     "results": json.loads(results_file.read_text()) if results_file.exists() else {}}
            if error is not None:
                entry["error"] = ctx.db.redact(f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}")
            manifest["phases"].append(entry)
            manifest["parameters"] = {**manifest.get("parameters", {}), **self.parameters}
            statuses = {p["status"] for p in manifest["phases"]}
            manifest.update(status="succeeded" if statuses == {"succeeded"} else "failed" if statuses - {
                "succeeded", "cancelled"} else "cancelled", ended_at=_now(), plan_hash=plan_hash_of(manifest))
            seal_run(run_dir, manifest, ctx.db.secrets + _lab_secrets(), locked=True, ledger=ledger)
            self.messages[-1] += f" {ledger_line(manifest)}." if ledger_line(manifest) else ""
            shutil.rmtree(self.pending, ignore_errors=True)
            write_index(env_dir.parent)  # without the pending folder
        self.sealed_in = run_dir
        if self.recorder is not None and self.recorder.active is self:
            self.recorder.active = None

    def _new_manifest(self, run_id: str) -> dict:
        ctx = self.ctx
        config, spec = ctx.config, ctx.spec
        return {
            "run_id": run_id, "walkthrough": ctx.run_id, "mode": "interactive", "environment": ctx.db.env.name,
            "status": "running", "started_at": self.started_at, "ended_at": None, "operator": getpass.getuser(),
            "host": socket.gethostname(), "git_commit": self.commit, "fkrunbook_version": __version__,
            "config": {"file": config.rel(config.path) if config.path else None, "sha256": config.sha256},
            "spec": {"file": config.rel(Path(spec.path)), "sha256": spec.sha256}, "plan_hash": None,
            "parameters": {}, "phases": [],
        }

    def _shown(self, path: Path) -> str:
        return self.ctx.config.rel(path)


def record_phase(ctx, parameters: dict) -> PhaseRecording:
    """Start recording ``ctx``'s phase (called by ``phase.start()`` outside the runner): open its
    pending folder (the evidence must be writable before anything changes) and point
    ``ctx.run_dir`` at it. Running ``start()`` again in the same kernel before the phase ends
    keeps the same recording."""
    from .phase import _shell

    recorder = _recorder(_shell())
    active = recorder.active if recorder is not None else None
    if (active is not None and not active.finished and active.ctx.phase == ctx.phase
            and active.ctx.run_id == ctx.run_id and active.ctx.db.env.name == ctx.db.env.name):
        ctx.run_dir, ctx.results, ctx.recording = active.pending, dict(active.ctx.results), active
        active.ctx, active.parameters = ctx, parameters
        return active
    env_dir = ctx.config.evidence / ctx.db.env.name
    pending = env_dir / f"{ctx.run_id}{PENDING}{ctx.phase}.{secrets.token_hex(3)}"
    open_run_folder(pending)
    started_at = _now()
    write_manifest(pending, {
        "run_id": pending.name, "walkthrough": ctx.run_id, "mode": "interactive", "environment": ctx.db.env.name,
        "status": "running", "started_at": started_at, "ended_at": None, "operator": getpass.getuser(),
        "host": socket.gethostname(), "parameters": parameters,
        "phases": [{"name": ctx.phase, "status": "running", "notebook": PHASES[ctx.phase].notebook,
                    "started_at": started_at}]})
    recording = PhaseRecording(ctx, recorder, pending, parameters, started_at, time.monotonic(),
                               git_commit(ctx.config.root))
    ctx.run_dir, ctx.recording = pending, recording
    if recorder is not None:
        recorder.active = recording
    return recording


def _run_for(env_dir: Path, walkthrough: str, phase: str, ledger_head: str | None = None) -> tuple[Path, dict | None]:
    """The run folder this phase joins (call under the chain lock): the walkthrough's newest run
    when it is the chain head, intact, and does not hold this phase yet (its manifest returned);
    else the walkthrough's next run folder, new (None). ``ledger_head``: the run of the ledger's
    last entry (None: unreachable); a run recorded in the ledger is joined only while it is that
    run (none was sealed after it, here or elsewhere), since sealing it again appends its entry."""
    ours = [r for r in load_runs(env_dir.parent, env_dir.name)
            if r.manifest.get("walkthrough") == walkthrough and r.sealed and PENDING not in r.run_id]
    newest = max(ours, key=lambda r: r.sequence, default=None)
    if (newest is not None and phase not in {p["name"] for p in newest.manifest.get("phases", [])}
            and is_chain_head(newest.path)
            and (ledger_head == newest.run_id or not (newest.manifest.get("ledger") or {}).get("entry"))):
        return newest.path, newest.manifest
    name, number = walkthrough, 1
    while (env_dir / name).exists():
        number += 1
        name = f"{walkthrough}.{number}"
    return env_dir / name, None


def _interrupted(error: BaseException) -> bool:
    """JupyterLab's interrupt (SIGINT: KeyboardInterrupt in the cell; apply turns it into
    ApplyCancelledError once the server has stopped its statement) seals the phase as cancelled."""
    from .errors import ApplyCancelledError

    return isinstance(error, (KeyboardInterrupt, ApplyCancelledError))


def _lab_secrets() -> list[str]:
    """JupyterLab's token, which its kernels inherit: never kept in the evidence."""
    token = os.environ.get("JUPYTER_TOKEN", "")
    return [token] if token else []


# -- the executed notebook --------------------------------------------------------------------------
def build_notebook(template: Path, cells: list[dict], metadata: dict):
    """The recorded cells, in execution order, as a notebook. The phase notebook's markdown
    (``template``) is put back: its opening text first, then each heading before the first
    executed cell it introduces."""
    import nbformat
    from nbformat import v4

    source = nbformat.read(template, as_version=4) if template.exists() else v4.new_notebook()
    blocks: list[tuple[object, list]] = []  # (template code cell, the markdown cells before it)
    before: list = []
    for cell in source.cells:
        if cell.cell_type == "code":
            blocks.append((cell, before))
            before = []
        else:
            before.append(cell)
    book = v4.new_notebook(metadata={**source.metadata, "fkrunbook": metadata})
    if blocks:
        book.cells += [v4.new_markdown_cell(c.source) for c in blocks[0][1]]
    shown = {0}
    for cell in cells:
        match = next((i for i, (code, _) in enumerate(blocks) if _same_cell(code, cell["source"])), None)
        if match is not None and match not in shown:
            book.cells += [v4.new_markdown_cell(c.source) for c in blocks[match][1]]
            shown.add(match)
        code = v4.new_code_cell(cell["source"], execution_count=cell["count"],
                                outputs=[nbformat.from_dict(o) for o in cell["outputs"]])
        if match is not None and "parameters" in blocks[match][0].metadata.get("tags", []):
            code.metadata["tags"] = ["parameters"]
        book.cells.append(code)
    return book


def _same_cell(template, source: str) -> bool:
    """An executed cell is the template's cell when its source is the same, or, for the
    ``parameters`` cell, when it sets the same names (to other values)."""
    if template.source.strip() == source.strip():
        return True
    if "parameters" not in template.metadata.get("tags", []):
        return False
    return bool(_assigned(source)) and _assigned(source) == _assigned(template.source)


def _assigned(source: str) -> list[str]:
    try:
        return [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)]
    except SyntaxError:
        return []


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
