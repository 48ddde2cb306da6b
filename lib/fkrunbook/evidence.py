"""The evidence of a run: executed notebooks, self-contained HTML reports, and a sealed manifest.

A run folder ``audit/<env>/<run-id>/`` is sealed when the run ends (failed runs too): every
notebook is rendered to an HTML report that loads nothing from anywhere, the folder is scanned
for the connection's secrets, and ``manifest.json`` gets the sha256 of every file in the folder
plus the sha256 of the previous sealed manifest of the same environment (a hash chain) and its
place in that chain. :func:`verify_archive` recomputes all of it. A run killed before sealing
keeps its unsealed manifest (status ``running``) and is listed as incomplete.

A run may be sealed again only while it is the newest sealed run of its environment (the chain
head) and every file it sealed is unchanged: nothing links to the head yet, so it keeps its place
and its link to the run before it, and the new seal covers what was added. That is how the
phases of one interactive walkthrough join one run (see :mod:`fkrunbook.walkthrough`).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import html
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MANIFEST = "manifest.json"
TEMPLATES = Path(__file__).parent / "templates"


# -- writing ---------------------------------------------------------------------------------------
PROBE_BYTES = 4 * 1024 * 1024  # room for a run's notebooks and reports: checked before anything runs


def open_run_folder(run_dir: Path) -> None:
    """Create the run folder and prove the evidence can be written there (space included) before
    any phase touches the database; a run whose evidence cannot be kept does not start."""
    from .errors import EvidenceUnwritableError

    try:
        run_dir.mkdir(parents=True)
        probe = run_dir / ".probe"
        with open(probe, "wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as err:
        with contextlib.suppress(OSError):
            (run_dir / ".probe").unlink()
        with contextlib.suppress(OSError):
            run_dir.rmdir()
        raise EvidenceUnwritableError(f"cannot write the evidence in {run_dir} ({err.strerror or err}); nothing was "
                                      "run: free space or fix the permissions of the audit folder") from None

def write_manifest(run_dir: Path, manifest: dict) -> None:
    """Write atomically: a reader (or a crash) never sees half a manifest."""
    tmp = run_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    os.replace(tmp, run_dir / MANIFEST)


def render_report(notebook: Path) -> Path:
    """The executed notebook as one HTML file with no external script, style or image."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="fkrunbook_report", extra_template_basedirs=[str(TEMPLATES)],
                            embed_images=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def scrub_secrets(run_dir: Path, secrets: list[str], keep: set[str] | frozenset = frozenset()) -> list[str]:
    """Replace any secret found in the folder's files by ***; return the files that held one.
    Secrets are redacted at the source; this is the last check before the run is sealed. Files
    named in ``keep`` (already sealed, and checked unchanged) are left alone."""
    found = []
    needles = [s.encode() for s in secrets if s]
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        if str(path.relative_to(run_dir)) in keep:
            continue
        data = path.read_bytes()
        if any(n in data for n in needles):
            for n in needles:
                data = data.replace(n, b"***")
            path.write_bytes(data)
            found.append(str(path.relative_to(run_dir)))
    return found


def seal_run(run_dir: Path, manifest: dict, secrets: list[str], *, locked: bool = False, ledger=None) -> dict:
    """Render the reports, scan for secrets, hash every file and link the manifest into the chain.

    A manifest sealed before (it has a ``sequence``) is sealed again in place: only while the run
    is the chain head (:func:`is_chain_head`), keeping its place and its link; the reports and the
    scan cover only what is new. ``locked``: the caller holds :func:`chain_lock` already.
    ``ledger`` (a :class:`fkrunbook.ledger.Ledger`): the environment's ledger places the run after
    its last entry and records the sealed manifest (see there); without it, or where it cannot be
    written, the place comes from this folder's chain."""
    from .errors import EvidenceUnwritableError

    sealed = set(manifest.get("files") or {})
    reports = list(manifest.get("reports") or [])
    for notebook in sorted(run_dir.glob("*.ipynb")):
        if notebook.name in sealed and notebook.with_suffix(".html").name in sealed:
            continue
        try:
            name = render_report(notebook).name
            reports += [name] if name not in reports else []
        except Exception as err:  # a report that cannot be rendered must not lose the run's evidence
            manifest.setdefault("report_errors", {})[notebook.name] = f"{type(err).__name__}: {err}"
    manifest["reports"] = sorted(reports)
    manifest["secrets_redacted_in"] = sorted(set(manifest.get("secrets_redacted_in") or [])
                                             | set(scrub_secrets(run_dir, secrets, keep=sealed)))
    with contextlib.nullcontext() if locked else chain_lock(run_dir.parent):
        if manifest.get("sequence"):
            if not is_chain_head(run_dir, added_ok=True):
                raise EvidenceUnwritableError(f"run {run_dir.name!r} is no longer the newest sealed run of "
                                              f"{run_dir.parent.name!r}, or a file it sealed changed; it cannot be "
                                              "sealed again: start another run")
            manifest.setdefault("first_sealed_at", manifest.get("sealed_at"))
        else:
            previous = _chain_head(run_dir.parent)
            manifest["sequence"] = previous.sequence + 1 if previous else 1
            manifest["previous_manifest_sha256"] = previous.manifest_sha256 if previous else None
        with ledger.link(run_dir, manifest) if ledger is not None else contextlib.nullcontext():
            manifest["sealed_at"] = _now()
            manifest["files"] = file_hashes(run_dir)
            write_manifest(run_dir, manifest)
    write_index(run_dir.parent.parent)
    return manifest


def is_chain_head(run_dir: Path, added_ok: bool = False) -> bool:
    """Whether ``run_dir`` is its environment's newest sealed run and every file it sealed is
    unchanged (``added_ok``: files added since are allowed): the only case in which it may be
    sealed again without breaking the chain or laundering an altered file."""
    head = _chain_head(run_dir.parent)
    if head is None or head.path.resolve() != run_dir.resolve():
        return False
    problems = _verify_files(head)
    return not [p for p in problems if not (added_ok and p.endswith("was added after the run was sealed"))]


def file_hashes(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): _sha256(p.read_bytes())
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name not in (MANIFEST, f".{MANIFEST}.tmp")}


def git_commit(project_root: Path) -> str | None:
    """The project's commit, with '+dirty' when the work tree has changes; None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(project_root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(project_root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return None


# -- reading -----------------------------------------------------------------------------------------
@dataclass
class Run:
    env: str
    run_id: str
    path: Path
    manifest: dict
    manifest_sha256: str

    @property
    def sealed(self) -> bool:
        return "sealed_at" in self.manifest

    @property
    def sequence(self) -> int:
        return int(self.manifest.get("sequence") or 0)

    @property
    def status(self) -> str:
        return self.manifest.get("status", "unknown") if self.sealed else "incomplete"

    @property
    def mode(self) -> str:
        """``runner`` (``fkrunbook run``: papermill) or ``interactive`` (a notebook run in JupyterLab)."""
        return self.manifest.get("mode", "runner")


def load_runs(audit_dir: Path, env: str | None = None) -> list[Run]:
    """Every run folder (with a manifest) under audit/, newest first."""
    runs = []
    for env_dir in sorted(p for p in Path(audit_dir).glob("*") if p.is_dir()):
        if env and env_dir.name != env:
            continue
        for run_dir in sorted(p for p in env_dir.iterdir() if p.is_dir()):
            path = run_dir / MANIFEST
            if not path.exists():
                continue
            data = path.read_bytes()
            try:
                manifest = json.loads(data)
            except ValueError:
                manifest = {"status": "unreadable manifest"}
            runs.append(Run(env_dir.name, run_dir.name, run_dir, manifest, _sha256(data)))
    return sorted(runs, key=lambda r: (r.manifest.get("started_at") or "", r.run_id), reverse=True)


def run_table(runs: list[Run]) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": r.run_id, "env": r.env, "status": r.status, "mode": r.mode, "operator": r.manifest.get("operator", ""),
        "started": r.manifest.get("started_at", ""),
        "phases": " ".join(f"{p['name']}:{p['status']}" for p in r.manifest.get("phases", [])),
    } for r in runs], columns=["run", "env", "status", "mode", "operator", "started", "phases"])


def find_run(audit_dir: Path, run_id: str) -> Run | None:
    return next((r for r in load_runs(audit_dir) if r.run_id == run_id), None)


def verify_archive(audit_dir: Path, target: str | None = None) -> tuple[list[str], int]:
    """Recompute every file hash and the chain. ``target``: a run id, an environment, or all.
    Return (problems, runs checked); each problem names the run and the file."""
    audit_dir = Path(audit_dir)
    all_runs = load_runs(audit_dir)
    envs = sorted({r.env for r in all_runs})
    single = next((r for r in all_runs if r.run_id == target), None)
    if target and not single and target not in envs:
        raise LookupError(target)
    problems, checked = [], 0
    for env in envs:
        if target and target != env and (not single or single.env != env):
            continue
        chain = sorted((r for r in all_runs if r.env == env and r.sealed), key=lambda r: (r.sequence, r.run_id))
        gap = 0  # runs of the chain sealed elsewhere (placed by the ledger): `archive verify --env` checks those
        for index, run in enumerate(chain):
            elsewhere = (run.manifest.get("ledger") or {}).get("previous_here") is False
            gap = run.sequence - index - 1 if elsewhere else gap
            if single and run is not single:
                continue
            checked += 1
            problems += _verify_files(run)
            expected_previous = chain[index - 1].manifest_sha256 if index else None
            if run.sequence != index + 1 + gap:
                problems.append(f"{env}/{run.run_id}: is number {run.sequence} in the chain but stands at "
                                f"{index + 1 + gap}: a run was removed or inserted out of order")
            elif not elsewhere and run.manifest.get("previous_manifest_sha256") != expected_previous:
                problems.append(f"{env}/{run.run_id}: previous_manifest_sha256 does not match the manifest of "
                                f"{chain[index - 1].run_id if index else 'nothing (first run)'}: the chain was "
                                "altered (a manifest edited, a run removed, or inserted out of order)")
    return problems, checked


def _verify_files(run: Run) -> list[str]:
    problems = []
    recorded = run.manifest.get("files") or {}
    actual = file_hashes(run.path)
    for name, digest in recorded.items():
        if name not in actual:
            problems.append(f"{run.env}/{run.run_id}: file {name} was removed")
        elif actual[name] != digest:
            problems.append(f"{run.env}/{run.run_id}: file {name} changed")
    for name in sorted(set(actual) - set(recorded)):
        problems.append(f"{run.env}/{run.run_id}: file {name} was added after the run was sealed")
    return problems


def write_index(audit_dir: Path) -> Path:
    """audit/index.html: every run, newest first, with links to its reports. Self-contained."""
    audit_dir = Path(audit_dir)
    rows = []
    for run in load_runs(audit_dir):
        links = " ".join(f'<a href="{html.escape(run.env)}/{html.escape(run.run_id)}/{html.escape(r)}">'
                         f'{html.escape(Path(r).stem)}</a>' for r in run.manifest.get("reports", []))
        phases = ", ".join(f"{p['name']}: {p['status']}" for p in run.manifest.get("phases", []))
        mode = run.mode + (f" (walkthrough {run.manifest['walkthrough']})"
                           if run.manifest.get("walkthrough") not in (None, run.run_id) else "")
        rows.append(f"<tr class='{html.escape(run.status)} {html.escape(run.mode)}'><td>{html.escape(run.env)}</td>"
                    f"<td>{html.escape(run.run_id)}</td><td>{html.escape(run.status)}</td><td>{html.escape(mode)}</td>"
                    f"<td>{html.escape(str(run.manifest.get('operator', '')))}</td>"
                    f"<td>{html.escape(str(run.manifest.get('started_at', '')))}</td>"
                    f"<td>{html.escape(phases)}</td><td>{links or '(no report: incomplete)'}</td></tr>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>fkrunbook audit</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:4px 8px;text-align:left}tr.failed td{background:#fdd}tr.incomplete td{background:#ffd}"
            "</style></head><body><h1>fkrunbook audit evidence</h1>"
            "<p>Every run, newest first. <code>fkrunbook archive verify</code> checks each file's hash and the "
            "chain of manifests; mode <em>interactive</em> marks notebooks run in JupyterLab.</p><table><tr><th>environment</th><th>run</th><th>status</th><th>mode</th><th>operator</th>"
            "<th>started (UTC)</th><th>phases</th><th>reports</th></tr>" + "".join(rows) + "</table></body></html>\n")
    path = audit_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _chain_head(env_dir: Path) -> Run | None:
    sealed = [r for r in load_runs(env_dir.parent, env_dir.name) if r.sealed]
    return max(sealed, key=lambda r: r.sequence, default=None)


def plan_hash_of(manifest: dict) -> str | None:
    """The hash of the plan applied in this run, else of the plan previewed."""
    found = {p["name"]: (p.get("results") or {}).get("plan_hash") for p in manifest.get("phases", [])}
    return found.get("apply") or found.get("migration_preview")


@contextlib.contextmanager
def chain_lock(env_dir: Path):
    """Only one process links a run into an environment's chain at a time."""
    env_dir.mkdir(parents=True, exist_ok=True)
    with open(env_dir / ".chain.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
